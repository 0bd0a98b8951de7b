"""Saving and reloading: the head travels with the adapter; predictions are identical."""

import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
import safetensors.torch
import torch
from conftest import LABELS, newslora, save_tiny_encoder, tiny_config, trained_looking_model
from peft import PeftModel
from transformers import AutoModelForSequenceClassification

from newslora import predict
from newslora.config import load_config, save_config
from newslora.model import build_model, load_model, save_model
from newslora.predict import load_run, predict_logits

TEXTS = [
    "Stocks fell as oil rose.",
    "The striker scored twice in the final.",
    "A new chip doubles battery life, the company said.",
    "Rebels seized the capital.",
]


@pytest.mark.parametrize("setting", ["auto", "0"])
def test_encoder_dropout_off_leaves_the_head_its_own(tiny_bert, tmp_path, setting):
    """model.dropout=0: in training mode the encoder gives the same output twice (no random
    masks drawn); with `auto` it does not. The default head keeps its dropout either way."""
    from newslora.model import build_model

    (tmp_path / "t.toml").write_text(tiny_config(tiny_bert, "unused.csv", tmp_path))
    overrides = [f"model.dropout={setting}", "lora.dropout=0"]  # LoRA's own: not this test's
    model = build_model(load_config(tmp_path / "t.toml", overrides))
    model.train()
    encoder = model.get_base_model().bert
    ids = torch.tensor([[101, 2000, 2001, 2002, 102]])
    first, second = (encoder(input_ids=ids).last_hidden_state for _ in range(2))
    assert torch.equal(first, second) == (setting == "0")
    assert model.get_base_model().dropout.p == 0.1  # BERT's head dropout, as it was


def test_encoder_dropout_reaches_every_family_s_names():
    from transformers import DebertaV2Config, ModernBertConfig

    from newslora.model import set_encoder_dropout

    modern, deberta = ModernBertConfig(), DebertaV2Config()
    set_encoder_dropout(modern, 0.2)
    set_encoder_dropout(deberta, 0.2)
    assert modern.embedding_dropout == modern.attention_dropout == modern.mlp_dropout == 0.2
    assert deberta.hidden_dropout_prob == deberta.attention_probs_dropout_prob == 0.2


@pytest.mark.parametrize("head", ["default", "linear", "mean"])
def test_reload_gives_identical_predictions(
    tiny_bert, small_train_csv, tmp_path, head, write_config
):
    cfg = load_config(
        write_config(tiny_config(tiny_bert, small_train_csv, tmp_path / "run")),
        [f"model.head={head}", "train.precision=fp32"],
    )
    model, tokenizer = trained_looking_model(cfg)
    before = predict_logits(model, tokenizer, TEXTS, precision="fp32", progress=False)
    save_model(model, tokenizer, tmp_path / "adapter")
    reloaded, tok2 = load_model(cfg, tmp_path / "adapter")
    after = predict_logits(reloaded, tok2, TEXTS, precision="fp32", progress=False)
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-6)
    assert np.abs(before[:, 0] - before[:, 1]).max() > 1e-3  # not a constant output


def test_rows_predicted_chunk_by_chunk_keep_their_order(
    tiny_bert, small_train_csv, tmp_path, write_config, pool, monkeypatch
):
    """A big input is tokenized CHUNK_ROWS rows at a time: each row's logits land on its row."""
    cfg = load_config(
        write_config(tiny_config(tiny_bert, small_train_csv, tmp_path / "run")),
        ["train.precision=fp32"],
    )
    model, tokenizer = trained_looking_model(cfg)
    texts = pool["description"].head(50).tolist()
    whole = predict_logits(model, tokenizer, texts, batch_size=4, progress=False)
    monkeypatch.setattr(predict, "CHUNK_ROWS", 7)  # 8 chunks, the last of 1 row
    chunked = predict_logits(model, tokenizer, texts, batch_size=4, progress=False)
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)
    assert len({tuple(row) for row in whole.round(4)}) > 40  # rows differ: order is checked


@pytest.mark.parametrize("model_type", ["bert", "deberta-v2", "modernbert"])
def test_mean_head_ignores_padding_and_differs_from_the_first_token(
    model_type, small_train_csv, tmp_path, write_config
):
    """The mean is over real tokens only: a text alone and padded in a batch score the same.
    (DeBERTa's pooler sits beside the encoder; ModernBERT pools in its own forward.)"""
    encoder = save_tiny_encoder(tmp_path / model_type, model_type, initializer_range=0.5)
    path = write_config(tiny_config(encoder, small_train_csv, tmp_path / "run"))
    logits = {}
    for head in ("linear", "mean"):
        cfg = load_config(path, [f"model.head={head}", "train.precision=fp32"])
        model, tokenizer = trained_looking_model(cfg)
        batched = predict_logits(model, tokenizer, TEXTS, precision="fp32", progress=False)
        alone = [
            predict_logits(model, tokenizer, [t], precision="fp32", progress=False)[0]
            for t in TEXTS
        ]
        np.testing.assert_allclose(np.stack(alone), batched, rtol=1e-5, atol=1e-5)
        logits[head] = batched
    assert np.abs(logits["mean"] - logits["linear"]).max() > 1e-2


