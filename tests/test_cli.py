"""The real console entry point, in subprocesses: end to end, torchrun. (Bad input: see
test_bad_input.py.)"""

import json
import re
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from conftest import DATA, copy_run, newslora, tiny_config

from newslora.cli import main


def test_train_evaluate_predict_plot(tiny_run, tmp_path):
    tiny_run = copy_run(tiny_run, tmp_path)  # evaluate and plot write into the run
    summary = json.loads((tiny_run / "train_summary.json").read_text())
    assert summary["train_rows"] == 360 and summary["val_rows"] == 40 and summary["steps"] == 8
    assert summary["trainable_params"] == summary["params"]["trainable"] > 0
    history = json.loads((tiny_run / "history.json").read_text())
    assert [h["step"] for h in history if "loss" in h] == [2, 4, 6, 8]
    assert (tiny_run / "adapter" / "adapter_config.json").is_file()
    out = newslora("evaluate", tiny_run, "--data", DATA / "agnews" / "test.csv").stdout
    assert "7,600 rows" in out
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["rows"] == 7600 and sum(map(sum, metrics["confusion_matrix"])) == 7600
    assert set(metrics["per_class"]) == {"World", "Sports", "Business", "Sci/Tech"}
    submission = tmp_path / "submission.csv"
    unlabelled = DATA / "competition" / "test_unlabelled.csv"
    newslora("predict", tiny_run, unlabelled, submission)
    table = pd.read_csv(submission)
    assert list(table.columns) == ["ID", "Label"]
    assert table["ID"].tolist() == list(range(8000))
    assert table["Label"].between(0, 3).all()
    config = tiny_run / "config.toml"  # INPUT left out: the run's data.predict
    config.write_text(config.read_text().replace('predict = ""', f'predict = "{unlabelled}"'))
    newslora("predict", tiny_run, tmp_path / "again.csv")
    assert (tmp_path / "again.csv").read_text() == submission.read_text()
    newslora("plot", tiny_run)
    for png in ("loss.png", "accuracy.png", "confusion.png"):
        assert (tiny_run / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    # trained again into the same folder: nothing may still describe the model it replaced
    again = newslora("train", tiny_run / "config.toml", f"train.output_dir={tiny_run}", "lora.r=2")
    assert "removed metrics.json, confusion.png, loss.png, accuracy.png" in again.stderr
    assert not any((tiny_run / n).exists() for n in ("metrics.json", "loss.png", "confusion.png"))
    assert json.loads((tiny_run / "adapter" / "adapter_config.json").read_text())["r"] == 2


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_while_training_saves_and_says_how_to_resume(
    signum, tiny_bert, small_train_csv, tmp_path, write_config
):
    """Ctrl-C, or SIGTERM as a scheduler or `docker stop` sends: a checkpoint, one line."""
    run = tmp_path / "run"
    config = write_config(tiny_config(tiny_bert, small_train_csv, run))
    cmd = [sys.executable, "-m", "newslora", "train", config, "train.max_steps=100000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        # TensorBoard's writer starts after newslora's Ctrl-C handler: training has begun
        while not list(run.glob("tensorboard/*/events.out.*")) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        time.sleep(1)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signum, err[-2000:]
    last = err.strip().splitlines()[-1]
    said = re.fullmatch(r"newslora: interrupted at step ([\d,]+) of 100,000; .* --resume \w+", last)
    assert said, last
    step = said[1].replace(",", "")
    assert (run / "checkpoints" / f"checkpoint-{step}").is_dir()
    assert "Traceback" not in err
    later = newslora("evaluate", run, check=False)  # what the folder is, to whoever finds it
    assert later.returncode == 2 and "stopped before the end" in later.stderr


def test_every_subcommand_has_help(capsys):
    commands = ("train", "evaluate", "predict", "budget", "plot", "doctor", "export", "serve")
    for cmd in commands:
        with pytest.raises(SystemExit) as exit_info:
            main([cmd, "--help"])
        assert exit_info.value.code == 0
        assert "usage: newslora " + cmd in capsys.readouterr().out
    main(["train", "--help-config"])
    assert "LoRA rank" in capsys.readouterr().out


def test_torchrun_two_processes_one_run(tiny_bert, small_train_csv, tmp_path, write_config):
    """Data parallel on CPU (gloo) through the same entry point: one coherent run directory.

    The GPUs are hidden: on a machine with one GPU a second rank would ask for cuda:1."""
    run = tmp_path / "run"
    cfg = write_config(tiny_config(tiny_bert, small_train_csv, run))
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    newslora("train", cfg, launcher=[*launcher, "-m", "newslora"], env={"CUDA_VISIBLE_DEVICES": ""})
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 8
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    writers = {p.name.split(".")[-2] for p in (run / "tensorboard").rglob("events.*")}
    assert len(writers) == 1  # event files carry the writer's pid: only rank 0 logs
    newslora("predict", run, small_train_csv, tmp_path / "p.csv")
    assert len(pd.read_csv(tmp_path / "p.csv")) == 400
