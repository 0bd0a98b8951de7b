"""Where one training step's time goes: newslora's own Recipe, in this process, timed step by
step, then torch.profiler over a few more steps (host ops; on a GPU also the kernels).

    python benchmarks/step_profile.py                     # CPU: MiniLM-L6, batch 32 (~1 min)
    python benchmarks/step_profile.py --encoder mpnet     # CPU: MPNet-base, the recipe's layout
    python benchmarks/step_profile.py --gpu --batches 32,1024
                                     # GPU: RoBERTa-base (random weights), then MiniLM-L6

Why: on an H200 (2026-12-04) a newslora step took ~145 ms at any batch from 32 to 1,024 rows
(results/speed.md), where the seed's Trainer took ~50 ms for 64 rows padded to 194 tokens.
Arithmetic cannot explain a step that does not grow with its batch; this says what does.
Each step is cut into the Trainer's phases (record_function spans: the batch fetch, forward,
backward, the FLOP count, gradient clipping, the optimizer, scheduler + zero_grad, logging)
and the profile counts, per step, the host's op time, the device's kernel time, kernel
launches, host-device syncs (`.item()`, stream syncs) and cudaMalloc calls. Rows land in
results/step_profile.json (one per encoder, device and batch) and step_profile.md.
"""

import argparse
import statistics
import sys
import time
from collections import Counter
from datetime import date
from pathlib import Path

from newslora.machine import allocator, fit_process

# as newslora's CLI does, before torch starts; imported by a test, it never starts over
fit_process(restart=__name__ == "__main__")
import torch  # noqa: E402
from common import ENCODERS, RESULTS, RUNS, load_rows, table, write_text  # noqa: E402
from seed000_pipeline import StepClock  # noqa: E402
from speed_machine import (  # noqa: E402
    budget_overrides,
    device_label,
    host_facts,
    inputs,
    random_roberta,
)
from torch.autograd import DeviceType  # noqa: E402
from torch.profiler import ProfilerActivity, profile, record_function  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from newslora.config import load_config  # noqa: E402
from newslora.files import write_json  # noqa: E402
from newslora.train import Recipe, adapter_input_casts  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# counted per step: what makes a step wait on the host, or the host on the device
SYNCS = ("aten::_local_scalar_dense", "cudaStreamSynchronize", "cudaDeviceSynchronize")
LAUNCHES = ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernelEx")
MALLOCS = ("cudaMalloc",)


class Spans(TrainerCallback):
    """The phases the Trainer announces through callbacks, as profiler spans."""

    def __init__(self):
        self.open = None

    def _switch(self, name):
        if self.open is not None:
            self.open.__exit__(None, None, None)
        self.open = record_function(name) if name else None
        if self.open is not None:
            self.open.__enter__()

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self._switch("phase: optimizer step")

    def on_optimizer_step(self, args, state, control, **kwargs):
        self._switch("phase: scheduler + zero_grad")

    def on_step_end(self, args, state, control, **kwargs):
        self._switch(None)


def spanned(obj, method, name):
    """Wrap obj.method in a profiler span called `name` (this object only). A method this
    transformers lacks (`_clip_grad_norm` came after 5.2) gets no span: its time stays inside
    the phase around it."""
    inner = getattr(obj, method, None)
    if inner is None:
        return

    def wrapper(*args, **kwargs):
        with record_function(name):
            return inner(*args, **kwargs)

    setattr(obj, method, wrapper)


class Window(TrainerCallback):
    """Starts the profiler after step `start` and stops it after step `stop`."""

    def __init__(self, start, stop):
        self.start, self.stop, self.prof, self.wall = start, stop, None, None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.start:
            activities = [ProfilerActivity.CPU]
            if torch.cuda.is_available():
                torch.cuda.synchronize()
                activities.append(ProfilerActivity.CUDA)
            self.prof = profile(activities=activities, record_shapes=True)  # for op_kinds
            self.prof.__enter__()
            self.began = time.perf_counter()
        elif state.global_step == self.stop and self.prof is not None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.wall = time.perf_counter() - self.began
            self.prof.__exit__(None, None, None)


def overrides(encoder, train, batch, steps, run):
    return [
        f"model.name={encoder}",
        f"data.train={train}",
        "data.max_train_rows=0",
        "data.val_rows=64",
        f"train.batch_size={batch}",
        f"train.max_steps={steps}",
        f"train.output_dir={run}",
        *budget_overrides(encoder),
    ]


