"""The real pretrained encoder (all-MiniLM-L6-v2, offline package) learns from real AG News rows."""

import copy
import json
from dataclasses import replace

import pandas as pd
import torch
import torch.nn.functional as F
from conftest import newslora

from newslora.data import load_with_config
from newslora.model import autocast_dtype
from newslora.predict import as_trained, load_run, predict_with_config


def test_minilm_learns_real_news(minilm_run, tmp_path):
    run, held_out = minilm_run
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["trainable_params"] == 333_316  # 6 layers x 6 matrices at r=8, + 384x4 head
    assert summary["train_rows"] == 400
    newslora("evaluate", run, "--data", held_out, "--out", tmp_path / "metrics.json")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["rows"] == 320
    assert metrics["accuracy"] > 0.75, metrics["accuracy"]  # chance is 0.25
    assert min(c["recall"] for c in metrics["per_class"].values()) > 0.4
    newslora("predict", run, held_out, tmp_path / "pred.csv")
    preds = pd.read_csv(tmp_path / "pred.csv")["Label"].to_numpy()
    truth = pd.read_csv(held_out)["label"].to_numpy()
    assert (preds == truth).mean() == metrics["accuracy"]


def test_confidence_is_calibrated_on_validation(minilm_run):
    """The run's temperature, fitted on its 80 validation rows, makes held-out confidence
    more honest: lower negative log-likelihood on 320 unseen rows than the raw softmax."""
    run, held_out = minilm_run
    temperature = json.loads((run / "train_summary.json").read_text())["temperature"]
    assert 0.01 <= temperature <= 10 and temperature != 1.0
    cfg, model, tokenizer = load_run(run)
    rows = load_with_config(cfg.data, held_out)
    logits = torch.as_tensor(predict_with_config(cfg, model, tokenizer, rows["text"].tolist()))
    labels = torch.tensor(rows["label"].tolist())
    raw = F.cross_entropy(logits, labels).item()
    calibrated = F.cross_entropy(logits / temperature, labels).item()
    assert calibrated < raw, (calibrated, raw, temperature)


def test_predict_stores_the_weights_as_training_did(minilm_run):
    """`newslora predict` runs the merged model with its weights in bf16 where training kept
    them so (bf16 autocast with train.bf16_base, the trunk too with bf16_trunk): no batch casts
    them again. On held-out rows its labels are the fp32 weights' labels, or all but a few."""
    run, held_out = minilm_run
    cfg, model, tokenizer = load_run(run)
    stored = as_trained(cfg, copy.deepcopy(model))
    bf16 = autocast_dtype(cfg.train.precision) is torch.bfloat16  # fp32-only CPUs: no cast
    assert {p.dtype for p in stored.parameters()} == {torch.bfloat16 if bf16 else torch.float32}
    linears = as_trained(
        replace(cfg, train=replace(cfg.train, bf16_trunk=False)), copy.deepcopy(model)
    )
    norms = {m.weight.dtype for m in linears.modules() if isinstance(m, torch.nn.LayerNorm)}
    assert norms == {torch.float32}
    texts = load_with_config(cfg.data, held_out)["text"].tolist()
    fp32 = predict_with_config(cfg, model, tokenizer, texts).argmax(axis=1)
    fast = predict_with_config(cfg, stored, tokenizer, texts).argmax(axis=1)
    assert (fp32 == fast).mean() >= 0.99, (fp32 != fast).sum()