def test_adapter_loads_with_plain_peft(tiny_bert, small_train_csv, tmp_path, write_config):
    cfg = load_config(write_config(tiny_config(tiny_bert, small_train_csv, tmp_path / "run")))
    model, tokenizer = trained_looking_model(cfg)
    save_model(model, tokenizer, tmp_path / "adapter")
    base = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=len(LABELS))
    plain = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        np.testing.assert_allclose(plain(**batch).logits, model.eval()(**batch).logits, atol=1e-6)


def test_run_predictions_survive_the_merge(tiny_bert, small_train_csv, tmp_path, write_config):
    """load_run merges LoRA into the weights for speed; labels must not change."""
    cfg = load_config(
        write_config(tiny_config(tiny_bert, small_train_csv, tmp_path / "run")),
        ["train.precision=fp32"],
    )
    model, tokenizer = trained_looking_model(cfg)
    run = tmp_path / "run"
    save_model(model, tokenizer, run / "adapter")
    save_config(cfg, run / "config.toml")
    _, merged, _ = load_run(run)  # merges LoRA
    expected = predict_logits(model, tokenizer, TEXTS, precision="fp32", progress=False)
    got = predict_logits(merged, tokenizer, TEXTS, precision="fp32", progress=False)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_saving_and_loading_never_look_up_the_base(
    tiny_bert, small_train_csv, tmp_path, write_config
):
    """The adapter config names the base as it was when trained: a Hub id (`roberta-base`),
    or a folder since moved. peft's default save and key listing look that base up (a network
    call for an id, and a warning wherever it is not found, at every checkpoint); newslora
    never resizes the vocabulary, so neither needs to."""
    cfg = load_config(write_config(tiny_config(tiny_bert, small_train_csv, tmp_path / "run")))
    model, tokenizer = trained_looking_model(cfg)
    for base in ("FacebookAI/roberta-base", str(tmp_path / "gone")):
        model.peft_config["default"].base_model_name_or_path = base
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            save_model(model, tokenizer, tmp_path / "adapter")
            load_model(cfg, tmp_path / "adapter")
        assert not [w for w in caught if base in str(w.message)], base


def test_load_report_names_missing_encoder_weights_only(
    tiny_bert, small_train_csv, tmp_path, write_config
):
    """The head starts random in every run (it is what trains), so transformers' load report,
    a table that says so, is noise to train and predict alike; an encoder weight the
    checkpoint lacks is news: one warning names it, and training goes on."""
    run = tmp_path / "run"
    train = newslora("train", write_config(tiny_config(tiny_bert, small_train_csv, run)))
    assert "LOAD REPORT" not in train.stderr and "newly initialized" not in train.stderr
    assert "initialised at random" not in train.stderr
    texts = tmp_path / "texts.csv"
    pd.DataFrame({"text": TEXTS}).to_csv(texts, index=False)
    predict = newslora("predict", run, texts, tmp_path / "out.csv")
    assert "LOAD REPORT" not in predict.stderr and "initialised at random" not in predict.stderr
    broken = tmp_path / "broken"
    shutil.copytree(tiny_bert, broken)
    weights = safetensors.torch.load_file(broken / "model.safetensors")
    lost = next(k for k in weights if "layer.1.output.dense.weight" in k)
    del weights[lost]
    safetensors.torch.save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    cfg = tiny_config(broken, small_train_csv, tmp_path / "run2")
    train = newslora("train", write_config(cfg))
    line = [x for x in train.stderr.splitlines() if "initialised at random" in x]
    assert len(line) == 1 and "1 encoder weight(s)" in line[0] and "layer.1.output.dense" in line[0]


def test_a_classifier_of_other_classes_starts_a_run(tiny_bert, tmp_path, capsys):
    """A checkpoint fine-tuned elsewhere as a 2-class classifier: its encoder is kept, its
    head (the wrong shape for 4 classes) replaced, and that is no news (transformers refused
    to load it at all)."""
    source = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    source.save_pretrained(tmp_path / "sentiment")
    shutil.copy(tiny_bert + "/tokenizer.json", tmp_path / "sentiment")
    cfg = load_config(None, [f'model.name="{tmp_path / "sentiment"}"', "lora.r=2"])
    model = build_model(cfg)
    assert model(input_ids=torch.tensor([[101, 2000, 102]])).logits.shape == (1, len(LABELS))
    encoder = model.get_base_model().bert.encoder.layer[0].intermediate.dense.weight
    assert torch.equal(encoder, source.bert.encoder.layer[0].intermediate.dense.weight)
    assert "initialised at random" not in capsys.readouterr().err


@pytest.mark.parametrize("setting, enabled", [(None, False), ("1", True)])
def test_hub_kernels_are_off_unless_asked(setting, enabled):
    """transformers 5 fetches Hub kernels when a CUDA model goes to eval (offline: a crash after
    training, seen on the GPU machine); newslora turns them off unless USE_HUB_KERNELS is set."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "USE_HUB_KERNELS"}
    env |= {"USE_HUB_KERNELS": setting} if setting else {}
    code = (
        "import os, newslora.model\n"
        "from transformers.integrations.hub_kernels import _kernels_enabled as k\n"
        # a function since transformers 5.25; before, a flag that is also False while the
        # `kernels` package is missing, whatever the setting
        "print(os.environ['USE_HUB_KERNELS'], callable(k), k() if callable(k) else k)"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert len(out.stdout.split()) == 3, out.stderr
    setting_seen, is_function, kernels_on = out.stdout.split()
    assert setting_seen == (setting or "0"), out.stderr
    if is_function == "True" or not enabled:
        assert kernels_on == str(enabled), out.stderr
