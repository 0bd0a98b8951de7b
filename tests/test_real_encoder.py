"""The real pretrained encoder (all-MiniLM-L6-v2, offline package) learns from real AG News rows."""

import json

import pandas as pd
from conftest import minilm_path, newslora

from newslora.config import load_config
from newslora.train import Recipe


def test_minilm_learns_real_news(pool, tmp_path, write_config):
    picked = pool.groupby("label").sample(200, random_state=1)  # 800 rows, 200 per class
    train = picked.groupby("label").head(120)  # 480 to train on (+ validation cut from them)
    held_out = picked.drop(train.index)  # 320 never seen in training or selection
    train.to_csv(tmp_path / "train.csv", index=False)
    held_out.to_csv(tmp_path / "held_out.csv", index=False)
    run = tmp_path / "run"
    cfg = write_config(f"""
[model]
name = "{minilm_path()}"
head = "default"
[data]
train = "{tmp_path / "train.csv"}"
val_rows = 80
[lora]
r = 8
alpha = 16.0
dropout = 0.1
targets = ["query", "key", "value", "attention_output", "ffn_in", "ffn_out"]
[train]
output_dir = "{run}"
epochs = 3.0
batch_size = 16
lr = 1e-3
warmup_ratio = 0.06
""")
    recipe = Recipe(load_config(cfg)).setup()
    assert recipe.count.trainable == 333_316  # 6 layers x 6 matrices at r=8, + 384x4 head
    recipe.train().save()
    newslora("evaluate", run, "--data", tmp_path / "held_out.csv")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["rows"] == 320
    assert metrics["accuracy"] > 0.75, metrics["accuracy"]  # chance is 0.25
    assert min(c["recall"] for c in metrics["per_class"].values()) > 0.4
    newslora("predict", run, tmp_path / "held_out.csv", tmp_path / "pred.csv")
    preds = pd.read_csv(tmp_path / "pred.csv")["Label"].to_numpy()
    assert (preds == held_out["label"].astype(int).to_numpy()).mean() == metrics["accuracy"]
