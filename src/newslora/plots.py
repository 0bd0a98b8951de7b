"""Plots: training curves (loss and accuracy vs step) and the confusion matrix, as PNG files."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay  # noqa: E402

from newslora import NewsloraError  # noqa: E402
from newslora.files import atomic_path, not_a_run, read_json  # noqa: E402


def _save(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def _series(history, key):
    points = [(h["step"], h[key]) for h in history if key in h]
    return [p[0] for p in points], [p[1] for p in points]


def plot_curves(run_dir):
    """loss.png (train and validation loss) and accuracy.png (validation accuracy) vs step."""
    run_dir = Path(run_dir)
    history = read_json(run_dir / "history.json")
    if history is None:
        raise not_a_run(run_dir, "history.json")
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        raise NewsloraError(f"{run_dir / 'history.json'}: damaged, not a list of logged steps")
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("loss", "train"), ("eval_loss", "validation")):
        steps, values = _series(history, key)
        ax.plot(steps, values, marker="." if key == "eval_loss" else None, label=label)
    ax.set(xlabel="step", ylabel="cross-entropy loss", title="Loss")
    ax.legend()
    _save(fig, run_dir / "loss.png")
    fig, ax = plt.subplots(figsize=(6, 4))
    steps, values = _series(history, "eval_accuracy")
    ax.plot(steps, [100 * v for v in values], marker="o")
    ax.set(xlabel="step", ylabel="accuracy (%)", title="Validation accuracy")
    _save(fig, run_dir / "accuracy.png")
    written = [run_dir / "loss.png", run_dir / "accuracy.png"]
    metrics = read_json(run_dir / "metrics.json")
    if metrics is not None:
        plot_confusion(metrics, run_dir / "confusion.png")
        written.append(run_dir / "confusion.png")
    return written


def plot_confusion(metrics, path):
    names = metrics["labels"]
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2, 1.2 * len(names) + 1))
    display = ConfusionMatrixDisplay(np.array(metrics["confusion_matrix"]), display_labels=names)
    display.plot(ax=ax, cmap="Blues", colorbar=False, xticks_rotation=30, values_format="d")
    ax.set(
        xlabel="predicted",
        ylabel="true",
        title=f"Confusion matrix (accuracy {100 * metrics['accuracy']:.2f}%)",
    )
    _save(fig, path)
