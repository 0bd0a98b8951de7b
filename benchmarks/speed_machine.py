"""The outside world of a speed row: this machine's dense matmul rate and CPU name, the
encoder's N, random-weight encoders for the GPU rows, the arms' input files, running one arm's
process (wall time, peak RSS, the load other processes put on the machine meanwhile), and what
a newslora run leaves behind (step times, its training rows' token lengths).
"""

import json
import os
import shlex
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import torch
from common import DATA, ENCODERS

from newslora.machine import cgroup_cpus
from newslora.model import resolve_name

REPO = Path(__file__).resolve().parents[1]
ROBERTA_JSON = REPO / "src" / "newslora" / "model_configs" / "roberta-base.json"
PREDICT_ROWS, PREDICT_REPEAT = 400, 10  # test rows to predict, and the repeat for timing


def matmul_flops(dtype, n=2048, tries=5, seconds=0.5):
    """Dense matmul rate of this machine (FLOP/s): torch.matmul of two n x n matrices, the best
    of `tries` windows (a window shared with another process only lowers the figure)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.matmul(a, b)
    best = 0.0
    for _ in range(tries):
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            torch.matmul(a, b)
            reps += 1
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - start))
    return best


def cpu_name():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "cpu"


@contextmanager
def cpu_quota_cgroup(cpus):
    """A new cgroup whose CPU quota is `cpus` (CFS bandwidth, as `docker run --cpus`); yields
    its task file, for `measured(cgroup=...)`. Needs root and a writable cpu controller."""
    v1, name = Path("/sys/fs/cgroup/cpu"), f"newslora-bench-{os.getpid()}"
    group = (v1 if v1.is_dir() else Path("/sys/fs/cgroup")) / name
    try:
        group.mkdir()
    except OSError as e:
        sys.exit(f"--cpu-quota: cannot create a cgroup at {group} ({e.strerror}); needs root")
    try:
        if v1.is_dir():
            period = int((group / "cpu.cfs_period_us").read_text())
            (group / "cpu.cfs_quota_us").write_text(str(round(cpus * period)))
            yield group / "tasks"
        else:
            (group / "cpu.max").write_text(f"{round(cpus * 100_000)} 100000")
            yield group / "cgroup.procs"
    finally:
        group.rmdir()


def host_facts():
    """The host a step runs on. On a GPU the host's per-step work is the floor of a step, and
    torch sizing its thread pool to cores the process may not use would slow exactly that."""
    return {
        "cpu": cpu_name(),
        "cores_seen": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "cgroup_cpus": cgroup_cpus(),
        "torch_threads": torch.get_num_threads(),
    }


def device_label(gpu):
    if gpu:
        return torch.cuda.get_device_name(0)
    return f"cpu ({cpu_name()}, {torch.get_num_threads()} threads, {bf16_units()})"


def bf16_units():
    """AMX tiles triple a 2-core machine's bf16 matmul rate over AVX512-BF16 alone (~3,000
    GFLOP/s on an Intel Xeon against ~950 on an AMD EPYC, 2026-12), so to a speed table the
    two are different machines."""
    flags = set(Path("/proc/cpuinfo").read_text().split())
    units = [unit for unit in ("amx_bf16", "avx512_bf16") if unit in flags]
    return "+".join(units) or "no bf16 units"


def encoder_params(path):
    """N: parameters that run per token (the encoder layers: embeddings and pooler left out)."""
    from transformers import AutoConfig, AutoModel

    with torch.device("meta"):
        model = AutoModel.from_config(AutoConfig.from_pretrained(path))
    return sum(
        p.numel()
        for name, p in model.named_parameters()
        if "embeddings" not in name and "pooler" not in name
    )


def random_encoder(config_json, folder, tokenizer_from, **overrides):
    """An encoder folder with random weights built from an architecture config (no weights
    exist offline), with `tokenizer_from`'s tokenizer: enough for speed, not for accuracy."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_from)
    spec = json.loads(Path(config_json).read_text()) | overrides
    config = AutoConfig.for_model(**spec | {"pad_token_id": tokenizer.pad_token_id})
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def random_roberta(runs):
    """RoBERTa-base from newslora's bundled config, random weights, MiniLM's tokenizer (neither
    RoBERTa's weights nor its tokenizer install offline): the GPU rows' architecture, built
    once under `runs`."""
    folder = runs / "roberta-base-random"
    if not (folder / "config.json").is_file():
        random_encoder(ROBERTA_JSON, folder, resolve_name(ENCODERS["minilm"]))
    return str(folder)


