"""Inference speed, one choice at a time: same run, same rows, one process, arms alternating.

    python benchmarks/predict_attention.py RUN [--rows 3000] [--repeats 2]
    python benchmarks/predict_attention.py RUN --compare weights --repeats 3

The run's model with LoRA merged (what `newslora predict` runs) predicts a seeded sample of
the official test split, once per arm per repeat, alternating, so drift of the machine falls
on both. `--compare kernel` (the default) sets eager against PyTorch SDPA attention in fp32:
`model.attention = "auto"` keeps transformers' default (SDPA) for inference unless this shows
eager faster (it did not). `--compare weights` runs the run's own precision with the merged
weights left fp32 (autocast casts them for every batch) against them stored as training
stored them (`predict.as_trained`, what `newslora predict` does). Writes
results/predict_attention.json (one row per run, device and arm; a rerun replaces the rows of
its comparison) and the Markdown table beside it.
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
from newslora.predict import as_trained, predict_logits, run_config

OUT = RESULTS / "predict_attention.json"
# arm -> (attention kernel, precision, weights); None = the run's own setting
ARMS = {
    "kernel": {"sdpa": ("sdpa", "fp32", "fp32"), "eager": ("eager", "fp32", "fp32")},
    "weights": {"fp32": (None, None, "fp32"), "as trained": (None, None, "as trained")},
}


def rate(run, cfg, arm, texts):
    kernel, precision, weights = arm
    kernel, precision = kernel or cfg.model.attention, precision or cfg.train.precision
    model, tokenizer = load_model(replace(cfg, model=replace(cfg.model, attention=kernel)), run)
    model = model.merge_and_unload().eval()
    if weights == "as trained":
        model = as_trained(cfg, model)
    start = time.perf_counter()
    predict_logits(model, tokenizer, texts, cfg.train.eval_batch_size, cfg.model.max_length,
                   precision, False)  # fmt: skip
    return len(texts) / (time.perf_counter() - start), kernel, precision


def markdown(rows):
    header = ["run", "device", "kernel", "rows", "precision", "weights", "rows/s (each repeat)",
              "best"]  # fmt: skip
    lines = [
        [Path(r["run"]).name, r["device"], r["kernel"], f"{r['rows']:,}", r["precision"],
         r.get("weights", "fp32"), ", ".join(f"{v:.1f}" for v in r["rows_per_s"]),
         r["best_rows_per_s"]]
        for r in rows
    ]  # fmt: skip
    intro = ["# Inference speed by attention kernel and by stored weights", ""]
    return "\n".join(intro + [__doc__.split("\n\n")[2].strip(), ""] + table(header, lines)) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--compare", choices=sorted(ARMS), default="kernel")
    args = parser.parse_args()
    run, cfg = args.run.resolve(), run_config(args.run)
    test = load_examples(DATA / "agnews" / "test.csv", AG_NEWS_LABELS, need_labels=True)
    texts = list(test["text"].sample(args.rows, random_state=0))
    arms, rates, seen = ARMS[args.compare], {}, {}
    for _ in range(args.repeats):
        for name, arm in arms.items():
            value, *seen[name] = rate(run / "adapter", cfg, arm, texts)
            rates.setdefault(name, []).append(value)
            print(name, f"{value:.1f} rows/s", flush=True)
    device = device_label(gpu=False)
    key = (str(run), device, args.compare)  # a rerun replaces its own comparison's rows
    rows = [r for r in load_rows(OUT) if (r["run"], r["device"], r.get("compare", "kernel")) != key]
    for name, values in rates.items():
        kernel, precision = seen[name]
        rows.append({
            "run": str(run), "device": device, "compare": args.compare, "kernel": kernel,
            "rows": args.rows, "precision": precision, "weights": arms[name][2],
            "rows_per_s": [round(v, 1) for v in values], "best_rows_per_s": round(max(values), 1),
        })  # fmt: skip
    write_json(OUT, rows)
    write_text(OUT.with_suffix(".md"), markdown(rows))


if __name__ == "__main__":
    main()
