"""What makes `make demo` fit 15 minutes on a 2-core CPU without bf16: each lever measured.

Speed probes through the real CLI (`newslora train configs/demo.toml ...`): a fixed number
of optimizer steps, no evaluation, one lever changed at a time; the figure is the Trainer's
train samples/s (start-up step included, so short probes are noisy: about +-6% here). The
accuracy side of the row-count lever comes from whole `make demo` runs (benchmarks/README.md).
Precision is forced (fp32 by default: the bar is a CPU without bf16 units; a bf16-capable CPU
reproduces it with train.precision=fp32). Rows land in results/demo_levers.json as they finish
and a rerun skips them; results/demo_levers.md is rewritten from the JSON.

    python benchmarks/demo_levers.py            # ~7 min on 2 cores
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
RUNS = REPO / "benchmarks" / "runs" / "demo_levers"
PROBE_STEPS = 30

# lever name -> overrides on top of configs/demo.toml
LEVERS = {
    "old-demo (dropout 0.1, 20k rows, eval every 125)": [
        "lora.dropout=0.1",
        "data.max_train_rows=21000",
        "train.eval_every=125",
    ],
    "shipped demo": [],
    "max_length 64": ["model.max_length=64"],
    "linear head": ["model.head=linear"],
    "batch 64": ["train.batch_size=64"],
    "adapters in layers 3-5 only": ["lora.layers=[3,4,5]"],
}


def newslora(*args):
    cmd = [sys.executable, "-m", "newslora", *map(str, args)]
    subprocess.run(cmd, check=True, cwd=REPO, env=os.environ | {"HF_HUB_OFFLINE": "1"})


def load_rows(path):
    return json.loads(path.read_text()) if path.is_file() else []


def save(rows, path):
    path.write_text(json.dumps(rows, indent=2) + "\n")
    (path.with_suffix(".md")).write_text(markdown(rows))


def probe(name, overrides, precision):
    run = RUNS / f"probe-{len(name)}-{abs(hash(name)) % 10**6}"
    newslora(
        "train",
        "configs/demo.toml",
        f"train.output_dir={run}",
        f"train.precision={precision}",
        f"train.max_steps={PROBE_STEPS}",
        "train.eval_every=100000",
        *overrides,
    )
    summary = json.loads((run / "train_summary.json").read_text())
    return {"train_samples_per_s": summary["train_samples_per_s"], "steps": summary["steps"]}


def markdown(rows):
    lines = [
        "| kind | lever | precision | train samples/s | x shipped | train rows | test acc % "
        "| train s | device |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    base = {
        r["precision"]: r["train_samples_per_s"]
        for r in rows
        if r["kind"] == "probe" and r["lever"] == "shipped demo"
    }
    for r in rows:
        ratio = r["train_samples_per_s"] / base[r["precision"]] if r["precision"] in base else None
        lines.append(
            f"| {r['kind']} | {r['lever']} | {r['precision']} | {r['train_samples_per_s']:.1f} "
            f"| {f'{ratio:.2f}' if ratio else ''} | {r.get('train_rows', '')} "
            f"| {r.get('test_accuracy', '')} | {r.get('train_s', '')} | {r['device']} |"
        )
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    args = parser.parse_args()
    from newslora.model import device_name

    path = RESULTS / "demo_levers.json"
    rows = load_rows(path)
    done = {(r["kind"], r["lever"], r["precision"]) for r in rows}
    for name, overrides in LEVERS.items():
        if ("probe", name, args.precision) in done:
            continue
        row = {"kind": "probe", "lever": name, "precision": args.precision, "overrides": overrides}
        row |= probe(name, overrides, args.precision) | {"device": device_name()}
        rows.append(row)
        save(rows, path)
        print(json.dumps(row))


if __name__ == "__main__":
    main()
