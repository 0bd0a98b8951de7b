"""Metrics over the classes a labelled set actually has; the confusion matrix over all."""

import json

import pandas as pd
import pytest
from conftest import DATA, LABELS, newslora, tiny_config
from sklearn.metrics import f1_score

from newslora.evaluate import classification_metrics


def test_absent_class_is_listed_not_scored():
    gold = [1, 1, 2, 2, 3, 3]  # no World (0) rows
    pred = [1, 0, 2, 3, 3, 3]  # one Sports row predicted as World
    m = classification_metrics(gold, pred, LABELS)
    assert list(m["per_class"]) == ["Sports", "Business", "Sci/Tech"]
    assert m["absent_classes"] == ["World"]
    assert m["per_class"]["Sports"] == {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2}
    assert m["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 0.8) / 3)
    assert m["macro_f1"] > f1_score(gold, pred, labels=range(4), average="macro")  # old way
    assert m["confusion_matrix"][0] == [0, 0, 0, 0] and m["confusion_matrix"][1] == [1, 1, 0, 0]
    assert classification_metrics([0, 1, 2, 3], [0, 1, 2, 3], LABELS)["absent_classes"] == []


def test_evaluate_a_three_class_file(tiny_bert, small_train_csv, tmp_path, write_config):
    """A real tiny run on real AG test rows without World, through the console script."""
    run = tmp_path / "run"
    newslora("train", write_config(tiny_config(tiny_bert, small_train_csv, run)))
    test = pd.read_csv(DATA / "agnews" / "test.csv", header=None, dtype=str)
    three = test[test[0] != "1"].head(300)  # official format: class 1 is World
    three.to_csv(tmp_path / "three.csv", header=False, index=False)
    out = newslora("evaluate", run, "--data", tmp_path / "three.csv", "--out", run / "three.json")
    assert "absent from the gold labels" in out.stdout and "World" in out.stdout.splitlines()[-1]
    assert "newly initialized" not in out.stderr  # the reload's random head is not news
    m = json.loads((run / "three.json").read_text())
    assert set(m["per_class"]) == {"Sports", "Business", "Sci/Tech"}
    assert m["absent_classes"] == ["World"]
    f1s = [c["f1"] for c in m["per_class"].values()]
    assert m["macro_f1"] == pytest.approx(sum(f1s) / 3)
    assert sum(c["support"] for c in m["per_class"].values()) == 300
    matrix = m["confusion_matrix"]
    assert len(matrix) == 4 and matrix[0] == [0, 0, 0, 0] and sum(map(sum, matrix)) == 300
    assert m["accuracy"] == pytest.approx(sum(matrix[i][i] for i in range(4)) / 300)
    assert (run / "three.png").read_bytes()[:4] == b"\x89PNG"  # ConfusionMatrixDisplay, 4x4
