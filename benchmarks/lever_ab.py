"""Interleaved A/B of two training-speed levers: A, B, A, B, ... in one command on one machine.

    python benchmarks/lever_ab.py fp32-base baseline --repeats 5     # ~10 min on 2 CPU cores
    python benchmarks/lever_ab.py baseline host-threads --cpu-quota 1 --rows 10000 --repeats 3
                                  # every run inside a cgroup allowed 1 CPU (root only)
    python benchmarks/lever_ab.py baseline system-malloc --rows 10000 --precision fp32
                                  # both levers with train.precision=fp32 (an fp32-only CPU)
    python benchmarks/lever_ab.py fp32-base baseline --rows 2000 --repeats 3 \
        --encoder ~/.cache/newslora/all-mpnet-base-v2      # after benchmarks/fetch_mpnet.sh

speed.py measures each lever once, one after the other, so a machine that drifts between two
runs (these 2-core machines do, by 15-20% within minutes) decides the comparison. Here the
runs alternate, each pair is compared on its own, and the median of the pair ratios is the
figure; every run is kept. Each run is one `benchmarks/speed_levers.py LEVER` process on
speed.py's side-by-side rows (configs/demo.toml, --rows pool rows, one epoch), timed by
speed.py's own `lever_arm`. Results: results/lever_ab.json (appended) and lever_ab.md.
`--cpu-quota C` runs every run in a new cgroup whose CPU quota is C CPUs (a container's
`--cpus C`): the runs then show what the quota does to each lever's threads.
"""

import argparse
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import speed  # noqa: E402
from common import load_rows, write_text  # noqa: E402
from speed_machine import (  # noqa: E402
    cpu_quota_cgroup,
    device_label,
    encoder_params,
    matmul_flops,
)

from newslora.files import write_json  # noqa: E402
from newslora.model import resolve_name  # noqa: E402


def compare(ctx, a, b, rows, repeats, precision):
    """Every run's samples/s, A and B alternating, and the ratio A/B of each pair."""
    rates = {a: [], b: []}
    for i in range(repeats):
        for lever in (a, b) if i % 2 == 0 else (b, a):  # neither always goes first
            row = speed.lever_arm(ctx, lever, rows, precision)
            if row["train_samples_per_s"] is None:  # e.g. torch-compile past its time limit
                sys.exit(f"{lever}: {row['note']}; nothing written")
            rates[lever].append(row["train_samples_per_s"])
            print(f"run {i + 1}/{repeats} {lever}: {rates[lever][-1]} samples/s", flush=True)
    ratios = [x / y for x, y in zip(rates[a], rates[b], strict=True)]
    return rates, ratios


def table(results):
    lines = [
        "# Interleaved lever A/B (`python benchmarks/lever_ab.py A B --repeats N`)",
        "",
        "Train samples/s of one epoch each, A and B alternating in one command (pair i runs A",
        "first when i is odd, B first when even); ratio = A / B within a pair. The matmul rates",
        "(2048x2048 torch.matmul) were measured right after the runs.",
        "",
        "| measured | device | matmul GFLOP/s (bf16, fp32) | encoder | rows | precision | A | B "
        "| A samples/s | B samples/s | pair ratios A/B | median ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        a, b = r["a"], r["b"]
        lines.append(
            f"| {r['measured_at']} | {r['device']} | {r['matmul_gflops']['bf16']}, "
            f"{r['matmul_gflops']['fp32']} | {r.get('encoder', 'minilm-l6')} | {r['rows']:,} "
            f"| {r.get('precision', 'auto')} "
            f"| {a} | {b} "
            f"| {', '.join(map(str, r['samples_per_s'][a]))} "
            f"| {', '.join(map(str, r['samples_per_s'][b]))} "
            f"| {', '.join(f'{x:.2f}' for x in r['ratios'])} | **{r['median_ratio']:.2f}x** |"
        )
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    training = [x for x in speed.LEVERS if not x.startswith("eval-pass")]  # those time no steps
    parser.add_argument("a", choices=training)
    parser.add_argument("b", choices=training)
    parser.add_argument("--repeats", type=int, default=5, help="runs of each lever")
    parser.add_argument("--rows", type=int, default=1000, help="pool rows (10%% validate)")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--runs", type=Path, default=REPO / "benchmarks" / "runs" / "lever_ab")
    parser.add_argument("--cpu-quota", type=float, help="run in a cgroup allowed this many CPUs")
    parser.add_argument(
        "--precision", choices=["auto", "fp32"], default="auto",
        help="train.precision of both levers: auto (bf16 where the CPU has it) or fp32",
    )  # fmt: skip
    parser.add_argument(
        "--encoder", default=speed.MINILM,
        help="model.name; other than MiniLM: the linear head and the largest rank that fits",
    )  # fmt: skip
    args = parser.parse_args()
    if args.a == args.b:
        parser.error("A and B must be two different levers")
    args.runs.mkdir(parents=True, exist_ok=True)
    (args.runs / "logs").mkdir(exist_ok=True)
    label = "minilm-l6" if args.encoder == speed.MINILM else Path(args.encoder).name
    ctx = speed.Ctx(args.encoder, label, False, args.results, args.runs.resolve(), True)
    ctx.device, ctx.n_params = device_label(False), encoder_params(resolve_name(args.encoder))
    if args.cpu_quota:
        ctx.device += f", in a cgroup with a CPU quota of {args.cpu_quota:g}"
    with cpu_quota_cgroup(args.cpu_quota) if args.cpu_quota else nullcontext() as ctx.cgroup:
        rates, ratios = compare(ctx, args.a, args.b, args.rows, args.repeats, args.precision)
    result = {
        "a": args.a,
        "b": args.b,
        "encoder": label,
        "rows": args.rows,
        "repeats": args.repeats,
        "precision": args.precision,
        "device": ctx.device,
        "matmul_gflops": {  # after the runs: the machine as it was at the end
            "bf16": round(matmul_flops(torch.bfloat16) / 1e9, 1),
            "fp32": round(matmul_flops(torch.float32) / 1e9, 1),
        },
        "samples_per_s": rates,
        "ratios": [round(x, 3) for x in ratios],
        "median_ratio": round(statistics.median(ratios), 3),
        "measured_at": time.strftime("%Y-%m-%d %H:%M"),
        "command": " ".join(["python", "benchmarks/lever_ab.py", *sys.argv[1:]]),
    }
    out = args.results / "lever_ab.json"
    results = [*load_rows(out), result]
    write_json(out, results)
    write_text(args.results / "lever_ab.md", table(results))
    print(f"{args.a} / {args.b}: median {result['median_ratio']:.2f}x over {args.repeats} pairs")


if __name__ == "__main__":
    main()
