"""Inference speed, one choice at a time: same run, same rows, one process, arms alternating.

    python benchmarks/predict_attention.py RUN [--rows 3000] [--repeats 2]
    python benchmarks/predict_attention.py RUN --compare weights --repeats 3

The run's model with LoRA merged (what `newslora predict` runs) predicts a seeded sample of
the official test split, once per arm per repeat, alternating, so drift of the machine falls
on both. `--compare kernel` (the default) sets eager against PyTorch SDPA attention in fp32:
`model.attention = "auto"` keeps transformers' default (SDPA) for inference unless this shows
eager faster (it did not). `--compare weights` runs the run's own precision with the merged
weights left fp32 (autocast casts them for every batch) against them stored as training
stored them (`predict.as_trained`, what `newslora predict` does). Each row also holds the
arm's accuracy on those rows and the share of its labels equal to the first arm's. Writes
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


def settings(cfg, arm):
    """(kernel, precision, weights) of an arm for this run."""
    kernel, precision, weights = arm
    return kernel or cfg.model.attention, precision or cfg.train.precision, weights


def predict(run, cfg, arm, texts):
    """(rows/s, labels): the merged model loaded and set up as the arm says, then timed."""
    kernel, precision, weights = settings(cfg, arm)
    model, tokenizer = load_model(replace(cfg, model=replace(cfg.model, attention=kernel)), run)
    model = model.merge_and_unload().eval()
    if weights == "as trained":
        model = as_trained(cfg, model)
    start = time.perf_counter()
    logits = predict_logits(model, tokenizer, texts, cfg.train.eval_batch_size,
                            cfg.model.max_length, precision, False)  # fmt: skip
    return len(texts) / (time.perf_counter() - start), logits.argmax(axis=1)


def markdown(rows):
    header = ["run", "device", "kernel", "rows", "precision", "weights", "rows/s (each repeat)",
              "best", "accuracy", "labels as the first arm's"]  # fmt: skip
    lines = [
        [Path(r["run"]).name, r["device"], r["kernel"], f"{r['rows']:,}", r["precision"],
         r.get("weights", "fp32"), ", ".join(f"{v:.1f}" for v in r["rows_per_s"]),
         r["best_rows_per_s"], r.get("accuracy", ""), r.get("same_labels_as_first_arm", "")]
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
    sample = test.sample(args.rows, random_state=0)
    texts, truth = sample["text"].tolist(), sample["label"].to_numpy()
    arms = ARMS[args.compare]
    rates, labels = {name: [] for name in arms}, {}
    for _ in range(args.repeats):
        for name, arm in arms.items():
            rate, labels[name] = predict(run / "adapter", cfg, arm, texts)
            rates[name].append(rate)
            print(name, f"{rate:.1f} rows/s", flush=True)
    device, first = device_label(gpu=False), labels[next(iter(arms))]
    key = (str(run), device, args.compare)  # a rerun replaces its own comparison's rows
    rows = [r for r in load_rows(OUT) if (r["run"], r["device"], r.get("compare", "kernel")) != key]
    for name, values in rates.items():
        kernel, precision, weights = settings(cfg, arms[name])
        rows.append({
            "run": str(run), "device": device, "compare": args.compare, "kernel": kernel,
            "rows": args.rows, "precision": precision, "weights": weights,
            "rows_per_s": [round(v, 1) for v in values], "best_rows_per_s": round(max(values), 1),
            "accuracy": round(float((labels[name] == truth).mean()), 4),
            "same_labels_as_first_arm": round(float((labels[name] == first).mean()), 4),
        })  # fmt: skip
    write_json(OUT, rows)
    write_text(OUT.with_suffix(".md"), markdown(rows))


if __name__ == "__main__":
    main()
