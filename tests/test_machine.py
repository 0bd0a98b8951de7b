"""What the process takes from the machine: threads sized to a container's CPU quota, which
torch does not read, and tcmalloc as the allocator where it is installed."""

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch
from conftest import train_tiny_run

from newslora.machine import TCMALLOC, cgroup_cpus, tcmalloc_path, tcmalloc_skipped, threads_for


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_v2_quota_is_the_tightest_along_the_path(tmp_path):
    write(tmp_path / "self", "0::/pod/app\n")
    write(tmp_path / "fs" / "cpu.max", "max 100000\n")
    write(tmp_path / "fs" / "pod" / "cpu.max", "250000 100000\n")
    write(tmp_path / "fs" / "pod" / "app" / "cpu.max", "max 100000\n")
    assert cgroup_cpus(tmp_path / "fs", tmp_path / "self") == 2.5
    write(tmp_path / "fs" / "pod" / "cpu.max", "max 100000\n")
    assert cgroup_cpus(tmp_path / "fs", tmp_path / "self") is None


def test_v1_quota_and_a_container_that_sees_its_cgroup_as_the_mount(tmp_path):
    write(tmp_path / "self", "5:memory:/x\n4:cpu,cpuacct:/docker/abc\nnot a cgroup line\n")
    mount = tmp_path / "fs" / "cpu,cpuacct"  # the host path /docker/abc is not under it
    write(mount / "cpu.cfs_quota_us", "150000\n")
    write(mount / "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpus(tmp_path / "fs", tmp_path / "self") == 1.5
    write(mount / "cpu.cfs_quota_us", "-1\n")
    assert cgroup_cpus(tmp_path / "fs", tmp_path / "self") is None


def test_no_cgroup_files_means_no_limit(tmp_path):
    assert cgroup_cpus(tmp_path, tmp_path / "missing") is None


def test_threads_round_the_quota_to_the_nearest_cpu():
    assert [threads_for(c) for c in (0.3, 1.0, 1.25, 1.5, 2.4, 7.65)] == [1, 1, 1, 2, 2, 8]


def writable_cpu_cgroup():
    v1 = Path("/sys/fs/cgroup/cpu")
    if (v1 / "cpu.cfs_quota_us").is_file() and os.access(v1, os.W_OK):
        return v1
    return None


@pytest.mark.skipif(
    writable_cpu_cgroup() is None or len(os.sched_getaffinity(0)) < 2,
    reason="needs a writable cgroup v1 cpu controller (root in a container) and 2+ cores",
)
def test_cli_threads_fit_a_real_quota():
    """`newslora doctor` run inside a real cgroup limited to one CPU reports one torch thread;
    OMP_NUM_THREADS set by the user wins."""
    group = writable_cpu_cgroup() / f"newslora-test-{uuid.uuid4().hex[:8]}"
    group.mkdir()
    try:
        (group / "cpu.cfs_quota_us").write_text(str(int((group / "cpu.cfs_period_us").read_text())))
        enter = f"echo $$ > {group / 'tasks'} && exec {sys.executable} -m newslora doctor"

        def threads(**env):
            env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"} | env
            out = subprocess.run(["sh", "-c", enter], capture_output=True, text=True, env=env)
            line = next(x for x in out.stdout.splitlines() if x.startswith("torch threads"))
            return line.split(" ok ")[1].strip()

        capped = threads()
        assert capped.startswith("1 of ") and "quota allows 1" in capped
        assert threads(OMP_NUM_THREADS="2").startswith("2 of ")
    finally:
        group.rmdir()


def test_tcmalloc_is_found_in_the_linkers_folders_and_skipped_for_a_reason(tmp_path):
    write(tmp_path / "lib" / TCMALLOC, "")
    assert tcmalloc_path([tmp_path / "none", tmp_path / "lib"]) == tmp_path / "lib" / TCMALLOC
    assert tcmalloc_path([tmp_path / "none"]) is None
    assert tcmalloc_skipped({"NEWSLORA_MALLOC": "default"}) == "NEWSLORA_MALLOC=default"
    assert tcmalloc_skipped({"LD_PRELOAD": "/opt/other.so"}) == "LD_PRELOAD is set"
    copy = {"NEWSLORA_TCMALLOC": str(tmp_path / "lib" / TCMALLOC)}  # outside the folders
    assert tcmalloc_path([tmp_path / "none"], copy) == tmp_path / "lib" / TCMALLOC
    assert tcmalloc_path([tmp_path / "lib"], {"NEWSLORA_TCMALLOC": "/no/such.so"}) is None
    assert "/no/such.so is not a file" in tcmalloc_skipped({"NEWSLORA_TCMALLOC": "/no/such.so"})


needs_tcmalloc = pytest.mark.skipif(
    tcmalloc_path() is None, reason=f"{TCMALLOC} not installed (make install, as root)"
)


def allocator_line(**env):
    """`newslora doctor`'s allocator line, run as a user would (no LD_PRELOAD of ours)."""
    ours = ("LD_PRELOAD", "NEWSLORA_MALLOC", "NEWSLORA_TCMALLOC")
    clean = {k: v for k, v in os.environ.items() if k not in ours}
    cmd = [sys.executable, "-m", "newslora", "doctor"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=clean | env).stdout
    return next(x for x in out.splitlines() if x.startswith("memory allocator"))


@needs_tcmalloc
def test_cli_starts_over_on_tcmalloc_unless_told_not_to():
    """The real command maps tcmalloc into its process (doctor reads /proc/self/maps);
    NEWSLORA_MALLOC=default keeps the system's malloc."""
    assert allocator_line().split()[2:] == ["ok", "tcmalloc", str(tcmalloc_path())]
    assert allocator_line(NEWSLORA_MALLOC="default").split()[2] == "info"
    assert "NEWSLORA_MALLOC=default" in allocator_line(NEWSLORA_MALLOC="default")


@needs_tcmalloc
def test_a_carried_copy_of_tcmalloc_is_taken_from_its_variable(tmp_path):
    """NEWSLORA_TCMALLOC names a copy outside the linker's folders (gpu_session.py carries one
    to a machine without apt): the command starts over on that file; a wrong path is named."""
    copy = tmp_path / "carried" / TCMALLOC
    copy.parent.mkdir()
    shutil.copy(tcmalloc_path(), copy)
    assert allocator_line(NEWSLORA_TCMALLOC=str(copy)).split()[2:] == ["ok", "tcmalloc", str(copy)]
    wrong = allocator_line(NEWSLORA_TCMALLOC=str(tmp_path / "none.so"))
    assert wrong.split()[2] == "info" and f"{tmp_path / 'none.so'} is not a file" in wrong


@needs_tcmalloc
def test_the_allocator_changes_no_number(tiny_run, tiny_bert, tmp_path, pool):
    """Training on the system's malloc gives the same losses and adapter weights, bit for bit,
    as the shared tiny run (trained by the CLI on tcmalloc)."""
    from safetensors.torch import load_file

    plain = train_tiny_run(tiny_bert, tmp_path, pool, env={"NEWSLORA_MALLOC": "default"})
    losses = [
        [h["loss"] for h in json.loads((run / "history.json").read_text()) if "loss" in h]
        for run in (tiny_run, plain)
    ]
    assert losses[0] == losses[1]
    weights = [load_file(r / "adapter" / "adapter_model.safetensors") for r in (tiny_run, plain)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
