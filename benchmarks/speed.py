"""Speed: seed 000's pipeline against newslora, side by side, same encoder, rows and machine.

    python benchmarks/speed.py                   # CPU: every row below (~20 min on 2 cores)
    python benchmarks/speed.py --only seed,newslora --precision fp32
    python benchmarks/speed.py --only seed,newslora --encoder roberta-random --precision auto
                                                 # the seed's architecture, random weights
    python benchmarks/speed.py --gpu --seed-steps 61 --scale-rows 1000,10000,90000
                                                 # on a GPU: RoBERTa-base (random weights), MiniLM

Arms, each in its own process (its peak RSS is the arm's memory):
  * seed000-pipeline: benchmarks/seed000_pipeline.py, the seed's notebook reproduced
    (transformers' Trainer as it used it), timed over --seed-steps steps of batch 64 after one
    warm-up step; prediction over the same PREDICT_ROWS test rows;
  * newslora: `newslora train configs/demo.toml ...` and `newslora predict` as shipped, in
    subprocesses, one epoch over the same rows. Step times come from the run's TensorBoard
    events (train.logging_steps=1); prediction rows/s is the difference between a 10x and a
    1x input, so process start-up and model loading cancel;
  * newslora onnx int8 (prediction only): the newslora arm's run through `newslora export
    --format onnx --quantize int8` and `newslora predict` on ONNX Runtime, timed the same way;
  * levers (experiments, src/ unchanged): benchmarks/speed_levers.py.
Rows land in results/speed.json as each finishes (a rerun skips them; --force redoes them)
and results/speed.md is rewritten from the JSON. speed_report.py holds the pure parts (token
windows, FLOPs, levers and goals), speed_tables.py the JSON and the tables, speed_machine.py what
touches the machine (processes, files, rates).
"""

import argparse
import json
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from newslora.files import write_json
from newslora.model import autocast_dtype, resolve_name

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from common import ENCODERS, load_rows  # noqa: E402
from speed_machine import (  # noqa: E402
    PREDICT_REPEAT,
    PREDICT_ROWS,
    budget_overrides,
    checked,
    device_label,
    encoder_params,
    host_facts,
    inputs,
    matmul_flops,
    measured,
    newslora_lengths,
    random_roberta,
    step_end_times,
)
from speed_report import (  # noqa: E402
    LEVERS,
    QUOTA_ONLY,
    flops_per_token,
    grouped_totals,
    measured_keys,
    totals,
    utilisation,
    window,
)
from speed_tables import upsert  # noqa: E402

MINILM = ENCODERS["minilm"]
ROBERTA = "roberta-random"  # --encoder: RoBERTa-base built from its config, random weights
H100_SXM_BF16 = 989e12  # dense bf16 peak of an H100 SXM, FLOP/s
WARMUP = 1  # steps left out of the timed window
# newslora's steps are timed by their TensorBoard loss events. Each logged loss is a device
# sync: harmless on CPU, but on a GPU a sync every step stops the CPU from queueing the next
# step's kernels while the GPU runs, so there the loss is logged every GPU_LOG_EVERY steps.
GPU_LOG_EVERY = 5
LEVER_TIMEOUT_S = 240  # torch.compile on 2 cores may not finish; that is a result too


@dataclass
class Ctx:
    encoder: str
    label: str
    gpu: bool
    results: Path
    runs: Path
    force: bool
    device: str = ""
    n_params: int = 0
    seed_steps: int = 7  # the seed arm: 1 warm-up step + 6 timed steps of batch 64
    flag: str = MINILM  # --encoder as given, for the rows' commands
    cgroup: Path | None = None  # lever runs go into this cgroup's task file (lever_ab.py)
    matmul: dict = field(default_factory=dict)


# --- rows ------------------------------------------------------------------------------------


def newslora_precision(precision):
    dtype = autocast_dtype(precision)
    return {torch.bfloat16: "bf16", torch.float16: "fp16", None: "fp32"}[dtype]


