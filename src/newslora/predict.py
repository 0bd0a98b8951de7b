"""Predict: a trained run + a file of texts -> `ID,Label` CSV (the Kaggle submission format).

Rows are tokenized once, sorted by token length and batched, so each batch pads only to its own
longest row (news texts are ~50 tokens; padding to 512 would cost ~10x). LoRA is merged into
the base weights for inference. Output order and IDs follow the input file.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from peft import PeftModel
from tqdm.auto import tqdm

from newslora import NewsloraError
from newslora.config import load_config
from newslora.data import load_with_config
from newslora.files import atomic_path
from newslora.model import autocast_dtype, load_model


def load_run(run_dir, merge=True):
    """(config, model, tokenizer) of a finished run; LoRA merged for speed unless merge=False."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.toml").is_file() or not (run_dir / "adapter").is_dir():
        raise NewsloraError(f"{run_dir}: not a finished newslora run (no config.toml or adapter/)")
    cfg = load_config(run_dir / "config.toml")
    model, tokenizer = load_model(cfg, run_dir / "adapter")
    if merge and isinstance(model, PeftModel):
        model = model.merge_and_unload()
    return cfg, model.eval(), tokenizer


def predict_logits(
    model, tokenizer, texts, batch_size=64, max_length=128, precision="auto", progress=True
):
    """Logits for `texts`, in input order; length-sorted batches with dynamic padding."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = autocast_dtype(precision)
    model.to(device).eval()  # no dropout at inference
    enc = tokenizer(list(texts), truncation=True, max_length=max_length)
    order = np.argsort([len(ids) for ids in enc["input_ids"]], kind="stable")
    logits = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    batches = range(0, len(texts), batch_size)
    with torch.inference_mode(), torch.autocast(device, dtype=dtype, enabled=dtype is not None):
        for start in tqdm(batches, desc="predict", disable=not progress, unit="batch"):
            idx = order[start : start + batch_size]
            batch = tokenizer.pad({k: [enc[k][i] for i in idx] for k in enc}, return_tensors="pt")
            logits[idx] = model(**batch.to(device)).logits.float().cpu().numpy()
    return logits


def label_confidence(logits, temperature=1.0):
    """(predicted label, its softmax probability at `temperature`) for each row of logits."""
    scaled = torch.as_tensor(logits, dtype=torch.float32) / temperature
    probs = torch.softmax(scaled, dim=-1).numpy()
    return probs.argmax(axis=1), probs.max(axis=1)


def fit_temperature(logits, labels):
    """Temperature scaling (Guo et al., 2017): the T minimising validation NLL of softmax(z/T).

    A LoRA model trained briefly on little data is under-confident (the 2,000-row run of
    benchmarks/augment.py never gave a raw top probability above 0.87); after scaling,
    "confidence >= 0.9" means about what it says, so the filter and pseudo-labelling
    thresholds carry over across runs.
    Accuracy is unchanged: T > 0 keeps every argmax."""
    z = torch.as_tensor(logits, dtype=torch.float32)
    y = torch.as_tensor(labels, dtype=torch.long)
    grid = torch.logspace(-2, 1, 301)  # T from 0.01 to 10; NLL is smooth in log T
    nll = torch.stack([torch.nn.functional.cross_entropy(z / t, y) for t in grid])
    return round(float(grid[int(nll.argmin())]), 4)


def run_confidence(run_dir, texts):
    """(predicted label, calibrated confidence) of a run for each text."""
    cfg, model, tokenizer = load_run(run_dir)
    logits = predict_with_config(cfg, model, tokenizer, list(texts))
    return label_confidence(logits, run_temperature(run_dir))


def run_temperature(run_dir):
    """The run's fitted temperature (1.0 for runs saved before calibration existed)."""
    summary = Path(run_dir) / "train_summary.json"
    return json.loads(summary.read_text()).get("temperature", 1.0) if summary.is_file() else 1.0


def predict_with_config(cfg, model, tokenizer, texts, batch_size=None):
    """predict_logits with a run's batch size, max length and precision."""
    batch_size = batch_size or cfg.train.eval_batch_size
    return predict_logits(
        model, tokenizer, texts, batch_size, cfg.model.max_length, cfg.train.precision
    )


def predict_run(run_dir, input_spec, output, allow_pickle=False, batch_size=None):
    """Write `ID,Label` for each row of `input_spec` to `output`, atomically; return the table."""
    cfg, model, tokenizer = load_run(run_dir)
    df = load_with_config(
        cfg.data, input_spec or cfg.data.predict, need_labels=False, allow_pickle=allow_pickle
    )
    logits = predict_with_config(cfg, model, tokenizer, df["text"].tolist(), batch_size)
    table = pd.DataFrame({"ID": df["id"], "Label": logits.argmax(axis=1)})
    with atomic_path(output) as tmp:
        table.to_csv(tmp, index=False)
    return table
