"""Pseudo-label: self-training on an unlabelled target corpus.

Each round: the current run predicts the corpus; rows predicted with confidence >= threshold
are kept, balanced across classes (every class keeps as many as the scarcest one, its most
confident first, so one dominant class cannot take over); a new run is trained on the real
data plus those rows (`data.mix`); it becomes the current run. Training on a test corpus this
way is transductive: numbers measured on that same corpus must be reported apart.
"""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from newslora.data import load_with_config
from newslora.files import write_json
from newslora.predict import run_confidence


def confident_rows(run_dir, texts, threshold, labels):
    """Rows of `texts` the run labels with confidence >= threshold, balanced per class."""
    predicted, confidence = run_confidence(run_dir, texts, labels)
    return select_confident(predicted, confidence, texts, threshold, labels)


def select_confident(predicted, confidence, texts, threshold, labels):
    """The selection rule alone: confident rows, as many per class as the scarcest class."""
    table = pd.DataFrame({"text": list(texts), "label": predicted, "confidence": confidence})
    table = table[table["confidence"] >= threshold]
    counts = [int((table["label"] == k).sum()) for k in range(len(labels))]
    per_class = min(counts)
    kept = (
        table.sort_values("confidence", ascending=False, kind="stable")
        .groupby("label")
        .head(per_class)
        .sort_index()
    )
    return kept.assign(source="pseudo", origin=kept["text"]), dict(zip(labels, counts, strict=True))


def self_train(cfg, corpus_spec, output_dir, start_run, rounds=1, threshold=0.9):
    """`rounds` of pseudo-labelling; returns the report (rows added per round, val accuracy)."""
    from newslora.augment import write_table
    from newslora.train import Recipe

    output_dir = Path(output_dir)
    corpus = load_with_config(cfg.data, corpus_spec, need_labels=False)["text"]
    run, report = (
        Path(start_run),
        {
            "corpus": str(corpus_spec),
            "threshold": threshold,
            "start_run": str(start_run),
            "rounds": [],
        },
    )
    for round_no in range(1, rounds + 1):
        rows, confident = confident_rows(run, corpus, threshold, cfg.data.labels)
        if rows.empty:  # some class has no confident row: balancing leaves nothing to add
            report["stopped"] = f"round {round_no}: no confident rows for some class {confident}"
            write_json(output_dir / "pseudo_report.json", report)
            break
        pseudo_file = output_dir / f"pseudo-round{round_no}.csv"
        write_table(rows[["text", "label", "source", "origin"]], pseudo_file)
        run = output_dir / f"round{round_no}"
        data = replace(cfg.data, mix=[*cfg.data.mix, {"path": str(pseudo_file), "weight": 1.0}])
        round_cfg = replace(cfg, data=data, train=replace(cfg.train, output_dir=str(run)))
        recipe = Recipe(round_cfg).setup().train().save()
        report["rounds"].append(
            {
                "round": round_no,
                "confident_per_class": confident,
                "rows_added": len(rows),
                "added_per_class": {
                    cfg.data.labels[k]: int(n)
                    for k, n in zip(*np.unique(rows["label"], return_counts=True), strict=True)
                },
                "run": str(run),
                "val_accuracy": recipe.val_metrics["eval_accuracy"],
            }
        )
        write_json(output_dir / "pseudo_report.json", report)
    return report