def profile_row(encoder, label, batch, warmup, steps, runs, sets=()):
    total = warmup + steps
    rows = max(2_000, int(total * batch * 1.2))  # the validation share and a margin
    train, _, _ = inputs(runs, rows)
    run = runs / f"profile-{label.split()[0]}-b{batch}"
    changes = [*overrides(encoder, train, batch, total, run), *sets]
    cfg = load_config(REPO / "configs" / "demo.toml", changes)
    recipe = Recipe(cfg).setup()
    trainer, spans = recipe.trainer, Spans()
    for method, name in [
        ("get_batch_samples", "phase: fetch + pad batch"),
        ("compute_loss", "phase: forward"),
        ("floating_point_ops", "phase: FLOP count"),
        ("_clip_grad_norm", "phase: clip grad norm"),
        ("_maybe_log_save_evaluate", "phase: log/save/evaluate"),
    ]:
        spanned(trainer, method, name)
    spanned(trainer.accelerator, "backward", "phase: backward")
    clock, window = StepClock(), Window(warmup, total)
    for callback in (spans, clock, window):
        trainer.add_callback(callback)
    with adapter_input_casts(recipe.cfg, recipe.model):  # as Recipe.train runs it
        trainer.train()
    ends = clock.ends[:warmup]  # the steps before the profiler: un-instrumented times
    step_s = [b - a for a, b in zip(ends[1:], ends[2:], strict=False)]  # first two: warm-up
    return summary(window, steps, step_s, recipe.cfg.lora.r) | {
        "encoder": label,
        "device": device_label(torch.cuda.is_available()),
        "host": host_facts() | {"allocator": allocator()},  # this process: the CLI's
        "batch_size": batch,
        "overrides": list(sets),
        "precision": "bf16" if trainer.args.bf16 else "fp16" if trainer.args.fp16 else "fp32",
        "attention": recipe.model.get_base_model().config._attn_implementation,
        "steps_timed": len(step_s),
        "steps_profiled": steps,
        "torch": torch.__version__,
        "date": date.today().isoformat(),
    }


def summary(window, steps, step_s, rank):
    """The profiled window, per step. Host events (ops and the phase spans) carry CPU time;
    kernels are the device's own events (as torch's profiler table totals them). `rank`: the
    LoRA rank, which tells LoRA's matrix products from the frozen base's (op_kinds)."""
    events = window.prof.key_averages()
    per_step = lambda us: round(us / steps / 1e3, 2)  # noqa: E731  µs in the window -> ms/step
    count = lambda names: round(sum(e.count for e in events if e.key in names) / steps, 1)  # noqa: E731
    host = [e for e in events if e.device_type == DeviceType.CPU]
    phases = [e for e in host if e.key.startswith("phase: ")]
    ops = [e for e in host if not e.key.startswith("phase: ")]
    kernels = [e for e in events if e.device_type != DeviceType.CPU and not e.is_user_annotation]
    return {
        "median_step_ms": round(1e3 * statistics.median(step_s), 1),
        "profiled_step_ms": round(1e3 * window.wall / steps, 1),
        "host_op_ms_per_step": per_step(sum(e.self_cpu_time_total for e in ops)),
        # host time inside the phases but outside any torch op: Python, the Trainer, peft
        "host_other_ms_per_step": per_step(sum(e.self_cpu_time_total for e in phases)),
        "device_busy_ms_per_step": per_step(sum(e.self_device_time_total for e in kernels)),
        "phases_ms": {
            e.key.removeprefix("phase: "): per_step(e.cpu_time_total)
            for e in sorted(phases, key=lambda e: -e.cpu_time_total)
        },
        "launches_per_step": count(LAUNCHES),
        "syncs_per_step": count(SYNCS),
        "syncs_by_caller": sync_callers(window.prof, steps),
        "cuda_mallocs_per_step": count(MALLOCS),
        "host_op_kinds_ms": op_kinds(window.prof, rank, steps),
        "top_host_ops": top(ops, "self_cpu_time_total", steps),
        "top_device_ops": top(kernels, "self_device_time_total", steps),
    }


LABELS = {"minilm": "minilm-l6", "mpnet": "mpnet-base"}
ATTENTION = ("aten::bmm", "aten::_softmax", "aten::_softmax_backward_data")
COPIES = ("aten::copy_", "aten::_to_copy")


def op_kinds(prof, rank, steps):
    """Host self time of the ops per step, by kind: what the frozen base's matrix products
    cost against LoRA's (a product with a side of length `rank`), attention's batched products
    and softmax, copies (autocast's casts, contiguous copies) and every other op (element-wise
    work, norms, views, allocation)."""
    kinds = dict.fromkeys(["base matmul", "LoRA matmul", "attention", "copies", "other ops"], 0.0)
    for e in prof.key_averages(group_by_input_shape=True):
        if e.device_type != DeviceType.CPU or e.key.startswith("phase: "):
            continue
        if e.key in ("aten::mm", "aten::addmm"):
            lora = any(len(s) == 2 and rank in s for s in e.input_shapes if isinstance(s, list))
            kind = "LoRA matmul" if lora else "base matmul"
        elif e.key in ATTENTION or "scaled_dot_product" in e.key:
            kind = "attention"
        else:
            kind = "copies" if e.key in COPIES else "other ops"
        kinds[kind] += e.self_cpu_time_total
    return {k: round(v / steps / 1e3, 2) for k, v in kinds.items()}