def make_row(ctx, arm, rows, max_length, precision, rates, predict, done, command, **extra):
    """One speed.json row; `rates` from window() (None: no training measured)."""
    rates = rates or dict.fromkeys(("samples_per_s", "tokens_per_s", "padded_tokens_per_s"))
    speed = rates["padded_tokens_per_s"]
    gpu_mb = extra.pop("peak_gpu_mb", None)  # on a GPU the memory that matters is the device's
    flops = None if speed is None else flops_per_token(ctx.n_params) * speed
    cpu_util = None
    if not ctx.gpu:
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        if precision not in ctx.matmul:
            ctx.matmul[precision] = matmul_flops(dtype)
        cpu_util = None if flops is None else round(flops / ctx.matmul[precision], 4)
    return {
        "arm": arm,
        "encoder": ctx.label,
        "device": ctx.device,
        "rows": rows,
        "max_length": max_length,
        "precision": precision,
        "train_samples_per_s": _round(rates["samples_per_s"], 2),
        "train_tokens_per_s": _round(rates["tokens_per_s"], 1),
        "train_padded_tokens_per_s": _round(speed, 1),
        "predict_rows_per_s": None if predict is None else round(predict, 1),
        "peak_mem_mb": round(gpu_mb if ctx.gpu and gpu_mb else done["peak_mb"]),
        "peak_mem_of": "gpu (max allocated)" if ctx.gpu and gpu_mb else "host (peak RSS)",
        "mfu": _round(flops and utilisation(flops, H100_SXM_BF16), 4) if ctx.gpu else None,
        "cpu_matmul_utilisation": cpu_util,
        "command": command,
        "steps_timed": rates.get("steps_timed"),
        "timed_s": _round(rates.get("seconds"), 2),
        "n_params": ctx.n_params,
        "flops_per_token": "4N (LoRA, frozen base), on padded tokens",
        "matmul_gflops": round(ctx.matmul[precision] / 1e9, 1) if not ctx.gpu else None,
        "other_cores": done["other_cores"],  # load from other processes during the arm
        "host": host_facts(),
        "measured_at": time.strftime("%Y-%m-%d %H:%M"),
        **extra,
    }


def _round(value, digits):
    return None if value is None else round(value, digits)


def repro(ctx, only, **flags):
    parts = ["python benchmarks/speed.py", f"--only {only}"]
    parts += [f"--{k.replace('_', '-')} {v}" for k, v in flags.items()]
    if ctx.gpu:
        parts.append("--gpu")
    if ctx.flag != MINILM and not ctx.gpu:
        parts.append(f"--encoder {ctx.flag}")
    return " ".join(parts + ["--force"])


# --- arms -------------------------------------------------------------------------------------


