"""Generate: adapt a causal LM to unlabelled target texts, write news per class, filter them.

Seed 000 fine-tuned GPT-2 on the competition's unlabelled texts, then prompted it per class.
Here the same three steps are generic and configured by a `[generate]` section:
  1. adapt   LoRA (or full) causal-LM fine-tuning on any CSV with a `text` column. Each text is
             the answer to "Write a short news story." (chat models) or a plain document.
  2. write   per class, "Write a short news story about <topic>." (or "<Topic> news: " for
             models without a chat template); sampled, length drawn per batch, de-duplicated.
  3. filter  a classifier trained on real data keeps a row only when it predicts the intended
             class with confidence >= threshold; keep rates per class are reported.
"""

import random
import re

import numpy as np
import pandas as pd
import torch
from datasets import Dataset
from peft import LoraConfig, get_peft_model
from tqdm.auto import tqdm
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    Trainer,
    TrainingArguments,
    set_seed,
)

from newslora import NewsloraError
from newslora.data import clean_text
from newslora.model import autocast_dtype, resolve_name

AG_TOPICS = [
    "world politics and international affairs",
    "sports",
    "business and the economy",
    "science and technology",
]


def load_lm(gen_cfg):
    path = resolve_name(gen_cfg.model)
    kwargs = {"gguf_file": gen_cfg.gguf_file} if gen_cfg.gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise NewsloraError(f"generate.model '{gen_cfg.model}': cannot load ({first})") from None
    if gen_cfg.gguf_file:
        # transformers dequantises GGUF weights into ordinary float tensors on load; the
        # "quantized" marker it leaves would only make the Trainer refuse to fine-tune them.
        model.hf_quantizer, model.is_quantized = None, False
        model.config.quantization_config = None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # generation continues from the right end
    return model, tokenizer


def _training_document(tokenizer, text):
    """An unlabelled text as the LM sees it during adaptation."""
    if tokenizer.chat_template:
        messages = [
            {"role": "user", "content": "Write a short news story."},
            {"role": "assistant", "content": text},
        ]
        return tokenizer.apply_chat_template(messages, tokenize=False)
    return text + (tokenizer.eos_token or "")


def _prompt(tokenizer, topic):
    """What generation continues from, for one class."""
    if tokenizer.chat_template:
        messages = [{"role": "user", "content": f"Write a short news story about {topic}."}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return f"{topic[:1].upper()}{topic[1:]} news:"


def adaptation_data(tokenizer, texts):
    """Token ids of each text as a training document, labels = the ids (end token included)."""
    docs = [_training_document(tokenizer, t) for t in texts]

    def encode(batch):
        enc = tokenizer(batch["text"], truncation=True, max_length=160)
        return enc | {"labels": [list(ids) for ids in enc["input_ids"]]}

    return Dataset.from_dict({"text": docs}).map(encode, batched=True, remove_columns=["text"])


def adaptation_collator(tokenizer):
    """Pads labels with -100 by position, not by token id: with pad = eos, masking pad ids
    (as DataCollatorForLanguageModeling does) would also mask each document's end-of-text
    token, and the adapted LM would never learn to stop."""
    return DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100)


def adapt(model, tokenizer, texts, gen_cfg, output_dir):
    """Causal-LM fine-tuning on `texts` (LoRA unless adapt_full). Returns the adapted model."""
    set_seed(gen_cfg.seed)
    if not gen_cfg.adapt_full:
        model = get_peft_model(
            model,
            LoraConfig(task_type="CAUSAL_LM", r=16, lora_alpha=32, target_modules="all-linear"),
        )
    trainer = Trainer(
        model=model,
        args=TrainingArguments(
            output_dir=str(output_dir),
            num_train_epochs=gen_cfg.adapt_epochs,
            learning_rate=gen_cfg.adapt_lr,
            per_device_train_batch_size=8,
            warmup_steps=0.05,
            logging_steps=10,
            save_strategy="no",
            report_to="none",
            seed=gen_cfg.seed,
            use_cpu=not torch.cuda.is_available(),
            bf16=autocast_dtype("auto") == torch.bfloat16,
        ),
        train_dataset=adaptation_data(tokenizer, texts),
        data_collator=adaptation_collator(tokenizer),
    )
    result = trainer.train()
    model = model.merge_and_unload() if not gen_cfg.adapt_full else model
    return model.eval(), result.training_loss


def _normalise(text):
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def write_rows(model, tokenizer, labels, gen_cfg):
    """`per_class` distinct generated texts per class (fewer if the LM keeps repeating)."""
    topics = gen_cfg.prompts or AG_TOPICS
    if len(topics) != len(labels):
        raise NewsloraError(f"generate.prompts: {len(topics)} topics for {len(labels)} classes")
    rng, rows, seen = random.Random(gen_cfg.seed), [], set()
    torch.manual_seed(gen_cfg.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    # bf16 where the hardware has it (GPUs, CPUs with bf16 units): faster than fp32.
    model.to(device, dtype=autocast_dtype("auto") or torch.float32)
    progress = tqdm(total=len(topics) * gen_cfg.per_class, desc="generating", unit="row")
    for label, topic in enumerate(topics):
        prompt = _prompt(tokenizer, topic)
        kept, attempts = 0, 0
        while kept < gen_cfg.per_class and attempts < 4 * gen_cfg.per_class:
            n = min(gen_cfg.batch_size, gen_cfg.per_class - kept)
            for text in _sample(model, tokenizer, prompt, n, rng, gen_cfg, device):
                attempts += 1
                key = _normalise(text)
                if len(key.split()) < 5 or key in seen:
                    continue  # too short to be news, or a repeat
                seen.add(key)
                rows.append({"text": text, "label": label, "source": "generated", "prompt": topic})
                kept += 1
                progress.update()
    progress.close()
    return pd.DataFrame(rows, columns=["text", "label", "source", "prompt"])


def _sample(model, tokenizer, prompt, n, rng, gen_cfg, device):
    batch = tokenizer([prompt] * n, return_tensors="pt", add_special_tokens=False).to(device)
    with torch.inference_mode():
        out = model.generate(
            **batch,
            do_sample=True,
            temperature=gen_cfg.temperature,
            top_p=gen_cfg.top_p,
            repetition_penalty=gen_cfg.repetition_penalty,
            max_new_tokens=rng.randint(gen_cfg.min_new_tokens, gen_cfg.max_new_tokens),
            min_new_tokens=gen_cfg.min_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
        )
    new = out[:, batch["input_ids"].shape[1] :]
    return [clean_text(t) for t in tokenizer.batch_decode(new, skip_special_tokens=True)]


def filter_rows(rows, run_dir, threshold, labels):
    """Keep rows the run assigns to their intended class (ids of `labels`, the run's classes)
    with confidence >= threshold."""
    from newslora.predict import run_confidence

    predicted, confidence = run_confidence(run_dir, rows["text"], labels)
    rows = rows.assign(predicted=predicted, confidence=confidence)
    rows["kept"] = (rows["predicted"] == rows["label"]) & (rows["confidence"] >= threshold)
    return rows


def keep_rates(rows, labels):
    return {labels[k]: float(np.mean(g["kept"])) for k, g in rows.groupby("label")}
