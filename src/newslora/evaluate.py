"""Evaluate: a trained run (or its export) on a labelled set -> metrics.json (+ confusion PNG).

Accuracy, macro-F1 and per-class precision/recall/F1 (scikit-learn's classification_report)
over the classes present in the gold labels, and the confusion matrix over all classes.
"""

import time
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix

from newslora.data import for_file, load_with_config
from newslora.files import write_json
from newslora.plots import plot_confusion
from newslora.predict import folder_kind, load_predictor, source_config


def classification_metrics(labels, preds, names):
    """Per-class rows and macro-F1 cover only the classes that occur in `labels`: a class with
    no gold rows has no recall, and counting it as F1 = 0 would drag macro-F1 far below
    accuracy on, say, a news set without World rows. Absent classes are listed instead; the
    confusion matrix keeps every class (predictions into an absent class stay visible)."""
    present = sorted(int(i) for i in np.unique(labels))
    report = classification_report(
        labels,
        preds,
        labels=present,
        target_names=[names[i] for i in present],
        output_dict=True,
        zero_division=0,
    )
    return {
        "accuracy": float(accuracy_score(labels, preds)),
        "macro_f1": float(report["macro avg"]["f1-score"]),
        "per_class": {names[i]: _class_row(report[names[i]]) for i in present},
        "absent_classes": [name for i, name in enumerate(names) if i not in present],
        "labels": list(names),
        "confusion_matrix": confusion_matrix(labels, preds, labels=range(len(names))).tolist(),
    }


def _class_row(row):
    return {
        "precision": float(row["precision"]),
        "recall": float(row["recall"]),
        "f1": float(row["f1-score"]),
        "support": int(row["support"]),
    }


def evaluate_run(
    run_dir, data_spec=None, output=None, allow_pickle=False, backend="auto", **file_options
):
    """Predict a labelled set with a run, or with an export of it (the int8 ONNX one, say),
    and write metrics (default RUN_DIR/metrics.json). `file_options`: encoding, text_columns,
    label_column for this file (data.for_file)."""
    run_dir = Path(run_dir)
    cfg = source_config(run_dir)  # the data is read and checked before the model loads
    folder_kind(run_dir, backend)
    spec = data_spec or cfg.data.test
    data_cfg = for_file(cfg.data, **file_options)
    df = load_with_config(data_cfg, spec, need_labels=True, allow_pickle=allow_pickle)
    cfg, logits_of = load_predictor(run_dir, backend)
    start = time.perf_counter()
    logits = logits_of(df["text"].tolist())
    seconds = time.perf_counter() - start
    metrics = classification_metrics(df["label"].to_numpy(), logits.argmax(axis=1), cfg.data.labels)
    metrics |= {
        "data": str(spec),
        "rows": len(df),
        "predict_s": round(seconds, 1),
        "samples_per_s": round(len(df) / seconds, 1),
    }
    output = Path(output) if output else run_dir / "metrics.json"
    write_json(output, metrics)
    plot_confusion(metrics, output.with_name(output.stem.replace("metrics", "confusion") + ".png"))
    return metrics
