"""The accuracy benchmark's report: mean and spread over seeds, one line per recipe."""

import importlib.util

from conftest import REPO


def _benchmark():
    spec = importlib.util.spec_from_file_location("accuracy", REPO / "benchmarks" / "accuracy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_markdown_groups_seeds(tmp_path):
    bench = _benchmark()
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
    ]
    bench.save_rows(rows, tmp_path / "accuracy.json")
    table = (tmp_path / "accuracy.md").read_text()
    assert "| minilm | newslora | 2 | 90.50 ± 0.50 | 90.00 | 995,328 | 7,500 |" in table
    assert "| minilm | newslora | 1 | 80.00 ± 0.00 | 90.00 | 995,328 | 1,000 |" in table
    assert bench.load_rows(tmp_path / "accuracy.json") == rows
