"""The real pretrained encoder (all-MiniLM-L6-v2, offline package) learns from real AG News rows."""

import json

import pandas as pd
from conftest import newslora


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
