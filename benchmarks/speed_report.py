"""The speed benchmark's pure parts: step windows, padding and token counts, the FLOP formula,
the levers and goals, row keys. No timing and no model here (tests/test_speed_bench.py);
speed_tables.py writes speed.json and speed.md from the rows.
"""

import torch
from common import done

KEY = ("arm", "encoder", "device", "rows", "max_length", "precision")
LEVERS = [
    "baseline", "fp32-base", "fp32-trunk", "unfused-lora", "eager-attention", "sdpa-attention",
    "adamw-foreach", "torch-compile", "compile-dynamic", "batch-64", "batch-256", "compile-graphs",
    "collate-in-loop", "numpy-collator", "encoder-dropout-0", "peft-input-cast", "host-threads",
    "system-malloc", "omp-bind", "omp-passive", "eval-pass", "eval-pass-grouped",
]  # fmt: skip
# the same run as baseline outside a container's CPU quota: `lever_ab.py --cpu-quota` runs it
QUOTA_ONLY = {"host-threads"}
GOALS = {"train": 15.0, "predict": 20.0, "cpu_matmul_utilisation": 0.40}
GPU_GOALS = {"train": 4.0, "predict": 10.0, "mfu": 0.35}  # MFU: RoBERTa-base LoRA, batch >= 64


def flops_per_token(n_params, full_finetune=False):
    """Training FLOPs per token for N parameters that run per token: forward 2N, backward 2N
    for the activation gradients, and 2N more for weight gradients when every weight trains.
    Attention scores (~4 x layers x hidden x sequence) are left out, as in the usual MFU."""
    return (6 if full_finetune else 4) * n_params


def utilisation(flops_per_s, peak_flops):
    return flops_per_s / peak_flops


def window(ends, batches, warmup):
    """Steady-state rates: from the end of step `warmup` to the end of the last step.
    `ends`: end time of each step (s); `batches`: rows, real and padded tokens of those steps."""
    seconds = ends[-1] - ends[warmup - 1]
    return {
        "steps_timed": len(ends) - warmup,
        "seconds": seconds,
        "samples_per_s": batches["samples"] / seconds,
        "tokens_per_s": batches["real"] / seconds,
        "padded_tokens_per_s": batches["padded"] / seconds,
    }


def totals(records):
    return {k: sum(r[k] for r in records) for k in ("samples", "real", "padded")}


def chunk_padded(lengths, chunk=1000):
    """Lengths after the seed's `map(tokenize, batched=True)` with padding=True: every row is
    padded to the longest row of its `chunk`-row map batch."""
    out = []
    for i in range(0, len(lengths), chunk):
        part = lengths[i : i + chunk]
        out += [max(part)] * len(part)
    return out


def grouped_batches(lengths, batch_size, seed):
    """The batches of transformers' length-grouped sampler (newslora's group_by_length)."""
    from transformers.trainer_pt_utils import get_length_grouped_indices

    order = get_length_grouped_indices(
        lengths, batch_size, generator=torch.Generator().manual_seed(seed)
    )
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def grouped_totals(lengths, batch_size, skip=1, draws=10, stop=None):
    """Mean rows, real and padded tokens of batches skip..stop (after the first `skip`), over
    `draws` seeded orders: the CLI's own order is not observable, its expectation is (spread
    < 1%)."""
    sums = {"samples": 0.0, "real": 0.0, "padded": 0.0}
    for seed in range(draws):
        for batch in grouped_batches(lengths, batch_size, seed)[skip:stop]:
            sums["samples"] += len(batch) / draws
            sums["real"] += sum(lengths[i] for i in batch) / draws
            sums["padded"] += len(batch) * max(lengths[i] for i in batch) / draws
    return sums


def key(row):
    return tuple(row.get(k) for k in KEY)


def measured_keys(rows):
    return done(rows, KEY)
