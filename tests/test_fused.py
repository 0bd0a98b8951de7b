"""The one-addmm LoRA forward (newslora.fused): the same function as peft's, and merges alike."""

import copy

import pytest
import torch
from conftest import tiny_config

from newslora.config import load_config
from newslora.fused import AddmmLora, fuse_lora_add
from newslora.model import build_model


@pytest.fixture()
def two_models(tiny_bert, small_train_csv, tmp_path, write_config):
    """The tiny model with LoRA on all six targets, B drawn away from its zero init (so the
    adapters change the output), and a copy of it with the fused forward."""
    text = tiny_config(tiny_bert, small_train_csv, tmp_path / "run")
    text = text.replace('targets = ["query", "value"]', 'targets = ["query", "key", "value", '
                        '"attention_output", "ffn_in", "ffn_out"]')  # fmt: skip
    cfg = load_config(write_config(text), ["lora.dropout=0"])
    peft = build_model(cfg)
    torch.manual_seed(0)
    for name, p in peft.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.2)
    fused = copy.deepcopy(peft)
    assert fuse_lora_add(fused) == 2 * 6  # two layers, six adapted matrices each
    return peft.eval(), fused.eval()  # eval: the head's dropout off, the same draws for both


def _step(model, batch, bf16=False):
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = model(**batch)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.logits.float().detach(), grads


@pytest.fixture()
def batch():
    ids = torch.randint(1000, 3000, (4, 12), generator=torch.Generator().manual_seed(0))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.arange(4)}


def test_the_same_logits_and_gradients_as_peft(two_models, batch):
    """fp32: what peft computes in three passes, addmm computes in one (alpha * (h @ B.T),
    then the sum): equal to rounding. bf16: at least as close to the fp32 result as peft's."""
    peft, fused = two_models
    ref_logits, ref_grads = _step(peft, batch)
    logits, grads = _step(fused, batch)
    assert torch.allclose(logits, ref_logits, atol=1e-6)
    assert grads.keys() == ref_grads.keys() and any("lora_B" in k for k in grads)
    for name, grad in grads.items():
        assert torch.allclose(grad, ref_grads[name], atol=1e-6, rtol=1e-4), name

    def error(model):
        logits, _ = _step(model, batch, bf16=True)
        return (logits - ref_logits).abs().max().item()

    assert error(fused) <= error(peft) + 1e-3  # bf16 rounds the sum once, not three times


def test_merges_as_peft_does(two_models):
    """Merging (what predict and export run) gives the same weights either way, and
    unmerging restores the base."""
    peft, fused = two_models
    base = {k: v.clone() for k, v in fused.state_dict().items()}
    peft.merge_adapter()
    fused.merge_adapter()
    for (name, a), b in zip(peft.state_dict().items(), fused.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    fused.unmerge_adapter()
    for name, value in fused.state_dict().items():
        assert torch.allclose(value, base[name], atol=1e-6), name


def test_leaves_other_variants_alone(two_models):
    """An adapter that already has a variant of its own (as DoRA's adapters do) keeps it, and
    a second call finds nothing left to fuse."""
    peft, fused = two_models
    layers = [m for m in peft.modules() if hasattr(m, "lora_variant")]
    own = object()
    layers[0].lora_variant["default"] = own
    assert fuse_lora_add(peft) == len(layers) - 1
    assert layers[0].lora_variant["default"] is own
    assert all(isinstance(m.lora_variant["default"], AddmmLora) for m in layers[1:])
    assert fuse_lora_add(fused) == 0
