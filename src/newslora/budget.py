"""Budget: exact trainable-parameter counts for a config, without downloading any weights.

The model is built from its architecture config on PyTorch's meta device (shapes only), LoRA is
applied exactly as in training, and every trainable tensor is put in one bucket:
lora (adapter matrices), head (classifier), bias (encoder biases made trainable), other.
"""

from dataclasses import dataclass

from newslora import NewsloraError
from newslora.model import build_model, head_modules


@dataclass
class Count:
    lora: int = 0
    head: int = 0
    bias: int = 0
    other: int = 0
    total_params: int = 0

    @property
    def trainable(self):
        return self.lora + self.head + self.bias + self.other


def count_parameters(model):
    """Bucket the trainable parameters of a (peft-wrapped or plain) classifier."""
    inner = getattr(model, "base_model", model)
    inner = getattr(inner, "model", inner)  # peft: PeftModel.base_model.model is the HF model
    heads = set(head_modules(inner))
    count = Count()
    for name, param in model.named_parameters():
        n = param.numel()
        if "original_module" not in name:  # peft keeps a frozen copy of the head: count it once
            count.total_params += n
        if not param.requires_grad:
            continue
        parts = name.split(".")
        if "lora_" in name:
            count.lora += n
        elif heads.intersection(parts):
            count.head += n
        elif parts[-1] == "bias":
            count.bias += n
        else:
            count.other += n
    return count


def count_config(cfg):
    """Exact counts for a config; builds on the meta device (no weights, no download)."""
    return count_parameters(build_model(cfg, pretrained=False))


def check_budget(count, budget):
    if budget and count.trainable > budget:
        raise NewsloraError(
            f"over budget: {count.trainable:,} trainable parameters exceed train.budget "
            f"{budget:,} by {count.trainable - budget:,} (lower lora.r, targets or layers, "
            f"or use model.head = 'linear')"
        )


def report(cfg, count):
    """Human-readable breakdown, as `newslora budget` prints it."""
    lora = cfg.lora
    if lora.full_finetune:
        where = "full fine-tuning (no LoRA)"
    else:
        layers = f"layers {lora.layers}" if lora.layers else "all layers"
        where = f"r={lora.r} alpha={lora.alpha:g} on {', '.join(lora.targets)}, {layers}"
    rows = [
        ("lora", count.lora, where),
        ("head", count.head, cfg.model.head),
        ("bias", count.bias, f"bias={lora.bias}"),
        ("other", count.other, ""),
    ]
    lines = [f"model      {cfg.model.name}"]
    lines += [f"{name:<10} {n:>11,}   {note}".rstrip() for name, n, note in rows]
    share = 100 * count.trainable / max(count.total_params, 1)
    lines.append(f"trainable  {count.trainable:>11,}   {share:.2f}% of {count.total_params:,}")
    budget = cfg.train.budget
    if budget:
        verdict = "fits" if count.trainable <= budget else "OVER"
        lines.append(
            f"budget     {budget:>11,}   {verdict} ({100 * count.trainable / budget:.1f}% used)"
        )
    return "\n".join(lines)
