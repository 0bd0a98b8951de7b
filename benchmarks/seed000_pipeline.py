"""Seed 000's training and prediction pipeline, reproduced for the speed benchmark.

Source: the seed's published notebook for its 1st-place submission,
ARNiroula/news-data-llm-with-lora, 87628_privateScore_files/final_notebook.ipynb:
  * `dataset.map(preprocess, batched=True)` with `tokenizer(text, truncation=True,
    padding=True)`: every row is padded to the longest row of its 1,000-row map chunk
    (truncated at the tokenizer's model_max_length), then `DataCollatorWithPadding`;
  * a 10% validation split (`train_test_split(test_size=0.1, seed=42)`);
  * LoRA r=4, alpha=64, dropout 0.1, bias=all on query/key/value, the model's default head
    (values read from configs/seed000.toml);
  * `Trainer` with fp16, gradient checkpointing (use_reentrant=True), batch 64 (eval 256),
    lr 2e-5, optim="adamw_torch_fused", 4 dataloader workers, warm-up 0.1, weight decay 0.01,
    evaluation and a checkpoint every epoch, best model loaded at the end;
  * prediction in a plain loop (`evaluate_model`): `padding="max_length", max_length=512`,
    batch 8, `torch.no_grad()`, the LoRA model unmerged.
Changes for measuring, none of which changes the work per step: `max_steps` stops after the
timed steps; fp16 only where a GPU is present (CPU runs fp32: fp16 autocast is a GPU feature
there); transformers 5 names (`warmup_steps=0.1` is the ratio, no `logging_dir`); a Trainer
subclass counts each batch's tokens and a callback stamps the end of each step.

Run by benchmarks/speed.py in its own process, so that its peak RSS is this arm's memory:

    python benchmarks/seed000_pipeline.py --model PATH --train pool.csv --predict texts.csv \
        --steps 7 --workdir DIR --out result.json
"""

import argparse
import json
import time
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from datasets import ClassLabel, Dataset
from peft import LoraConfig, get_peft_model
from sklearn.metrics import accuracy_score
from torch.utils.data import DataLoader
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

REPO = Path(__file__).resolve().parents[1]
AG_LABELS = ["World", "Sports", "Business", "Sci/Tech"]


class StepClock(TrainerCallback):
    """Stamps the start of training and the end of every optimizer step: wall time and this
    process's CPU time (CPU s / wall s / threads < 1 means other work took some cores)."""

    def __init__(self):
        self.start, self.ends, self.cpu = None, [], []

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # the step's kernels are queued; wait for them
        self.ends.append(time.perf_counter())
        self.cpu.append(time.process_time())


def count_batches(trainer, counts):
    """Record each training batch's rows, real (attention-mask) and padded tokens."""
    step = trainer.training_step

    def counted(model, inputs, *args, **kwargs):
        mask = inputs["attention_mask"]
        counts.append(
            {"samples": mask.shape[0], "real": int(mask.sum()), "padded": int(mask.numel())}
        )
        return step(model, inputs, *args, **kwargs)

    trainer.training_step = counted


def step_records(clock, counts):
    """One record per optimizer step: its end time (s from train start) and its batch."""
    return [
        {"end_s": end - clock.start, "cpu_s": cpu, **count}
        for end, cpu, count in zip(clock.ends, clock.cpu, counts, strict=False)
    ]


def seed_lora():
    cfg = tomllib.loads((REPO / "configs" / "seed000.toml").read_text())["lora"]
    return LoraConfig(
        r=cfg["r"],
        lora_alpha=cfg["alpha"],
        lora_dropout=cfg["dropout"],
        bias=cfg["bias"],
        target_modules=cfg["targets"],
        task_type="SEQ_CLS",
    )


