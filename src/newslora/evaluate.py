"""Evaluate: a trained run on a labelled set -> metrics.json (+ confusion matrix PNG).

Accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix, by scikit-learn.
"""

import time
from pathlib import Path

from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from newslora.data import load_with_config
from newslora.files import write_json
from newslora.plots import plot_confusion
from newslora.predict import load_run, predict_with_config


def classification_metrics(labels, preds, names):
    ids = list(range(len(names)))
    p, r, f, support = precision_recall_fscore_support(labels, preds, labels=ids, zero_division=0)
    return {
        "accuracy": float(accuracy_score(labels, preds)),
        "macro_f1": float(f1_score(labels, preds, labels=ids, average="macro", zero_division=0)),
        "per_class": {
            name: {
                "precision": float(p[i]),
                "recall": float(r[i]),
                "f1": float(f[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(names)
        },
        "labels": list(names),
        "confusion_matrix": confusion_matrix(labels, preds, labels=ids).tolist(),
    }


def evaluate_run(run_dir, data_spec=None, output=None, allow_pickle=False):
    """Predict a labelled set with a run and write metrics (default RUN_DIR/metrics.json)."""
    run_dir = Path(run_dir)
    cfg, model, tokenizer = load_run(run_dir)
    spec = data_spec or cfg.data.test
    df = load_with_config(cfg.data, spec, need_labels=True, allow_pickle=allow_pickle)
    start = time.perf_counter()
    logits = predict_with_config(cfg, model, tokenizer, df["text"].tolist())
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
