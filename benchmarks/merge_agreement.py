"""Merged vs unmerged LoRA: do the two inference paths give the same labels?

    python benchmarks/merge_agreement.py RUN [--rows N]

`newslora predict` folds LoRA into the base weights (`merge_and_unload`) before predicting;
this runs the run's model both ways on the official test split, in fp32 and in bf16 autocast,
and reports label agreement, accuracy and the largest logit difference. Writes
results/merge_agreement.json (one row per run, device and precision; a rerun replaces it) and
the Markdown table beside it.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from common import DATA, RESULTS, load_rows, table, write_text
from speed_machine import device_label

from newslora.config import AG_NEWS_LABELS
from newslora.data import load_examples
from newslora.files import write_json
from newslora.predict import load_run, predict_logits, run_config

OUT = RESULTS / "merge_agreement.json"


def logits(run, texts, merge, precision, cfg):
    _, model, tokenizer = load_run(run, merge=merge)
    start = time.perf_counter()
    z = predict_logits(
        model, tokenizer, texts, cfg.train.eval_batch_size, cfg.model.max_length, precision, False
    )
    return z, len(texts) / (time.perf_counter() - start)


def measure(run, rows, precision):
    cfg = run_config(run)  # settings only: each path loads its own model below
    test = load_examples(DATA / "agnews" / "test.csv", AG_NEWS_LABELS, need_labels=True)
    test = test.head(rows) if rows else test
    texts, labels = list(test["text"]), test["label"].to_numpy()
    merged, merged_rate = logits(run, texts, True, precision, cfg)
    unmerged, unmerged_rate = logits(run, texts, False, precision, cfg)
    a, b = merged.argmax(1), unmerged.argmax(1)
    return {
        "run": str(run),
        "device": device_label(gpu=torch.cuda.is_available()),
        "precision": precision,
        "rows": len(texts),
        "label_agreement": round(100 * float((a == b).mean()), 3),
        "rows_differing": int((a != b).sum()),
        "max_abs_logit_diff": float(np.abs(merged - unmerged).max()),
        "accuracy_merged": round(100 * float((a == labels).mean()), 2),
        "accuracy_unmerged": round(100 * float((b == labels).mean()), 2),
        "rows_per_s_merged": round(merged_rate, 1),
        "rows_per_s_unmerged": round(unmerged_rate, 1),
    }


def markdown(rows):
    header = [
        "run", "device", "precision", "rows", "label agreement %", "rows differing",
        "max |logit diff|", "accuracy merged %", "accuracy unmerged %", "rows/s merged",
        "rows/s unmerged",
    ]  # fmt: skip
    lines = [[Path(r["run"]).name, *[r[k] for k in list(r)[1:]]] for r in rows]
    for line in lines:
        line[6] = f"{line[6]:.2e}"
    intro = [
        "# Merged vs unmerged LoRA: label agreement",
        "",
        "Written by `python benchmarks/merge_agreement.py RUN`: the run's model predicts the",
        "official test split with LoRA folded into the base weights (what `newslora predict`",
        "does) and with the adapter kept apart, in fp32 and in bf16 autocast.",
        "",
    ]
    return "\n".join(intro + table(header, lines)) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--rows", type=int, default=0, help="first N test rows (0 = all 7,600)")
    parser.add_argument("--precision", default="fp32,bf16")
    parser.add_argument("--out", type=Path, default=OUT, help="rows are added to this JSON")
    args = parser.parse_args()
    rows = load_rows(args.out)
    for precision in args.precision.split(","):
        row = measure(args.run.resolve(), args.rows, precision)
        key = (row["run"], row["device"], row["precision"])
        rows = [r for r in rows if (r["run"], r["device"], r["precision"]) != key] + [row]
        write_json(args.out, rows)
        write_text(args.out.with_suffix(".md"), markdown(rows))
        print(row)


if __name__ == "__main__":
    main()
