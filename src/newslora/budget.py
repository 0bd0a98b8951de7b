"""Budget: exact trainable-parameter counts for a config, without downloading any weights.

The model is built from its architecture config on PyTorch's meta device (shapes only), LoRA is
applied exactly as in training, and every trainable tensor is put in one bucket:
lora (adapter matrices), head (classifier), bias (encoder biases made trainable), other.
"""

from dataclasses import dataclass, replace

from peft import PeftModel

from newslora import NewsloraError
from newslora.lora import head_modules
from newslora.model import build_model


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
    inner = model.base_model.model if isinstance(model, PeftModel) else model
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
        ("head", count.head, f"{cfg.model.head}, {len(cfg.data.labels)} classes"),
        ("bias", count.bias, "" if lora.full_finetune else f"bias={lora.bias}"),
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


# --- planning: where to spend the budget ------------------------------------------------------

MAX_RANK = 64
LAYOUTS = {  # from cheapest to widest coverage
    "q,v": ["query", "value"],
    "q,k,v": ["query", "key", "value"],
    "attention": ["query", "key", "value", "attention_output"],
    "attention+ffn": ["query", "key", "value", "attention_output", "ffn_in", "ffn_out"],
}


def _with_lora(cfg, **changes):
    return replace(cfg, lora=replace(cfg.lora, **changes))


def _with_head(cfg, head):
    return replace(cfg, model=replace(cfg.model, head=head))


def largest_rank(cfg):
    """Largest LoRA rank (<= MAX_RANK) that keeps cfg within train.budget, and its count.

    Trainable parameters are linear in r, so one build at r=1 tells everything."""
    at_one = count_config(_with_lora(cfg, r=1))
    fixed = at_one.trainable - at_one.lora
    if not cfg.train.budget:
        return MAX_RANK, count_config(_with_lora(cfg, r=MAX_RANK))
    rank = min(MAX_RANK, (cfg.train.budget - fixed) // max(at_one.lora, 1))
    if rank < 1:
        return 0, at_one
    return rank, count_config(_with_lora(cfg, r=rank))


def resolve_rank(cfg):
    """cfg with lora.r = "auto" replaced by the largest rank that fits the budget."""
    if cfg.lora.r != "auto" or cfg.lora.full_finetune:
        return cfg
    rank, count = largest_rank(cfg)
    if rank < 1:
        check_budget(count, cfg.train.budget)  # even r=1 is over: say by how much
    return _with_lora(cfg, r=rank)


def plan(cfg):
    """Every layout x head at its largest fitting rank, and the pick.

    Rule: adapt as many matrices as possible (LoRA on all attention and feed-forward matrices
    beats a higher rank on fewer), at a rank >= 4; then the head that leaves the higher rank;
    then the model's own head. Layer subsets are left to the user (lora.layers)."""
    rows = []
    for layout, targets in LAYOUTS.items():
        for head in ("default", "linear"):
            candidate = _with_head(_with_lora(cfg, targets=targets), head)
            rank, count = largest_rank(candidate)
            rows.append(
                {
                    "layout": layout,
                    "head": head,
                    "r": rank,
                    "count": count,
                    "cfg": _with_lora(candidate, r=rank),
                }
            )
    usable = [i for i, row in enumerate(rows) if row["r"] >= 4]
    pick = max(
        usable, key=lambda i: (i // 2, rows[i]["r"], rows[i]["head"] == "default"), default=None
    )
    return rows, pick


def plan_report(cfg, rows, pick):
    lines = [
        f"budget {cfg.train.budget:,} on {cfg.model.name} (bias={cfg.lora.bias})",
        f"{'layout':<15}{'head':<9}{'max r':>6}{'lora':>11}{'head':>9}{'bias':>9}{'trainable':>11}",
    ]
    for i, row in enumerate(rows):
        c = row["count"]
        mark = "  <- pick" if i == pick else ("  (does not fit)" if row["r"] < 1 else "")
        lines.append(
            f"{row['layout']:<15}{row['head']:<9}{row['r']:>6}{c.lora:>11,}"
            f"{c.head:>9,}{c.bias:>9,}{c.trainable:>11,}{mark}"
        )
    if pick is not None:
        chosen = rows[pick]["cfg"]
        lines += [
            "",
            "as config:",
            f'[model]\nhead = "{chosen.model.head}"',
            "[lora]",
            f"r = {chosen.lora.r}",
            f"targets = {chosen.lora.targets}",
        ]
    return "\n".join(lines)
