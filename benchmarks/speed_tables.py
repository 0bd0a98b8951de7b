"""speed.json and speed.md: the rows written, and read back as one Markdown section per
machine (tables, ratios against the goals, what the rows say, what was not measured)."""

from common import load_rows, write_text
from speed_report import GOALS, GPU_GOALS, LEVERS, QUOTA_ONLY, key

from newslora.files import write_json


def upsert(path, row):
    """Write `row` into the JSON at once (replacing a row with the same key) and the table."""
    rows = [r for r in load_rows(path) if key(r) != key(row)] + [row]
    save_rows(rows, path)
    return rows


def save_rows(rows, path):
    write_json(path, rows)
    write_text(path.with_suffix(".md"), markdown(rows))


def _fmt(value, digits=1, pct=False):
    if value is None:
        return ""
    if pct:
        return f"{100 * value:.1f}%"
    return f"{value:,.{digits}f}"


def _sorted(rows):
    return sorted(
        rows, key=lambda r: (r["encoder"], r["arm"], r["precision"], r["rows"], r["max_length"])
    )


def main_table(rows):
    lines = [
        "| arm | encoder | rows | max length | precision | train samples/s | real tok/s "
        "| padded tok/s | padded tok/sample | Trainer's own samples/s | predict rows/s "
        "| peak MB | CPU matmul util. | MFU | other load | measured (matmul GFLOP/s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in _sorted(rows):
        per_sample = r["train_padded_tokens_per_s"] / r["train_samples_per_s"]
        lines.append(
            f"| {r['arm']} | {r['encoder']} | {r['rows']:,} | {r['max_length']} | "
            f"{r['precision']} | {_fmt(r['train_samples_per_s'], 2)} | "
            f"{_fmt(r['train_tokens_per_s'], 0)} | {_fmt(r['train_padded_tokens_per_s'], 0)} | "
            f"{per_sample:.0f} | {_fmt(r.get('trainer_samples_per_s'), 2)} | "
            f"{_fmt(r['predict_rows_per_s'])} | {_fmt(r['peak_mem_mb'], 0)} | "
            f"{_fmt(r['cpu_matmul_utilisation'], pct=True)} | {_fmt(r['mfu'], pct=True)} | "
            f"{_fmt(_other_load(r), 2)} | {_when(r)} |"
        )
    return lines


def _when(row):
    """The day a row was measured and the matmul rate beside it: one device label can cover
    machines of one kind whose speed differs (388 and 707 GFLOP/s bf16 under one label)."""
    day = (row.get("measured_at") or "")[:10]
    rate = row.get("matmul_gflops")
    return f"{day} ({rate:.0f})" if rate else day


def _other_load(row):
    loads = [row.get("other_cores"), row.get("predict_other_cores")]
    return max((x for x in loads if x is not None), default=None)


def full_pool(rows, pool=87_862):
    """What an epoch over the whole train pool would take at each arm's best measured rate,
    for the arms that were not run on it (a whole-pool row sits in the table above)."""
    whole = {(r["arm"], r["encoder"], r["precision"]) for r in rows if r["rows"] >= pool}
    best = {}
    for r in rows:
        arm = (r["arm"], r["encoder"], r["precision"])
        if r["arm"] in ("seed000-pipeline", "newslora") and r["train_samples_per_s"]:
            if arm not in whole:
                best[arm] = max(best.get(arm, 0), r["train_samples_per_s"])
    if not best:
        return None
    parts = [
        f"{arm} {encoder} {precision}: {0.9 * pool / speed / 3600:.1f} h"
        for (arm, encoder, precision), speed in sorted(best.items())
    ]
    ran = ", ".join(" ".join(arm) for arm in sorted(whole))
    ran = f"measured for {ran} (rows above), not for the rest" if ran else "not run"
    return (
        f"* **Full pool** ({pool:,} rows, 10% held out): {ran} on this machine; one epoch at "
        "the rates above would take " + "; ".join(parts) + "."
    )


def gpu_note(rows):
    if any(r["mfu"] is not None for r in rows):
        return ""
    return (
        "* **GPU rows: not measured** (no GPU was lent to the sessions so far). On a GPU "
        "(DEVELOPERS.md, 'A GPU session'): `python benchmarks/speed.py --gpu --seed-steps 61 "
        "--only seed,newslora,batches,scaling --scale-rows 1000,10000,90000` runs both arms on "
        "RoBERTa-base built from `src/newslora/model_configs/roberta-base.json` with **random "
        "weights** and MiniLM's tokenizer (neither RoBERTa's weights nor its tokenizer are "
        "available offline: the speed is RoBERTa-base's, the token counts MiniLM's) and on "
        "MiniLM-L6; newslora in bf16 (also at batch 64, 256 and 1024 for the MFU goal), the "
        "seed in fp16 as it ran; `mfu` against 989 TFLOP/s (dense bf16 of an H100 SXM; an H200 "
        "has the same peak), peak memory the GPU's. That path has run on CPU only "
        "(`tests/test_speed_bench.py`, `benchmarks/gpu_session.py run speed --smoke`)."
    )


def ratios(rows):
    """newslora / seed000-pipeline on the same encoder, device and rows (newslora at max
    length 128), one line per newslora precision; with the CPU goals checked."""
    lines = []
    seeds = {
        (r["encoder"], r["device"], r["rows"]): r for r in rows if r["arm"] == "seed000-pipeline"
    }
    for r in _sorted(rows):
        seed = seeds.get((r["encoder"], r["device"], r["rows"]))
        if r["arm"] != "newslora" or r["max_length"] != 128 or seed is None:
            continue
        train = r["train_samples_per_s"] / seed["train_samples_per_s"]
        predict = (r["predict_rows_per_s"] or 0) / seed["predict_rows_per_s"]  # 0: not measured
        goal = ""
        if r["mfu"] is not None:  # a GPU: newslora bf16 vs the seed's fp16
            met = train >= GPU_GOALS["train"] and predict >= GPU_GOALS["predict"]
            goal = f" (GPU goal >= 4x / 10x: {'met' if met else 'NOT met'})"
        elif r["precision"] != "fp32":  # the goals are for bf16 vs the seed's fp32
            met = train >= GOALS["train"] and predict >= GOALS["predict"]
            verdict = "met" if met else "NOT met"
            goal = f" (goal >= {GOALS['train']:.0f}x / {GOALS['predict']:.0f}x: {verdict})"
        lines.append(
            f"* {r['encoder']}, {r['rows']:,} rows, newslora {r['precision']} vs seed "
            f"{seed['precision']}: training **{train:.1f}x**, prediction "
            f"{f'**{predict:.1f}x**' if predict else 'not measured (see the row)'}{goal}"
        )
        if seed.get("step_s"):  # identical batches: the fastest step is the least disturbed
            best = seed["batch_size"] / min(seed["step_s"])
            lines.append(
                f"  * against the seed's fastest timed step ({min(seed['step_s']):.1f} s, "
                f"{best:.2f} samples/s; its steps took "
                f"{', '.join(f'{x:.2f}' for x in seed['step_s'])} s for identical batches): "
                f"training **{r['train_samples_per_s'] / best:.1f}x**"
            )
        util = r["cpu_matmul_utilisation"]
        if util is not None and r["precision"] == auto_precision(r["device"]):
            met = util >= GOALS["cpu_matmul_utilisation"]
            lines.append(
                f"* newslora's CPU training at {100 * util:.1f}% of this machine's measured "
                f"{r['precision']} matmul rate ({r['matmul_gflops']} GFLOP/s; goal >= 40%: "
                f"{'met' if met else 'NOT met'})"
            )
    return lines


def mfu_goal(rows):
    """The GPU's best model FLOPs utilisation for RoBERTa-base-sized LoRA at batch >= 64."""
    fits = [
        r for r in rows
        if r["mfu"] is not None and r["arm"].startswith("newslora")
        and r["encoder"].startswith("roberta-base") and (r.get("batch_size") or 0) >= 64
    ]  # fmt: skip
    if not fits:
        return []
    best = max(fits, key=lambda r: r["mfu"])
    met = "met" if best["mfu"] >= GPU_GOALS["mfu"] else "NOT met"
    return [
        f"* RoBERTa-base LoRA training at batch {best['batch_size']}: MFU "
        f"**{100 * best['mfu']:.1f}%** of 989 TFLOP/s dense bf16 (goal >= 35% at batch >= 64: "
        f"{met}); by batch: " + ", ".join(f"{r['batch_size']}: {100 * r['mfu']:.1f}%" for r in fits)
    ]


def onnx_lines(rows):
    """The ONNX Runtime int8 prediction rows against the seed's and the torch path's (timed
    beside it in the same arm where the row has it, else the newslora row's)."""
    lines = []
    for r in (r for r in rows if r["arm"] == "newslora onnx int8"):
        same = [x for x in rows if (x["encoder"], x["rows"]) == (r["encoder"], r["rows"])]
        seed = next((x for x in same if x["arm"] == "seed000-pipeline"), None)
        torch_rows = [x for x in same if x["arm"] == "newslora" and x["max_length"] == 128]
        auto = auto_precision(r["device"])
        shipped = _pick(torch_rows, "newslora", auto, r["rows"], encoder=r["encoder"])
        torch_rate = r.get("torch_predict_rows_per_s") or (shipped or {}).get("predict_rows_per_s")
        versus = [
            f"**{r['predict_rows_per_s'] / rate:.1f}x** {name}"
            for rate, name in ((seed and seed["predict_rows_per_s"], "the seed's"),
                               (torch_rate, "the torch path's"))
            if rate
        ]  # fmt: skip
        lines.append(
            f"* {r['encoder']}, prediction through ONNX Runtime, int8 (`newslora export RUN "
            f"OUT --format onnx --quantize int8`, then `newslora predict OUT`): "
            f"{r['predict_rows_per_s']:,.1f} rows/s, {', '.join(versus)} "
            f"({auto_precision(r['device'])}); its labels agree with the torch "
            f"path's on {r['labels_agree_with_torch']}% of the {r['predict_rows']} rows "
            "(on the whole test split: results/export.md). An opt-in path: `newslora predict` "
            "on a run stays in torch."
        )
    return lines


def same_settings(row, base):
    """Whether a lever ran with the baseline's own settings on this machine (eager-attention
    where "auto" is eager already, collate-in-loop where there are no loader workers anyway):
    its ratio to the baseline is then run-to-run spread. Evaluation passes, and rows recorded
    before the settings included the encoder's dropout (2026-12-05), are not compared."""
    a, b = (row.get("lever") or {}), (base.get("lever") or {}) if base else {}
    trained = row.get("train_samples_per_s") is not None
    return trained and row is not base and "encoder_dropout" in a and a == b


def _lever_note(row, base):
    """The row's note, and the attention kernel its run used (the baseline's changed)."""
    attention = (row.get("lever") or {}).get("attention")
    parts = [
        row.get("note", ""),
        f"attention: {attention}" if attention else "",
        "the baseline's settings on this machine: spread" if same_settings(row, base) else "",
    ]
    return "; ".join(p for p in parts if p)


def _spread(lever, x):
    """A sentence on the levers that ran with the baseline's settings here: their ratios."""
    same = sorted(k for k, r in lever.items() if k in x and same_settings(r, lever["baseline"]))
    if not same:
        return ""
    low, high = min(x[k] for k in same), max(x[k] for k in same)
    margin = max(abs(x[k] - 1) for k in same)
    return (
        f" {', '.join(same)} ran with the baseline's own settings on this machine and came out "
        f"at {low:.2f}-{high:.2f}x: a lever within {margin:.2f} of 1.00x is spread, not a "
        "measured change."
    )


def lever_table(rows):
    levers = [r for r in rows if r["arm"].startswith("newslora lever")]
    if not levers:
        return []
    base = {(r["encoder"], r["device"]): r for r in levers if r["arm"].endswith(": baseline")}
    lines = [
        "| lever | encoder | train samples/s | x baseline | padded tok/s | CPU matmul util. "
        "| eval rows/s | note | measured (matmul GFLOP/s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(levers, key=lambda r: (r["encoder"], not r["arm"].endswith("baseline"))):
        b = base.get((r["encoder"], r["device"]))
        speed = r["train_samples_per_s"]
        x = speed / b["train_samples_per_s"] if b and speed and b["train_samples_per_s"] else None
        lines.append(
            f"| {r['arm'].split(': ', 1)[1]} | {r['encoder']} | {_fmt(speed, 2)} | "
            f"{_fmt(x, 2)} | {_fmt(r['train_padded_tokens_per_s'], 0)} | "
            f"{_fmt(r['cpu_matmul_utilisation'], pct=True)} | {_fmt(r['predict_rows_per_s'])} | "
            f"{_lever_note(r, b)} | {_when(r)} |"
        )
    return lines


def _pick(rows, arm, precision, n_rows, max_length=128, encoder="minilm-l6"):
    """The row of that arm, precision, size and encoder (MiniLM-L6: the demo's, the levers')."""
    want = (arm, precision, n_rows, max_length, encoder)
    keys = ("arm", "precision", "rows", "max_length", "encoder")
    return next((r for r in rows if tuple(r[k] for k in keys) == want), None)


def auto_precision(device):
    """What `train.precision = "auto"` runs on a benchmark device (its label says)."""
    return "fp32" if "no bf16 units" in device else "bf16"


def findings(rows):
    """What the measured rows of one device say about newslora's CPU training."""
    seeds = [r for r in rows if r["arm"] == "seed000-pipeline" and r["encoder"] == "minilm-l6"]
    n = seeds[0]["rows"] if seeds else 1000
    auto = auto_precision(rows[0]["device"]) if rows else "bf16"
    bf, fp = _pick(rows, "newslora", "bf16", n), _pick(rows, "newslora", "fp32", n)
    shipped = bf if auto == "bf16" else fp
    out = []
    if bf and fp and bf.get("matmul_gflops") and fp.get("matmul_gflops"):
        train = bf["train_samples_per_s"] / fp["train_samples_per_s"]
        matmul = bf["matmul_gflops"] / fp["matmul_gflops"]
        out.append(
            f"* **What holds newslora's CPU training back**: bf16 trains {train:.2f}x faster "
            f"than fp32 while this machine's bf16 matmul is {matmul:.2f}x faster than its fp32 "
            f"one ({100 * fp['cpu_matmul_utilisation']:.0f}% of the fp32 rate, "
            f"{100 * bf['cpu_matmul_utilisation']:.0f}% of the bf16 rate). The part of a step "
            "that bf16 does not speed up dominates: the rank-r LoRA matmuls, the element-wise "
            "work (LayerNorm, GELU, softmax, the casts autocast inserts around every linear "
            "layer) and the Trainer's per-step work; MiniLM's 384-wide matrices on "
            "~1,700-token batches are also far smaller than the 2048-square reference "
            "(the fp32-base lever below measures the frozen base left fp32 for autocast)."
        )
    elif fp and auto == "fp32" and fp.get("cpu_matmul_utilisation"):
        out.append(
            f"* **fp32-only CPU**: newslora trains at {100 * fp['cpu_matmul_utilisation']:.0f}% "
            f"of this machine's measured fp32 matmul rate ({fp['matmul_gflops']} GFLOP/s); "
            "bf16 would be emulated here and slower, so `auto` runs fp32."
        )
    lever = {r["arm"].split(": ", 1)[1]: r for r in rows if r["arm"].startswith("newslora lever")}
    base = lever.get("baseline")
    if base and base["train_samples_per_s"] and shipped:
        x = {k: r["train_samples_per_s"] / base["train_samples_per_s"] for k, r in lever.items()
             if r["train_samples_per_s"]}  # fmt: skip
        out.append(
            "* **Levers** (one run each, same rows and config): "
            + ", ".join(f"{k} {v:.2f}x" for k, v in x.items() if k != "baseline")
            + f" the in-process baseline ({base['train_samples_per_s']:.1f} samples/s; the CLI "
            f"run of the same config: {shipped['train_samples_per_s']:.1f}, measured "
            f"{_when(shipped)}). A lever that "
            "cannot matter (fused vs multi-tensor AdamW over a few hundred thousand LoRA "
            "parameters: milliseconds a step) measures this machine's run-to-run spread; "
            "`benchmarks/lever_ab.py A B` alternates two levers in one command "
            "(results/lever_ab.md)." + _spread(lever, x)
        )
    ev, big = lever.get("eval-pass"), _pick(rows, "newslora", auto, 10_000)
    if ev and ev.get("predict_rows_per_s") and big and shipped:
        pass_s = 1000 / ev["predict_rows_per_s"]
        epoch_s = 0.9 * big["rows"] / big["train_samples_per_s"]
        grouped = lever.get("eval-pass-grouped")
        versus = (
            f" (transformers' own evaluation sampler, which length-groups validation too: "
            f"{1000 / grouped['predict_rows_per_s']:.1f} s)"
            if grouped and grouped.get("predict_rows_per_s")
            else ""
        )
        out.append(
            f"* **Evaluation**: one Trainer pass over 1,000 validation rows took {pass_s:.1f} s "
            f"({ev['predict_rows_per_s']:.0f} rows/s, a fresh process){versus}, against "
            f"newslora's prediction path at {shipped['predict_rows_per_s']:.0f} rows/s; one "
            f"pass is {100 * pass_s / epoch_s:.0f}% of a {big['rows']:,}-row epoch "
            f"({epoch_s:.0f} s). The run's figures and temperature reuse the best "
            "checkpoint's evaluation: no second pass after training."
        )
    fallback = [r for r in rows if "failed" in r.get("predict_via", "")]
    if fallback:
        why = fallback[0]["predict_via"].split("failed in this tree: ", 1)[1]
        out.append(
            f"* **`newslora predict` failed** in the working tree measured ({why}); the "
            f"prediction figures of {len(fallback)} newslora row(s) are `newslora evaluate`'s "
            "own timing of the same prediction loop on the x10 input."
        )
    return out


def missing_levers(rows):
    measured = {r["arm"].split(": ", 1)[1] for r in rows if r["arm"].startswith("newslora lever")}
    same = {"fp32-base"} if rows and auto_precision(rows[0]["device"]) == "fp32" else set()
    same |= QUOTA_ONLY
    # a kernel some lever row already ran with (the baseline's: eager on CPU) is measured
    kernels = {(r.get("lever") or {}).get("attention") for r in rows}
    same |= {f"{k}-attention" for k in kernels if k}
    left = [lever for lever in LEVERS if lever not in measured | same]  # fp32-base: no-op here
    if not left:
        return ""
    return (
        f"* **Levers not measured**: {', '.join(left)}; `python benchmarks/speed.py --only "
        f"levers --levers {','.join(left)}` runs them (a lever still running after 240 s is "
        "recorded as not finished)."
    )


def markdown(rows):
    """speed.md: one section per machine (ratios are only taken within a machine)."""
    devices = sorted({r["device"] for r in rows})
    out = [
        "# Speed: seed 000's pipeline vs newslora",
        "",
        "Written by `python benchmarks/speed.py` from `speed.json` (each row's `command` "
        "reproduces it), one section per machine; ratios compare arms on the same machine only.",
        "",
    ]
    for device in devices:
        part = [r for r in rows if r["device"] == device]
        main = [
            r for r in part
            if not r["arm"].startswith("newslora lever") and r["train_samples_per_s"]
        ]  # fmt: skip
        out += [f"## {device}", "", *main_table(main), "", *ratios(main), *mfu_goal(main)]
        out += [*onnx_lines(part), ""]
        levers = lever_table(part)
        if levers:
            out += ["### Experiments on newslora's training (one change each)", "", *levers, ""]
        if findings(part):
            out += ["### What the rows say", "", *findings(part), ""]
        out += ["### Not measured on this machine", "", full_pool(main), missing_levers(part), ""]
    out += ["## GPU", "", gpu_note(rows) or "* See the GPU sections above.", ""]
    return "\n".join([line for line in out if line is not None] + [NOTES])


NOTES = """## How it is measured

* **Same rows, same encoder, same machine, one process per arm.** Training rows: a stratified
  subset of the AG News train pool (seed 42); both arms hold out 10% for validation.
  Prediction: the first 400 rows of the official test split.
* **train samples/s** is steady state: from the end of the first (warm-up) step to the end of
  the last. The seed arm runs 7 steps of batch 64 (1 warm-up + 6 timed); newslora runs one
  epoch over the same rows (batch 32, every step but the first timed), with its end-of-epoch
  evaluation and checkpoint outside the window. *Trainer's own samples/s* is
  `train_summary.json`'s figure for the same run: it includes the warm-up step, the
  evaluation and the checkpoint, i.e. what `configs/demo.toml` as shipped reports.
* **Tokens**: real = attention-mask tokens, padded = tokens the model actually ran. The seed
  arm counts each batch it trains on; for the newslora CLI the batch order is not observable,
  so its token counts are the mean over 10 draws of transformers' length-grouped sampler on
  the run's exact training rows (the in-process `baseline` lever counts its real batches).
* **Utilisation**: FLOPs = 4 x N x padded tokens (LoRA on a frozen base: no weight gradients;
  6N for full fine-tuning), N = parameters of the encoder layers (embeddings and pooler left
  out). On CPU it is divided by this machine's own dense rate, `torch.matmul` of 2048 x 2048
  in the arm's precision, measured in the same run (MFU stays empty on CPU). The seed's
  gradient checkpointing re-runs the forward pass (2N more per token), not counted as useful.
* **Prediction**: the seed's loop (tokenize with `padding="max_length"`, batch 8) timed over
  400 rows; newslora's `newslora predict` timed on the 400 rows and on the same rows x10:
  rows/s = 3,600 / (difference in wall time), so start-up and model loading cancel. Where
  `newslora predict` fails, the row falls back to `newslora evaluate`'s own timing of the same
  prediction loop (`predict_with_config`, tokenizing included) on the x10 input; each row's
  `predict_via` in speed.json says which was used, and why.
* **Peak MB**: peak RSS of the process that did the work (newslora: the `train` process).
* **other load**: CPU cores other processes kept busy while the arm ran (from /proc/stat;
  0 = the machine was ours). The benchmark runs under `flock /tmp/cpu.lock`, but not every
  process on a shared machine takes that lock.
* The seed's arm runs fp32 on CPU: its `fp16=True` is a GPU feature. Its other settings
  (gradient checkpointing, fused AdamW, 4 dataloader workers, padding) are kept.
"""