def read_texts(path):
    """title + " " + description, as Hugging Face's ag_news `text` (the seed cleaned nothing)."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    return (df["title"] + " " + df["description"]).tolist(), df


def train(args, tokenizer):
    texts, df = read_texts(args.train)
    dataset = Dataset.from_dict({"text": texts, "label": df["label"].astype(int).tolist()})
    dataset = dataset.cast_column("label", ClassLabel(names=AG_LABELS))
    # the seed's length filter (1-512 words): kept, it is part of the pipeline
    dataset = dataset.filter(lambda ex: 1 <= len(ex["text"].split()) <= 512)

    def preprocess(examples):
        return tokenizer(examples["text"], truncation=True, padding=True)

    tokenized = dataset.map(preprocess, batched=True, remove_columns=["text"])
    tokenized = tokenized.rename_column("label", "labels")
    names = dataset.features["label"].names
    collator = DataCollatorWithPadding(tokenizer=tokenizer, return_tensors="pt")
    model = AutoModelForSequenceClassification.from_pretrained(
        args.model, num_labels=len(names), id2label=dict(enumerate(names))
    )
    split = tokenized.train_test_split(test_size=0.1, seed=42)
    peft_model = get_peft_model(model, seed_lora())
    lora_b = {n: p.detach().clone() for n, p in peft_model.named_parameters() if "lora_B" in n}
    gpu = torch.cuda.is_available()
    training_args = TrainingArguments(
        output_dir=str(Path(args.workdir) / "results"),
        num_train_epochs=12,
        max_steps=args.steps,
        per_device_train_batch_size=64,
        per_device_eval_batch_size=64 * 4,
        learning_rate=2e-5,
        eval_strategy="epoch",
        save_strategy="epoch",
        load_best_model_at_end=True,
        metric_for_best_model="accuracy",
        greater_is_better=True,
        save_total_limit=2,
        logging_steps=100,
        report_to="tensorboard",
        optim="adamw_torch_fused",
        gradient_checkpointing=True,
        gradient_checkpointing_kwargs={"use_reentrant": True},
        dataloader_num_workers=4,
        gradient_accumulation_steps=1,
        fp16=gpu,
        use_cpu=not gpu,
        warmup_steps=0.1,
        weight_decay=0.01,
    )

    def compute_metrics(pred):
        return {"accuracy": accuracy_score(pred.label_ids, pred.predictions.argmax(-1))}

    trainer = Trainer(
        model=peft_model,
        args=training_args,
        compute_metrics=compute_metrics,
        train_dataset=split["train"],
        eval_dataset=split["test"],
        data_collator=collator,
    )
    clock, counts = StepClock(), []
    trainer.add_callback(clock)
    count_batches(trainer, counts)
    trainer.train()
    moved = any(
        not torch.equal(p.detach().cpu(), lora_b[n].cpu())
        for n, p in peft_model.named_parameters()
        if n in lora_b
    )
    result = {
        "steps": step_records(clock, counts),
        "train_rows": len(split["train"]),
        "chunk_padded_length_max": max(len(x) for x in tokenized["input_ids"]),
        "lora_weights_changed": moved,  # did LoRA get gradients through reentrant checkpointing?
        "precision": "fp16" if gpu else "fp32",
    }
    return result, peft_model, collator


def evaluate_model(inference_model, dataset, batch_size=8, data_collator=None):
    """The seed's `evaluate_model(..., labelled=False, 8, data_collator)`, unchanged in effect."""
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=data_collator)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    inference_model.to(device)
    inference_model.eval()
    predictions = []
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.no_grad():
            outputs = inference_model(**batch)
        predictions.append(outputs.logits.argmax(dim=-1).cpu())
    return torch.cat(predictions, dim=0)


def predict(args, tokenizer, model, collator):
    texts, _ = read_texts(args.predict)
    start = time.perf_counter()

    def preprocess_inference(examples):
        return tokenizer(
            examples["text"], truncation=True, padding="max_length", max_length=args.max_length
        )

    dataset = Dataset.from_dict({"text": texts})
    test_dataset = dataset.map(preprocess_inference, batched=True, remove_columns=["text"])
    preds = evaluate_model(model, test_dataset, 8, collator)
    seconds = time.perf_counter() - start
    return {
        "predict_rows": len(texts),
        "predict_s": seconds,
        "predict_padded_length": args.max_length,
        "predicted_labels": np.bincount(preds.numpy(), minlength=4).tolist(),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="encoder folder")
    parser.add_argument("--train", required=True, help="CSV: label,title,description")
    parser.add_argument("--predict", required=True, help="CSV: title,description")
    parser.add_argument("--steps", type=int, default=7, help="optimizer steps (max_steps)")
    parser.add_argument("--max-length", type=int, default=512, help="prediction padding")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    result, model, collator = train(args, tokenizer)
    result |= predict(args, tokenizer, model, collator)
    result |= {"threads": torch.get_num_threads(), "model_max_length": tokenizer.model_max_length}
    if torch.cuda.is_available():
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
