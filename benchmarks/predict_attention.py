"""Inference speed by attention kernel: eager vs PyTorch SDPA, same run, same rows, one process.

    python benchmarks/predict_attention.py RUN [--rows 3000] [--repeats 2]

The run's model with LoRA merged (what `newslora predict` runs) predicts a seeded sample of
the official test split in fp32, once per kernel per repeat, alternating, so drift of the
machine falls on both. `model.attention = "auto"` keeps transformers' default (SDPA) for
inference unless this shows eager faster (it did not). Writes results/predict_attention.json
(one row per run, device and kernel; a rerun replaces them) and the Markdown table beside it.
"""

import argparse
import time
from dataclasses import replace
from pathlib import Path

from common import DATA, RESULTS, load_rows, table, write_text
from speed_machine import device_label

from newslora.config import AG_NEWS_LABELS
from newslora.data import load_examples
from newslora.files import write_json
from newslora.model import load_model
from newslora.predict import predict_logits, run_config

OUT = RESULTS / "predict_attention.json"
KERNELS = ("sdpa", "eager")


def rate(run, cfg, kernel, texts):
    model, tokenizer = load_model(replace(cfg, model=replace(cfg.model, attention=kernel)), run)
    model = model.merge_and_unload().eval()
    start = time.perf_counter()
    predict_logits(model, tokenizer, texts, cfg.train.eval_batch_size, cfg.model.max_length,
                   "fp32", False)  # fmt: skip
    return len(texts) / (time.perf_counter() - start)


def markdown(rows):
    header = ["run", "device", "kernel", "rows", "precision", "rows/s (each repeat)", "best"]
    lines = [
        [Path(r["run"]).name, r["device"], r["kernel"], f"{r['rows']:,}", r["precision"],
         ", ".join(f"{v:.1f}" for v in r["rows_per_s"]), r["best_rows_per_s"]]
        for r in rows
    ]  # fmt: skip
    intro = ["# Inference speed by attention kernel", "", __doc__.split("\n\n")[2].strip(), ""]
    return "\n".join(intro + table(header, lines)) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    run, cfg = args.run.resolve(), run_config(args.run)
    test = load_examples(DATA / "agnews" / "test.csv", AG_NEWS_LABELS, need_labels=True)
    texts = list(test["text"].sample(args.rows, random_state=0))
    rates = {k: [] for k in KERNELS}
    for _ in range(args.repeats):
        for kernel in KERNELS:
            rates[kernel].append(rate(run / "adapter", cfg, kernel, texts))
            print(kernel, f"{rates[kernel][-1]:.1f} rows/s", flush=True)
    device = device_label(gpu=False)
    rows = [r for r in load_rows(OUT) if (r["run"], r["device"]) != (str(run), device)]
    for kernel, values in rates.items():
        rows.append({
            "run": str(run), "device": device, "kernel": kernel, "rows": args.rows,
            "precision": "fp32", "rows_per_s": [round(v, 1) for v in values],
            "best_rows_per_s": round(max(values), 1),
        })  # fmt: skip
    write_json(OUT, rows)
    write_text(OUT.with_suffix(".md"), markdown(rows))


if __name__ == "__main__":
    main()