def seed_max_length(ctx):
    """The seed truncates at, and pads predictions to, the tokenizer's maximum length."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_name(ctx.encoder)).model_max_length


def seed_arm(ctx, rows):
    train, small, _ = inputs(ctx.runs, rows)
    work = ctx.runs / f"seed000-{ctx.label}-r{rows}"
    out, max_length = work / "result.json", seed_max_length(ctx)
    cmd = [sys.executable, "benchmarks/seed000_pipeline.py", "--model", resolve_name(ctx.encoder)]
    cmd += ["--train", train, "--predict", small, "--steps", ctx.seed_steps]
    cmd += ["--max-length", max_length, "--workdir", work, "--out", out]
    done = checked([str(c) for c in cmd], ctx.runs / "logs" / f"{work.name}.log")
    res = json.loads(out.read_text())
    steps = res["steps"]
    rates = window([s["end_s"] for s in steps], totals(steps[WARMUP:]), WARMUP)
    return make_row(
        ctx, "seed000-pipeline", rows, max_length, res["precision"], rates,
        res["predict_rows"] / res["predict_s"], done, repro(ctx, "seed", rows=rows),
        batch_size=64, warmup_steps=WARMUP, train_rows=res["train_rows"],
        core_share=core_share(steps),
        step_s=[round(b["end_s"] - a["end_s"], 2) for a, b in zip(steps, steps[1:], strict=False)],
        predict_rows=res["predict_rows"], lora_weights_changed=res["lora_weights_changed"],
        peak_gpu_mb=res.get("peak_gpu_mb"),
        note="seed's fp16 is GPU-only: fp32 on CPU" if not ctx.gpu else "",
    )  # fmt: skip


def core_share(steps):
    """Share of the process's threads' time it got on the cores during the timed window."""
    if "cpu_s" not in steps[0]:
        return None
    timed = steps[-1]["end_s"] - steps[WARMUP - 1]["end_s"]
    cpu = steps[-1]["cpu_s"] - steps[WARMUP - 1]["cpu_s"]
    return round(cpu / (timed * torch.get_num_threads()), 2)


def log_every(ctx):
    return GPU_LOG_EVERY if ctx.gpu else 1


def newslora_overrides(ctx, train, rows, max_length, precision, run):
    return [
        f"model.name={ctx.encoder}",
        f"model.max_length={max_length}",
        f"data.train={train}",
        "data.max_train_rows=0",
        f"data.val_rows={rows // 10}",
        f"train.precision={precision}",
        f"train.output_dir={run}",
        f"train.logging_steps={log_every(ctx)}",  # TensorBoard events, hence timestamps
        *budget_overrides(ctx.encoder),
    ]


def newslora_training(ctx, run, overrides):
    """`newslora train` once, measured; kept in the run folder (speed_train.json), so a row
    whose prediction failed resumes from there unless --force."""
    record = run / "speed_train.json"
    if record.is_file() and not ctx.force:
        return json.loads(record.read_text())
    cmd = [sys.executable, "-m", "newslora", "train", "configs/demo.toml", *map(str, overrides)]
    done = checked(cmd, ctx.runs / "logs" / f"{run.name}.train.log")
    summary = json.loads((run / "train_summary.json").read_text())
    lengths, batch_size = newslora_lengths(overrides)
    if len(lengths) != summary["train_rows"]:
        raise RuntimeError(f"{run}: {summary['train_rows']} rows trained, {len(lengths)} rebuilt")
    every = log_every(ctx)  # ends[i]: the end of step every * (i + 1); a tail is not timed
    ends = step_end_times(run)
    batches = grouped_totals(lengths, batch_size, skip=WARMUP * every, stop=len(ends) * every)
    rates = window(ends, batches, WARMUP)
    rates["steps_timed"] *= every
    result = {"done": done, "rates": rates, "summary": summary, "batch_size": batch_size}
    write_json(record, result | {"command": shlex.join(cmd[1:])})
    return result | {"command": shlex.join(cmd[1:])}


def newslora_predict(ctx, run, small, big, out_dir=None):
    """Prediction rows/s of the run (or export folder), `newslora predict` timed on the 1x and
    10x inputs: the difference leaves out start-up and model loading. On a GPU, and where
    `predict` fails, `newslora evaluate`'s own timing instead (evaluated_rate): on a GPU
    4,000 rows take less than the start-up's noise (the difference came out negative on an
    H200). The label files land in `out_dir` (the run's folder unless given)."""
    cli, cmds, runs, out_dir = [sys.executable, "-m", "newslora"], [], [], out_dir or run
    log = ctx.runs / "logs" / run.name
    if ctx.gpu:
        return evaluated_rate(cli, run, big, log, "")
    try:
        for texts in (small, big):
            out = str(out_dir / f"{texts.stem}.csv")
            cmds.append([*cli, "predict", str(run), str(texts), out])
            runs.append(checked(cmds[-1], log.with_suffix(f".{texts.stem}.log")))
    except RuntimeError as e:
        why = f"; `newslora predict` failed in this tree: {str(e).strip().splitlines()[-1]}"
        return evaluated_rate(cli, run, big, log, why)
    rows = PREDICT_ROWS * (PREDICT_REPEAT - 1)
    how = f"newslora predict: {rows:,} rows / (wall of the 10x input - wall of the 1x input)"
    return predict_result(rows / (runs[1]["wall_s"] - runs[0]["wall_s"]), how, cmds, runs)


def evaluated_rate(cli, run, big, log, note):
    """`newslora evaluate`'s own timing of its prediction loop (the same as predict's)
    on the 10x input, tokenizing included; no label file is written."""
    out = run / f"metrics_{big.stem}.json"
    cmds = [[*cli, "evaluate", str(run), "--data", str(big), "--out", str(out)]]
    runs = [checked(cmds[0], log.with_suffix(".evaluate.log"))]
    metrics = json.loads(out.read_text())
    how = (
        f"newslora evaluate's own timing of its prediction loop ({metrics['rows']:,} rows, "
        f"tokenizing included){note}"
    )
    return predict_result(metrics["samples_per_s"], how, cmds, runs)


def predict_result(rate, how, cmds, runs):
    return {
        "rate": rate,
        "predict_via": how,
        "cmds": cmds,
        "predict_command_s": [round(r["wall_s"], 1) for r in runs],
        "predict_other_cores": max(r["other_cores"] for r in runs),
        "predict_peak_mb": max(r["peak_mb"] for r in runs),
    }


def newslora_arm(ctx, rows, max_length, precision, batch=None):
    """`batch`: the shipped config's batch size unless given (then a row of its own, `newslora
    batch N`: on a GPU, utilisation grows with the tokens per step)."""
    train, small, big = inputs(ctx.runs, rows)
    batch_tag = f"-b{batch}" if batch else ""
    run = ctx.runs / f"newslora-{ctx.label}-r{rows}-L{max_length}-{precision}{batch_tag}"
    overrides = newslora_overrides(ctx, train, rows, max_length, precision, run)
    if batch:
        overrides.append(f"train.batch_size={batch}")
        arm, only = f"newslora batch {batch}", "batches"
        flags = {"batch_sizes": batch, "batch_rows": rows}
    else:
        arm, only, flags = "newslora", "newslora" if max_length == 128 else "scaling", {}
    trained = newslora_training(ctx, run, overrides)
    summary = trained["summary"]
    predict = newslora_predict(ctx, run, small, big)
    cli = [trained["command"], *(shlex.join(c[1:]) for c in predict.pop("cmds"))]
    return make_row(
        ctx, arm, rows, max_length, newslora_precision(precision), trained["rates"],
        predict.pop("rate"), trained["done"],
        repro(ctx, only, rows=rows, max_lengths=max_length, precision=precision, **flags),
        batch_size=trained["batch_size"], warmup_steps=WARMUP, train_rows=summary["train_rows"],
        steps=summary["steps"], trainer_samples_per_s=summary["train_samples_per_s"],
        train_wall_s=summary["wall_s"], predict_rows=PREDICT_ROWS, **predict,
        peak_gpu_mb=summary.get("peak_gpu_mb"),
        cli=[c.replace(str(REPO) + "/", "") for c in cli],
    )  # fmt: skip


def onnx_arm(ctx, rows, precision):
    """Prediction only: the newslora arm's run (trained here if it is not yet), exported with
    `newslora export --format onnx --quantize int8` and predicted by `newslora predict` on
    ONNX Runtime; the torch path's prediction is timed again beside it, and its labels are
    compared with ONNX Runtime's on the same rows."""
    train, small, big = inputs(ctx.runs, rows)
    run = ctx.runs / f"newslora-{ctx.label}-r{rows}-L128-{precision}"
    trained = newslora_training(ctx, run, newslora_overrides(ctx, train, rows, 128, precision, run))
    export = run.with_name(run.name + "-onnx-int8")
    if not (export / "newslora_export.json").is_file() or ctx.force:
        shutil.rmtree(export, ignore_errors=True)
        cmd = [sys.executable, "-m", "newslora", "export", str(run), str(export)]
        checked([*cmd, "--format", "onnx", "--quantize", "int8"], ctx.runs / "logs" / export.name)
    labels = export.with_name(export.name + "-labels")
    labels.mkdir(exist_ok=True)
    predict = newslora_predict(ctx, export, small, big, out_dir=labels)
    torch_rate = newslora_predict(ctx, run, small, big)["rate"]  # side by side, same rows
    agree = label_agreement(run / f"{big.stem}.csv", labels / f"{big.stem}.csv")
    done = {
        "peak_mb": predict.pop("predict_peak_mb"),
        "other_cores": predict["predict_other_cores"],
    }
    cli = [trained["command"], *(shlex.join(c[1:]) for c in predict.pop("cmds"))]
    return make_row(
        ctx, "newslora onnx int8", rows, 128, "int8", None, predict.pop("rate"), done,
        repro(ctx, "onnx", rows=rows), predict_rows=PREDICT_ROWS, labels_agree_with_torch=agree,
        torch_predict_rows_per_s=round(torch_rate, 1),
        cli=[c.replace(str(REPO) + "/", "") for c in cli], **predict,
    )  # fmt: skip


def label_agreement(a, b):
    """% of rows where two `ID,Label` files agree."""
    left, right = (pd.read_csv(p)["Label"] for p in (a, b))
    return round(100 * float((left == right).mean()), 2)


def lever_arm(ctx, lever, rows, precision):
    train, _, _ = inputs(ctx.runs, rows)
    run = ctx.runs / f"lever-{ctx.label}-{lever}"
    out = run.with_suffix(".json")
    overrides = newslora_overrides(ctx, train, rows, 128, precision, run)
    cmd = [sys.executable, "benchmarks/speed_levers.py", lever, "--out", str(out)]
    log = ctx.runs / "logs" / f"{run.name}.log"
    out.unlink(missing_ok=True)
    done = measured([*cmd, *map(str, overrides)], log, LEVER_TIMEOUT_S, ctx.cgroup)
    rc, wall = done["rc"], done["wall_s"]
    if rc != 0 and wall < LEVER_TIMEOUT_S:  # a failure, not a lever too slow to finish
        raise RuntimeError(f"exit {rc}: {lever}; see {log}")
    res = json.loads(out.read_text()) if rc == 0 else {}
    steps, extra, rates, predict = res.get("steps"), {}, None, None
    if steps:
        ends = [s["end_s"] for s in steps]
        rates = window(ends, totals(steps[WARMUP:]), WARMUP)
        step_s = sorted(b - a for a, b in zip(ends, ends[1:], strict=False))
        extra = {"core_share": core_share(steps), "median_step_s": step_s[len(step_s) // 2]}
        extra["first_step_s"] = round(ends[0], 1)  # compile time shows here
    if "eval_s" in res:
        predict = res["eval_rows"] / res["eval_s"]
    note = res.get("note", "") if rc == 0 else f"not measured: stopped at {wall:.0f} s"
    return make_row(
        ctx, f"newslora lever: {lever}", rows, 128, newslora_precision(precision), rates,
        predict, done, repro(ctx, "levers", rows=rows, levers=lever), note=note,
        lever=res.get("lever"), **extra,
    )  # fmt: skip


# --- plan -------------------------------------------------------------------------------------


def plan(ctx, args):
    """(arm, rows, max_length, precision label, run) for every row asked for, deduplicated."""
    items, base, auto = [], args.rows, args.precision[0]
    if "seed" in args.only:
        precision = "fp16" if ctx.gpu else "fp32"
        items.append(("seed000-pipeline", base, None, precision, lambda: seed_arm(ctx, base)))

    def newslora_item(rows, length, precision):
        run = lambda: newslora_arm(ctx, rows, length, precision)  # noqa: E731
        return ("newslora", rows, length, newslora_precision(precision), run)

    if "newslora" in args.only:
        items += [newslora_item(base, 128, p) for p in args.precision]
    if "levers" in args.only:  # before scaling: the side-by-side config, cheap
        for lever in args.levers:
            # the eval passes: 1,000 validation rows, as the demo
            rows = 10_000 if lever.startswith("eval-pass") else base
            run = (lambda name, r: lambda: lever_arm(ctx, name, r, auto))(lever, rows)
            items.append((f"newslora lever: {lever}", rows, 128, newslora_precision(auto), run))
    if "batches" in args.only:  # the MFU is for batch >= 64
        for batch in args.batch_sizes:
            rows = args.batch_rows
            run = (lambda r, b: lambda: newslora_arm(ctx, r, 128, auto, b))(rows, batch)
            items.append((f"newslora batch {batch}", rows, 128, newslora_precision(auto), run))
    if "onnx" in args.only and not ctx.gpu:  # prediction through ONNX Runtime, int8
        run = lambda: onnx_arm(ctx, base, auto)  # noqa: E731
        items.append(("newslora onnx int8", base, 128, "int8", run))
    if "scaling" in args.only:
        items += [newslora_item(base, length, auto) for length in args.max_lengths]
        items += [newslora_item(rows, 128, auto) for rows in args.scale_rows]
    seen, unique = set(), []
    for item in items:
        if item[:4] not in seen:
            seen.add(item[:4])
            unique.append(item)
    return unique


def pending(ctx, args, done_rows):
    """The planned rows not measured yet (all of them with --force)."""
    done = measured_keys(done_rows)
    for arm, rows, length, precision, run in plan(ctx, args):
        length = seed_max_length(ctx) if length is None else length
        if (arm, ctx.label, ctx.device, rows, length, precision) in done and not args.force:
            print(f"skip (measured): {arm} {ctx.label} rows={rows} L={length} {precision}")
            continue
        yield arm, rows, length, precision, run


def encoders(args, runs):
    if args.gpu or args.encoder == ROBERTA:
        roberta = (random_roberta(runs), "roberta-base (random weights)")
        return [roberta, (MINILM, "minilm-l6")] if args.gpu else [roberta]
    return [(args.encoder, "minilm-l6" if args.encoder == MINILM else Path(args.encoder).name)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    csv = lambda kind: lambda text: [kind(x) for x in text.split(",") if x]  # noqa: E731
    parser.add_argument(
        "--only", type=csv(str), default=["seed", "newslora", "onnx", "scaling", "levers"]
    )
    parser.add_argument("--rows", type=int, default=1000, help="rows for the side-by-side arms")
    parser.add_argument("--scale-rows", type=csv(int), default=[1000, 10_000])
    parser.add_argument("--max-lengths", type=csv(int), default=[64, 128, 256])
    parser.add_argument("--precision", type=csv(str), default=["auto", "fp32"])
    parser.add_argument(
        "--levers", type=csv(str), default=[x for x in LEVERS if x not in QUOTA_ONLY]
    )
    parser.add_argument(
        "--batch-sizes",
        type=csv(int),
        default=[64, 256, 1024],
        help="--only batches: newslora at these batch sizes, on --batch-rows rows",
    )
    parser.add_argument("--batch-rows", type=int, default=20_000)
    parser.add_argument("--seed-steps", type=int, default=7, help="seed arm: steps, 1 warm-up")
    parser.add_argument(
        "--encoder",
        default=MINILM,
        help=f"model.name for CPU rows, or {ROBERTA}: the seed's RoBERTa-base architecture, "
        "random weights (what --gpu runs first)",
    )
    parser.add_argument("--gpu", action="store_true", help="GPU rows: RoBERTa-base + MiniLM")
    parser.add_argument("--force", action="store_true", help="redo rows already measured")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--runs", type=Path, default=REPO / "benchmarks" / "runs" / "speed")
    args = parser.parse_args()
    if args.gpu and not torch.cuda.is_available():
        sys.exit("--gpu: no CUDA device on this machine")
    args.runs.mkdir(parents=True, exist_ok=True)
    out, failed = args.results / "speed.json", []
    for encoder, label in encoders(args, args.runs.resolve()):
        ctx = Ctx(encoder, label, args.gpu, args.results, args.runs.resolve(), args.force)
        ctx.seed_steps, ctx.flag = args.seed_steps, args.encoder
        ctx.device, ctx.n_params = device_label(args.gpu), encoder_params(resolve_name(encoder))
        for arm, rows, length, precision, run in pending(ctx, args, load_rows(out)):
            print(f"measuring: {arm} {label} rows={rows} L={length} {precision}", flush=True)
            try:
                row = run()
            except RuntimeError as e:  # one arm failing does not stop the others
                failed.append(f"{arm} rows={rows} L={length} {precision}: {e}")
                print(f"FAILED: {failed[-1]}", flush=True)
                continue
            upsert(out, row)
            print(json.dumps({k: row[k] for k in list(row)[:13]}), flush=True)
    if failed:
        sys.exit(f"{len(failed)} row(s) failed:\n" + "\n".join(failed))


if __name__ == "__main__":
    main()
