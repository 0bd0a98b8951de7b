"""Self-training at full scale on the competition's other half, without touching test text.

    python benchmarks/pseudo_competition.py --run benchmarks/runs/minilm-newslora-0-e3-ae4844-s1
    python benchmarks/accuracy.py --encoders minilm --recipes newslora --rows 0 --val-rows 2000 \
        --seeds 1 --epochs 3 --no-tfidf --set 'data.mix=["benchmarks/runs/pseudo-competition.csv"]'

The whole train pool is labelled, so the only unlabelled news left for self-training is the
competition set. 4,000 of its 8,000 texts are AG News test rows: those are left out here
(matched the way competition.py scores them), so what is pseudo-labelled is only the other
4,000, the machine-written or garbled half. The accuracy on the full test split and on the
competition's AG-test half therefore stays inductive: neither saw a test text, with or without
its label. (newslora's leak guard would drop test texts from `data.mix` anyway; leaving them
out first keeps them out of the per-class balancing too.)

The rule is `newslora augment pseudo-label`'s (`confident_rows`): the run's calibrated
confidence >= the threshold, as many rows per class as the scarcest class has.
"""

import argparse
from pathlib import Path

from common import REPO, RUNS
from competition import non_test_texts

from newslora.augment import write_table
from newslora.augment.pseudo import confident_rows
from newslora.config import AG_NEWS_LABELS
from newslora.files import write_json


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="the run that labels the texts")
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--out", type=Path, default=RUNS / "pseudo-competition.csv")
    args = parser.parse_args()
    other = non_test_texts()  # matched by text; no test label is read
    rows, confident = confident_rows(args.run, other, args.threshold, AG_NEWS_LABELS)
    write_table(rows[["text", "label", "source", "origin"]], args.out)
    report = {
        "run": str(args.run),
        "threshold": args.threshold,
        "texts_labelled": len(other),
        "confident_per_class": confident,
        "rows_written": len(rows),
        "file": str(args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out),
    }
    write_json(args.out.with_suffix(".json"), report)
    print(report)


if __name__ == "__main__":
    main()