def sync_callers(prof, steps, n=8):
    """Where the host-device syncs come from, per step: each sync's enclosing torch ops and
    phase spans, nearest first (on CPU, fused AdamW's kernel reads every trainable tensor's
    step count with `.item()`; on a GPU each such read would stall the kernel queue)."""
    chains = Counter()
    for e in prof.events():
        if e.name in SYNCS:
            chain, parent = [], e.cpu_parent
            while parent is not None and len(chain) < 4:
                chain.append(parent.name[:50])
                parent = parent.cpu_parent
            chains[" < ".join(chain) or "-"] += 1
    return {k: round(v / steps, 1) for k, v in chains.most_common(n)}


def top(events, attr, steps, n=12):
    """[name, calls per step, ms per step] of the n events costing most by `attr`."""
    ranked = sorted(events, key=lambda e: -getattr(e, attr))[:n]
    return [[e.key[:60], round(e.count / steps, 1), round(getattr(e, attr) / steps / 1e3, 2)]
            for e in ranked if getattr(e, attr) > 0]  # fmt: skip


def markdown(rows):
    header = [
        "device", "encoder", "batch", "overrides", "step ms", "profiled step ms", "host op ms",
        "host other ms", "device busy ms", "launches", "syncs", "cudaMalloc", "date",
    ]  # fmt: skip
    lines = [
        "# Where a training step's time goes",
        "",
        "Written by `python benchmarks/step_profile.py` (GPU: `--gpu --batches 32,1024`). "
        "Per step: the median wall time of the un-profiled steps before the profiler (a "
        "step's end waits for its kernels), the same under the profiler, the host's time in "
        "torch ops and in the phases outside them (Python, the Trainer, peft), the device's "
        "kernel time, kernel launches, host-device syncs and cudaMalloc calls.",
        "",
        *table(header, [[
            r["device"], r["encoder"], r["batch_size"], " ".join(r["overrides"]) or "-",
            r["median_step_ms"],
            r["profiled_step_ms"], r["host_op_ms_per_step"], r.get("host_other_ms_per_step", "-"),
            r["device_busy_ms_per_step"],
            r["launches_per_step"], r["syncs_per_step"], r["cuda_mallocs_per_step"], r["date"],
        ] for r in rows]),
    ]  # fmt: skip
    for r in rows:
        phases = ", ".join(f"{k} {v}" for k, v in r["phases_ms"].items())
        title = ", ".join([r["device"], r["encoder"], f"batch {r['batch_size']}", *r["overrides"]])
        lines += ["", f"## {title}", ""]
        if r.get("host"):
            host = ", ".join(f"{k} {v}" for k, v in r["host"].items())
            lines += [f"Host: {host}.", ""]
        lines += [f"Phases (host ms per step, spans include what they call): {phases}.", ""]
        if r.get("host_op_kinds_ms"):
            kinds = ", ".join(f"{k} {v}" for k, v in r["host_op_kinds_ms"].items())
            lines += [f"Host op time by kind (ms per step): {kinds}.", ""]
        if r.get("syncs_by_caller"):
            lines += ["Syncs per step, by what called them (nearest first):", ""]
            lines += table(["called from", "syncs/step"], list(r["syncs_by_caller"].items()))
            lines += [""]
        for kind in ("host", "device"):
            if r[f"top_{kind}_ops"]:
                lines += [f"Top {kind} ops (self time):", ""]
                lines += table(["op", "calls/step", "ms/step"], r[f"top_{kind}_ops"]) + [""]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gpu", action="store_true", help="RoBERTa-base (random) and MiniLM")
    parser.add_argument("--batches", default="32", help="batch sizes, comma-separated")
    parser.add_argument("--warmup", type=int, default=12, help="steps before the profiler")
    parser.add_argument("--steps", type=int, default=8, help="steps profiled")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="an override on configs/demo.toml (e.g. model.dropout=0); repeatable",
    )
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument(
        "--encoder",
        choices=sorted(LABELS),
        default="minilm",
        help="the encoder (mpnet: `bash benchmarks/fetch_mpnet.sh` first; linear head, r=auto)",
    )
    args = parser.parse_args()
    if args.gpu and not torch.cuda.is_available():
        sys.exit("--gpu: no CUDA device on this machine")
    runs = RUNS / "speed"
    runs.mkdir(parents=True, exist_ok=True)
    encoders = [(ENCODERS[args.encoder], LABELS[args.encoder])]
    if args.gpu:
        encoders.insert(0, (random_roberta(runs), "roberta-base (random weights)"))
    out = args.results / "step_profile.json"
    for encoder, label in encoders:
        for batch in map(int, args.batches.split(",")):
            row = profile_row(encoder, label, batch, args.warmup, args.steps, runs, args.set)
            print({k: row[k] for k in list(row)[:7]}, flush=True)
            add_rows(out, [row])


def add_rows(path, new):
    """`new` rows into the JSON at `path` (replacing the same device, encoder, batch and
    overrides), the Markdown beside it rewritten; gpu_session.py's merge adds GPU rows so."""
    same = lambda r: (r["device"], r["encoder"], r["batch_size"], tuple(r["overrides"]))  # noqa: E731
    keys = {same(r) for r in new}
    rows = [r for r in load_rows(path) if same(r) not in keys] + new
    write_json(path, rows)
    write_text(path.with_suffix(".md"), markdown(rows))


if __name__ == "__main__":
    main()