def busy_cpu_s():
    """CPU seconds spent by every process on this machine so far (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def measured(cmd, log, timeout=None, cgroup=None):
    """Run `cmd` (inside `cgroup`, a cgroup's task file, if given): exit status, wall s, peak
    RSS (MB) of the largest process of its tree, and other_cores: CPU cores other processes
    kept busy meanwhile (0 = the machine was ours)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = os.environ | {"HF_HUB_OFFLINE": "1"}
    if cgroup:  # the shell joins the cgroup, then becomes the command (same pid)
        cmd = ["sh", "-c", f'echo $$ > {shlex.quote(str(cgroup))} && exec "$@"', "sh", *cmd]
    start, busy = time.perf_counter(), busy_cpu_s()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        timer = threading.Timer(timeout, proc.kill) if timeout else None
        if timer:
            timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        if timer:
            timer.cancel()
    wall = time.perf_counter() - start
    ours = usage.ru_utime + usage.ru_stime
    return {
        "rc": os.waitstatus_to_exitcode(status),
        "wall_s": wall,
        "peak_mb": usage.ru_maxrss / 1024,
        "other_cores": round(max(0.0, busy_cpu_s() - busy - ours) / wall, 2),
    }


def checked(cmd, log, timeout=None):
    done = measured(cmd, log, timeout)
    if done["rc"] != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        raise RuntimeError(f"exit {done['rc']}: {shlex.join(map(str, cmd))}\n{tail}")
    return done


def budget_overrides(encoder):
    """demo.toml's r=8 and default head fit the budget on MiniLM only; elsewhere the recipe's
    linear head and the largest rank that fits (configs/newslora.toml)."""
    return [] if encoder == ENCODERS["minilm"] else ["model.head=linear", "lora.r=auto"]


def inputs(runs, rows):
    """The same pool rows (stratified, seed 42) and test rows for every arm."""
    from sklearn.model_selection import train_test_split

    train = runs / f"pool_{rows}.csv"
    if not train.is_file():
        pool = pd.read_csv(DATA / "agnews" / "train_pool.csv", dtype=str, keep_default_na=False)
        if rows < len(pool):
            pool, _ = train_test_split(
                pool, train_size=rows, random_state=42, stratify=pool["label"]
            )
        pool.to_csv(train, index=False)
    small, big = runs / "predict_1x.csv", runs / "predict_10x.csv"
    if not big.is_file():
        test = pd.read_csv(
            DATA / "agnews" / "test.csv", header=None, names=["label", "title", "description"]
        )
        rows_1x = test.head(PREDICT_ROWS).assign(label=lambda t: t["label"] - 1)  # ids 0..3
        rows_1x.to_csv(small, index=False)
        pd.concat([rows_1x] * PREDICT_REPEAT).to_csv(big, index=False)
    return train, small, big


def step_end_times(run):
    """Wall time of each optimizer step's end, from the run's TensorBoard loss events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = sorted((run / "tensorboard").glob("*/events.out.tfevents.*"))[-1]
    acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
    acc.Reload()
    return [e.wall_time for e in sorted(acc.Scalars("train/loss"), key=lambda e: e.step)]


def newslora_lengths(overrides):
    """Token lengths of the exact rows `newslora train` trains on, by its own functions."""
    from newslora.config import load_config
    from newslora.data import load_with_config
    from newslora.model import load_tokenizer
    from newslora.splits import held_out_texts, split_train_val, training_rows

    cfg = load_config(REPO / "configs" / "demo.toml", overrides)
    real, val = split_train_val(load_with_config(cfg.data, cfg.data.train), cfg.data)
    train_df, _ = training_rows(real, val, cfg.data, held_out_texts(cfg.data)[0])
    enc = load_tokenizer(cfg.model.name)(
        train_df["text"].tolist(), truncation=True, max_length=cfg.model.max_length
    )
    return [len(ids) for ids in enc["input_ids"]], cfg.train.batch_size
