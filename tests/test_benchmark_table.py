"""The benchmarks' reports (mean and spread over seeds, effects against the baseline) and
the OOD proxy's surface shifts."""

import importlib
import random
import sys

from conftest import REPO


def _benchmark(name):
    """A benchmark script as a module; it finds its sibling common.py on sys.path, as it does
    when run as `python benchmarks/NAME.py`."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


def test_markdown_groups_seeds(tmp_path):
    bench = _benchmark("common")
    row = {
        "encoder": "minilm",
        "recipe": "newslora",
        "macro_f1": 0.9,
        "trainable_params": 995_328,
        "train_rows": 7500,
        "wall_s": 100.0,
        "train_samples_per_s": 50.0,
        "device": "cpu",
    }
    rows = [
        row | {"seed": 1, "test_accuracy": 90.0},
        row | {"seed": 2, "test_accuracy": 91.0},
        row | {"seed": 1, "test_accuracy": 80.0, "train_rows": 1000},
        row | {"seed": 1, "test_accuracy": 92.0, "epochs": 3.0, "competition_ag_accuracy": 91.5},
    ]
    bench.save_rows(rows, tmp_path / "accuracy.json")
    table = (tmp_path / "accuracy.md").read_text()
    assert "| minilm | newslora | 2 | 90.50 ± 0.50 | 90.00 | 995,328 | 7,500 |" in table
    assert "| minilm | newslora | 1 | 80.00 ± 0.00 | 90.00 | 995,328 | 1,000 | - |" in table
    # another epoch count is another line, with the competition score where a row has one
    assert "| 92.00 ± 0.00 | 90.00 | 995,328 | 7,500 | 3 | 100 | 50.0 | cpu | - | 91.50 |" in table
    assert bench.load_rows(tmp_path / "accuracy.json") == rows


def test_ood_shifts_are_seeded_and_keep_the_words():
    bench = _benchmark("augment")
    text = "Fed raises rates again, citing inflation worries on Tuesday in Washington."
    for kind in bench.SHIFTS:
        first = bench.shift_text(text, kind, random.Random(3))
        assert first == bench.shift_text(text, kind, random.Random(3)) and first != text
    shuffled = bench.shift_text(text, "shuffled", random.Random(3))
    assert sorted(shuffled.split()) == sorted(text.split())
    assert bench.shift_text(text, "lower_nopunct", random.Random(0)).islower()
    assert len(bench.shift_text(text, "headline", random.Random(0)).split()) == 10


def test_effects_table_reports_deltas_against_the_baseline():
    bench = _benchmark("augment")
    shifts = dict.fromkeys(bench.SHIFTS, 50.0)
    row = {"ood_by_shift": shifts, "added_rows": 0, "wall_s": 10.0}
    rows = [
        row | {"recipe": "newslora baseline", "test_accuracy": 88.0, "ood_accuracy": 70.0},
        row | {"recipe": "newslora baseline", "test_accuracy": 89.0, "ood_accuracy": 71.0},
        row
        | {"recipe": "newslora +synonyms", "test_accuracy": 89.0, "ood_accuracy": 70.0}
        | {"added_rows": 2000, "seed": 1},
    ]
    rows[0]["seed"], rows[1]["seed"] = 1, 2  # deltas pair each arm with its own seed's baseline
    lines = bench.effects_table(rows)
    assert lines[2].startswith("| newslora baseline | 2 | 88.50 ± 0.50 | +0.00 | 70.50 | +0.00 |")
    assert lines[3].startswith("| newslora +synonyms | 1 | 89.00 ± 0.00 | +1.00 | 70.00 | +0.00 |")
    assert lines[3].endswith("| 2,000 | 10 |")


def test_every_script_uses_the_shared_module_not_a_sibling_script():
    for name in ("accuracy", "augment", "cpu_precision"):
        source = (REPO / "benchmarks" / f"{name}.py").read_text()
        assert "from common import" in source and "from accuracy import" not in source
        assert "sys.path" not in source
    common = _benchmark("common")
    assert common.table(["a", "b"], [[1, "x"]]) == ["| a | b |", "|---|---|", "| 1 | x |"]
    rows = [{"recipe": "r", "seed": 1, "benchmark": "augment"}, {"recipe": "r", "seed": 2}]
    assert common.done(rows, ("recipe", "seed"), benchmark="augment") == {("r", 1)}


def test_a_resumed_run_counts_every_invocations_training_time(
    tiny_bert, small_train_csv, tmp_path, write_config
):
    """accuracy.py resumes a run cut short after a checkpoint; its wall time is the sum of
    each invocation's first-to-last logged step, one TensorBoard folder per invocation."""
    import shutil
    import time

    from conftest import tiny_config

    from newslora.config import load_config
    from newslora.train import Recipe

    bench = _benchmark("accuracy")
    run = tmp_path / "run"
    config = write_config(tiny_config(tiny_bert, small_train_csv, run, "save_total_limit = 5"))
    cfg = lambda: load_config(config, ["train.precision=fp32"])  # noqa: E731
    Recipe(cfg()).setup().train().save()
    (first,) = bench.segment_walls(run)
    shutil.rmtree(run / "checkpoints" / "checkpoint-8")  # cut short after step 4
    time.sleep(1.1)  # the TensorBoard folder is named to the second
    Recipe(cfg()).setup(resume=True).train().save()
    walls = bench.segment_walls(run)
    assert len(walls) == 2 and walls[0] == first and all(w > 0 for w in walls)
