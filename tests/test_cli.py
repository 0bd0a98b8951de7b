"""The real console entry point, in subprocesses: end to end, bad input, torchrun."""

import json
import shutil

import pandas as pd
import pytest
from conftest import DATA, newslora, tiny_config


@pytest.fixture()
def tiny_run(tiny_bert, small_train_csv, tmp_path, write_config):
    run = tmp_path / "run"
    newslora("train", write_config(tiny_config(tiny_bert, small_train_csv, run)))
    return run


def test_train_evaluate_predict_plot(tiny_run, tmp_path):
    for name in ("config.toml", "train_summary.json", "history.json", "adapter"):
        assert (tiny_run / name).exists(), name
    out = newslora("evaluate", tiny_run, "--data", DATA / "agnews" / "test.csv").stdout
    assert "7,600 rows" in out
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["rows"] == 7600 and sum(map(sum, metrics["confusion_matrix"])) == 7600
    assert set(metrics["per_class"]) == {"World", "Sports", "Business", "Sci/Tech"}
    submission = tmp_path / "submission.csv"
    newslora("predict", tiny_run, DATA / "competition" / "test_unlabelled.csv", submission)
    table = pd.read_csv(submission)
    assert list(table.columns) == ["ID", "Label"]
    assert table["ID"].tolist() == list(range(8000))
    assert table["Label"].between(0, 3).all()
    newslora("plot", tiny_run)
    for png in ("loss.png", "accuracy.png", "confusion.png"):
        assert (tiny_run / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png


def test_every_subcommand_has_help():
    for cmd in ("train", "evaluate", "predict", "budget", "plot"):
        assert "usage: newslora " + cmd in newslora(cmd, "--help").stdout
    assert "--allow-pickle" in newslora("predict", "--help").stdout
    assert "LoRA rank" in newslora("train", "--help-config").stdout


def _fails(*args, expect):
    proc = newslora(*args, check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("newslora: error:"), proc.stderr
    assert expect in lines[0], lines[0]


def test_bad_input_gives_one_line_and_keeps_earlier_outputs(tiny_run, tmp_path):
    out = tmp_path / "pred.csv"
    out.write_text("ID,Label\n0,1\n")  # an earlier submission that must survive
    _fails("predict", tiny_run, tmp_path / "missing.csv", out, expect="missing.csv: file not found")
    (tmp_path / "empty.csv").write_text('text\nfine\n""\n')
    _fails("predict", tiny_run, tmp_path / "empty.csv", out, expect="row 2: field 'text' is empty")
    (tmp_path / "nocol.csv").write_text("body\nsome news\n")
    _fails("predict", tiny_run, tmp_path / "nocol.csv", out, expect="missing column 'text'")
    (tmp_path / "badlabel.csv").write_text("label,text\n1,ok\n9,bad\n")
    _fails(
        "evaluate",
        tiny_run,
        "--data",
        tmp_path / "badlabel.csv",
        expect="row 2: field 'label' = '9' is not a valid label",
    )
    _fails("evaluate", tmp_path, expect="not a finished newslora run")
    assert out.read_text() == "ID,Label\n0,1\n"


def test_bad_config_and_model(tiny_bert, small_train_csv, tmp_path, write_config):
    cfg = write_config(tiny_config(tiny_bert, small_train_csv, tmp_path / "run"))
    _fails("train", cfg, "train.budget=100", expect="exceed train.budget 100 by 1,056")
    assert not (tmp_path / "run").exists()  # refused before writing anything
    _fails("budget", cfg, f"model.name={tmp_path / 'nowhere'}", expect="nowhere")
    _fails("train", cfg, "lora.rank=4", expect="unknown key 'lora.rank'")
    (tmp_path / "nolabel.csv").write_text("title,description\na,b\n")
    _fails("train", cfg, f"data.train={tmp_path / 'nolabel.csv'}", expect="missing column 'label'")


def test_torchrun_two_processes_one_run(tiny_bert, small_train_csv, tmp_path, write_config):
    """Data parallel on CPU (gloo) through the same entry point: one coherent run directory."""
    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not installed")
    run = tmp_path / "run"
    cfg = write_config(tiny_config(tiny_bert, small_train_csv, run))
    launcher = [torchrun, "--standalone", "--nproc_per_node=2", "-m", "newslora"]
    newslora("train", cfg, launcher=launcher)
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 8
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    writers = {p.name.split(".")[-2] for p in (run / "tensorboard").glob("events.*")}
    assert len(writers) == 1  # event files carry the writer's pid: only rank 0 logs
    newslora("predict", run, small_train_csv, tmp_path / "p.csv")
    assert len(pd.read_csv(tmp_path / "p.csv")) == 400
