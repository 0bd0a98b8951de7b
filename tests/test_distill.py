"""Distillation: a teacher run's logits on the training rows join the student's loss."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import copy_run, tiny_config
from test_train import _losses

from newslora import NewsloraError
from newslora.config import load_config
from newslora.distill import TEACHER_CACHE, distill_loss, teacher_logits
from newslora.predict import run_config
from newslora.train import Recipe


def test_the_loss_mixes_labels_and_the_teachers_softened_distribution():
    torch.manual_seed(0)
    student, teacher = torch.randn(8, 4), torch.randn(8, 4)
    labels = torch.randint(0, 4, (8,))
    hard = F.cross_entropy(student, labels)
    assert distill_loss(student, teacher, labels, 0.0, 2.0) == pytest.approx(float(hard))
    # a student that already matches the teacher pays only for the labels
    assert distill_loss(student, student, labels, 0.3, 2.0) == pytest.approx(0.7 * float(hard))
    # alpha 1: T^2 * KL(teacher_T || student_T), computed by hand
    p = torch.softmax(teacher / 2, -1)
    kl = (p * (p.log() - torch.log_softmax(student / 2, -1))).sum(-1).mean()
    assert distill_loss(student, teacher, labels, 1.0, 2.0) == pytest.approx(4 * float(kl))


def _train(config, overrides):
    cfg = load_config(config, ["train.precision=fp32", *overrides])
    return Recipe(cfg).setup().train().save()


def test_a_student_learns_from_the_teacher_run(
    lively_run, tiny_bert, small_train_csv, tmp_path, write_config
):
    plain, student = tmp_path / "plain", tmp_path / "student"
    _train(write_config(tiny_config(tiny_bert, small_train_csv, plain), "p.toml"), [])
    recipe = _train(
        write_config(tiny_config(tiny_bert, small_train_csv, student), "s.toml"),
        [f"train.teacher={lively_run}", "train.distill_alpha=1.0"],
    )
    # same seed, rows and order: only the loss differs, and it is the teacher's
    assert _losses(student) != pytest.approx(_losses(plain), abs=1e-3)
    summary = json.loads((student / "train_summary.json").read_text())
    teacher_params = json.loads((lively_run / "train_summary.json").read_text())
    assert summary["teacher"] == {
        "run": str(lively_run),
        "alpha": 1.0,
        "temperature": 2.0,
        "trainable_params": teacher_params["trainable_params"],
    }
    assert summary["trainable_params"] == recipe.count.trainable  # the student's count only
    assert json.loads((plain / "train_summary.json").read_text())["teacher"] is None
    history = json.loads((student / "history.json").read_text())
    assert any("eval_accuracy" in h for h in history)  # validation still runs, on labels


def test_a_wrong_teacher_is_refused_in_one_line(
    lively_run, tiny_bert, small_train_csv, tmp_path, write_config
):
    config = write_config(tiny_config(tiny_bert, small_train_csv, tmp_path / "run"))
    with pytest.raises(NewsloraError, match="not a finished newslora run"):
        _train(config, [f"train.teacher={tmp_path}"])
    labels = 'labels = ["a", "b", "c", "d"]'
    other = tiny_config(tiny_bert, small_train_csv, tmp_path / "run").replace(
        "val_rows = 40", f"val_rows = 40\n{labels}"
    )
    # the student's labels are a-d (ids 0-3 in the CSV), the teacher's AG News names
    with pytest.raises(NewsloraError, match="teacher's labels"):
        _train(write_config(other, "other.toml"), [f"train.teacher={lively_run}"])


def test_the_teachers_logits_are_kept_for_a_resumed_run(lively_run, pool, tmp_path):
    teacher = copy_run(lively_run, tmp_path)
    labels, texts = run_config(teacher).data.labels, list(pool["title"][:20])
    cache = tmp_path / "student" / TEACHER_CACHE
    first = teacher_logits(teacher, labels, texts, cache)
    assert first.shape == (20, 4) and cache.is_file()
    (teacher / "config.toml").unlink()  # the teacher cannot load now: only the cache can answer
    np.testing.assert_array_equal(teacher_logits(teacher, labels, texts, cache), first)
    with pytest.raises(NewsloraError, match="not a finished"):  # other texts: not from the cache
        teacher_logits(teacher, labels, texts[1:], cache)
