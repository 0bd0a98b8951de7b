"""LoRA's last product, its scaling and the addition to the frozen layer's output as one addmm.

peft computes an adapted linear layer as `base(x) + lora_B(lora_A(x)) * scaling`: three passes
over an output as wide as the layer's (B's product, the multiplication, the addition), each
written out, and the multiplication's gradient one more pass in the backward. Each pass moves
a whole output for a product only r wide, and on a CPU such passes are bound by memory.
`torch.addmm(base_out, h, B.T, alpha=scaling)` does the same in one kernel that reads the
base's output once and writes the sum once (and in bf16 rounds once, where peft rounds three
times). It goes in through peft's own hook for LoRA variants (DoRA uses it), for vanilla
adapters only; merging falls back to peft's own arithmetic. Measured: 1.06-1.08x end to end
on CPU (benchmarks/README.md, the lever `unfused-lora`).
"""

import torch
from peft.tuners.lora.layer import Linear as LoraLinear
from peft.tuners.lora.layer import LoraVariant


class AddmmLora(LoraVariant):
    """Vanilla LoRA, computed as above; merges as vanilla LoRA does."""

    @staticmethod
    def init(module, adapter_name, **kwargs):
        pass  # nothing of its own to create: the adapter's A and B are peft's

    @staticmethod
    def merge_safe(module, active_adapter, orig_weight):
        return orig_weight + _delta(module, active_adapter, orig_weight)

    @staticmethod
    def merge_unsafe(module, active_adapter, orig_weight):
        orig_weight.data += _delta(module, active_adapter, orig_weight)

    @staticmethod
    def unmerge(module, active_adapter, orig_weight):
        return orig_weight - _delta(module, active_adapter, orig_weight)

    @staticmethod
    def forward(module, active_adapter, x, result, **kwargs):
        h = module.lora_A[active_adapter](module.lora_dropout[active_adapter](x))
        flat = torch.addmm(
            result.reshape(-1, result.shape[-1]),
            h.reshape(-1, h.shape[-1]),
            module.lora_B[active_adapter].weight.t(),
            alpha=module.scaling[active_adapter],
        )
        return flat.view(result.shape)


def _delta(module, adapter, weight):
    """Vanilla LoRA's weight delta (peft's own), in the base weight's dtype."""
    return module.get_delta_weight(adapter).to(weight.dtype)


def fuse_lora_add(model):
    """Give every vanilla LoRA adapter of a linear layer the one-addmm forward; returns how
    many. Adapters with a variant of their own (DoRA) or a bias on B keep peft's."""
    fused = 0
    for module in model.modules():
        variants = getattr(module, "lora_variant", None)
        if not isinstance(module, LoraLinear) or variants is None:
            continue
        for name in module.lora_A:
            if name not in variants and not module.lora_bias.get(name, False):
                variants[name] = AddmmLora()
                fused += 1
    return fused
