"""Score a competition submission exactly, on the competition texts that are AG News test rows.

    python benchmarks/competition.py SUBMISSION.csv [MORE.csv ...]
    python benchmarks/competition.py --seed000     # seed 000's two published submissions
    python benchmarks/competition.py --publish RUN --command "how RUN was trained"
        # RUN/submission.csv -> results/submission_best.csv, and submission_best.md beside it

4,000 of the 8,000 texts in competition/test_unlabelled.csv are official AG News test rows
(title + " " + description). Each competition text is matched to test.csv by its letters only,
lower-cased (the competition's copies differ in spacing, punctuation and escapes), and the
submission's label (an id 0-3, or the class name `newslora predict --label-names` writes) is
compared with the test row's. The other 4,000 texts (machine-written or garbled news) have no
label anywhere and are not scored.
"""

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

import pandas as pd
from common import DATA, REPO, RESULTS, write_text

from newslora.config import AG_NEWS_LABELS

SEED000 = {  # github ARNiroula/news-data-llm-with-lora @ 19e8f29, copied unchanged
    "seed 000, submission A": REPO / "benchmarks" / "seed000" / "submission_a.csv",
    "seed 000, submission B": REPO / "benchmarks" / "seed000" / "submission_b.csv",
}


def letters(text):
    return re.sub(r"[^a-z]", "", str(text).lower())


def ag_test_labels(data=DATA):
    """{position in the competition file: AG News label 0-3} for the texts that are test rows."""
    path = data / "agnews" / "test.csv"
    if not path.is_file():
        raise SystemExit(f"{path}: not found; set NEWSLORA_DATA to the shared data folder")
    test = pd.read_csv(path, header=None, dtype=str, keep_default_na=False)
    by_text = {}
    for cls, title, description in test.itertuples(index=False):
        by_text[letters(title + " " + description)] = int(cls) - 1
    keys = map(letters, competition_texts(data))
    return {i: by_text[key] for i, key in enumerate(keys) if key in by_text}


def competition_texts(data=DATA):
    return pd.read_csv(data / "competition" / "test_unlabelled.csv", dtype=str)["text"]


def non_test_texts(data=DATA):
    """The competition texts that are not AG test rows (the machine-written or garbled half)."""
    texts, test_rows = competition_texts(data), ag_test_labels(data)
    return texts[[i not in test_rows for i in range(len(texts))]]


def score(submission, truth):
    """Accuracy % of an `ID,Label` file over the matched texts, and how many it covers."""
    labels = read_submission(submission)
    missing = [i for i in truth if i not in labels]
    if missing:
        raise SystemExit(f"{submission}: no label for ID {missing[0]} ({len(missing)} missing)")
    return score_labels(labels, truth), len(truth)


def read_submission(submission):
    """{ID: label id 0-3} of an `ID,Label` file; labels may be ids or AG News' class names
    (what `newslora predict --label-names` writes). Anything else stops in one line."""
    try:
        sub = pd.read_csv(submission, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise SystemExit(f"{submission}: file not found") from None
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise SystemExit(f"{submission}: not a CSV file ({str(e).splitlines()[0]})") from None
    if list(sub.columns[:2]) != ["ID", "Label"]:
        raise SystemExit(f"{submission}: header must be ID,Label, not {','.join(sub.columns)}")
    ids = {name.lower(): i for i, name in enumerate(AG_NEWS_LABELS)} | {str(i): i for i in range(4)}
    labels = {}
    for row, (id_, label) in enumerate(zip(sub["ID"], sub["Label"], strict=True), start=2):
        if not id_.strip().isdigit():
            raise SystemExit(f"{submission}: row {row}: ID {id_!r} is not a whole number")
        if label.strip().lower() not in ids:
            raise SystemExit(
                f"{submission}: row {row}: Label {label!r} is not 0-3 or an AG News class name"
            )
        if int(id_) in labels:
            raise SystemExit(f"{submission}: row {row}: ID {int(id_)} appears twice")
        labels[int(id_)] = ids[label.strip().lower()]
    return labels


def score_labels(labels, truth):
    """Accuracy % of labels (indexable by competition position) over the matched texts."""
    return 100 * sum(int(labels[i]) == label for i, label in truth.items()) / len(truth)


def publish(run, command, truth, note=""):
    """Copy a run's submission to results/submission_best.csv with a note on what made it."""
    submission = run / "submission.csv"
    accuracy, n = score(submission, truth)
    seeds = {name: score(path, truth)[0] for name, path in SEED000.items()}
    summary = json.loads((run / "train_summary.json").read_text())
    test = json.loads((run / "metrics.json").read_text())
    shutil.copyfile(submission, RESULTS / "submission_best.csv")
    lines = [
        "# Competition submission: newslora's best model under 1,000,000 trainable parameters",
        "",
        "`submission_best.csv`: `ID,Label` for the 8,000 texts of",
        "`competition/test_unlabelled.csv` (IDs in file order), from `newslora predict`.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| encoder | `{summary['model']}` |",
        f"| trainable parameters | {summary['trainable_params']:,} |",
        f"| training rows | {summary['train_rows']:,} (+{summary['val_rows']:,} validation) |",
        f"| epochs | {summary['epochs']:g} (best checkpoint on validation: "
        f"`{Path(summary['best_checkpoint'] or '-').name}`) |",
        f"| device | {summary['device']}, {summary['precision']} |",
        f"| training wall time | {summary['wall_s']:,.0f} s |",
        f"| validation accuracy | {100 * summary['val_accuracy']:.2f}% |",
        f"| official AG News test (7,600 rows) | {100 * test['accuracy']:.2f}% |",
        f"| competition, its {n:,} AG-test texts | **{accuracy:.2f}%** |",
        *[f"| {name}, same texts | {value:.2f}% |" for name, value in seeds.items()],
        "",
        *([note, ""] if note else []),
        "Reproduce:",
        "",
        "```bash",
        command,
        f"python benchmarks/competition.py --publish {run.relative_to(REPO)} --command '...'",
        "```",
        "",
        "The run's resolved config (`config.toml` of the run):",
        "",
        "```toml",
        (run / "config.toml").read_text().strip(),
        "```",
        "",
    ]
    write_text(RESULTS / "submission_best.md", "\n".join(lines))
    return accuracy


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("submissions", nargs="*", type=Path)
    parser.add_argument("--seed000", action="store_true", help="also score seed 000's two")
    parser.add_argument("--publish", type=Path, help="run directory whose submission to publish")
    parser.add_argument("--command", default="", help="with --publish: how the run was made")
    parser.add_argument("--note", default="", help="with --publish: a paragraph for the .md")
    args = parser.parse_args(argv)
    if args.publish:
        accuracy = publish(args.publish.resolve(), args.command, ag_test_labels(), args.note)
        print(f"{accuracy:.2f}%: {RESULTS / 'submission_best.csv'} and .md written")
        return
    named = {str(p): p for p in args.submissions}
    if args.seed000 or not named:
        named = {**SEED000, **named}
    truth = ag_test_labels()
    for name, path in named.items():
        accuracy, n = score(path, truth)
        print(f"{accuracy:.2f}%  on {n:,} AG-test texts  {name}")


if __name__ == "__main__":
    sys.exit(main())
