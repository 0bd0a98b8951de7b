"""The GPU session's transport: groups packed into parts, the call plan, stash and reassembly
with their checksums, and the weights' bf16 round trip. Real files and real safetensors; the
part size is made small so that one group spans several parts."""

import importlib
import json
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import REPO
from safetensors.torch import load_file, save_file

from newslora.machine import TCMALLOC, tcmalloc_path

sys.path.insert(0, str(REPO / "benchmarks"))
gpu = importlib.import_module("gpu_session")
sys.path.remove(str(REPO / "benchmarks"))


@pytest.fixture
def session(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu, "PACK", tmp_path / "pack")
    monkeypatch.setattr(gpu, "HOME", tmp_path / "home")
    monkeypatch.setattr(gpu, "PART_BYTES", 10_000)
    monkeypatch.setattr(gpu, "CALL_BYTES", 25_000)
    gpu.PACK.mkdir()
    return tmp_path


def weights_group(folder):
    """An encoder folder as pack writes it: config + bf16 weights."""
    torch.manual_seed(0)
    tensors = {"w": torch.randn(64, 256), "ids": torch.arange(10)}
    folder.mkdir()
    (folder / "config.json").write_text('{"hidden_size": 256}')
    save_file(gpu.cast_floats(tensors, torch.bfloat16), folder / "model.bf16.safetensors")
    return tensors


def test_parts_round_trip_and_weights_come_back_fp32(session):
    base = session / "src" / "base"
    (base / "data").mkdir(parents=True)
    (base / "data" / "rows.csv").write_text("label,text\n" + "1,some news\n" * 3000)
    original = weights_group(session / "src" / "enc")
    plan = gpu.write_parts({"base": base, "enc": session / "src" / "enc"}, session)
    parts = [p for g in plan["groups"].values() for p in g["parts"]]
    assert len(plan["groups"]["enc"]["parts"]) >= 2  # 32 KB of bf16, gzipped, 10,000 a part
    assert all(sum(next(p["bytes"] for p in parts if p["name"] == n) for n in call) <= 25_000
               for call in plan["calls"])  # fmt: skip
    assert [n for call in plan["calls"] for n in call] == [p["name"] for p in parts]

    gpu.stash(None)
    assert gpu.group_complete("enc") and gpu.group_complete("base")
    assert (gpu.assemble("base") / "data" / "rows.csv").read_text().count("some news") == 3000
    enc = gpu.assemble("enc")
    restored = load_file(enc / "model.safetensors")
    assert restored["w"].dtype == torch.float32 and restored["ids"].dtype == torch.int64
    assert torch.equal(restored["w"], original["w"].to(torch.bfloat16).float())
    assert torch.equal(restored["ids"], original["ids"])
    assert not (enc / "model.bf16.safetensors").exists()
    assert json.loads((enc / "config.json").read_text()) == {"hidden_size": 256}


def test_a_damaged_part_is_refused_by_name(session):
    weights_group(session / "enc")
    plan = gpu.write_parts({"enc": session / "enc"}, session)
    name = plan["groups"]["enc"]["parts"][1]["name"]
    damaged = bytearray((gpu.PACK / name).read_bytes())
    damaged[100] ^= 0xFF
    (gpu.PACK / name).write_bytes(bytes(damaged))
    with pytest.raises(SystemExit, match=f"{name}: sha256 differs"):
        gpu.stash(None)


def test_a_group_with_a_part_missing_is_not_assembled(session):
    weights_group(session / "enc")
    plan = gpu.write_parts({"enc": session / "enc"}, session)
    (gpu.PACK / plan["groups"]["enc"]["parts"][-1]["name"]).unlink()
    gpu.stash(None)
    assert not gpu.group_complete("enc")
    with pytest.raises(SystemExit, match="enc: not every part has been stashed"):
        gpu.assemble("enc")


def test_the_cli_lists_its_jobs():
    done = subprocess.run(
        [sys.executable, REPO / "benchmarks" / "gpu_session.py", "run", "--help"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    for job in ("accuracy", "merge", "speed", "torchrun"):
        assert job in done.stdout


@pytest.mark.skipif(tcmalloc_path() is None, reason="tcmalloc not installed (make install)")
def test_the_carried_tcmalloc_is_used_only_where_it_loads(tmp_path, capsys):
    """`run` hands the carried copy to newslora's processes where the dynamic linker loads it,
    and keeps glibc's malloc where it does not (here: a file that is no library)."""
    lib = tmp_path / "lib" / TCMALLOC
    lib.parent.mkdir()
    shutil.copy(tcmalloc_path(), lib)
    env = {"PATH": "/usr/bin:/bin"}
    gpu.use_carried_tcmalloc(env, lib)
    assert env["NEWSLORA_TCMALLOC"] == str(lib)
    lib.write_bytes(b"not a shared library")
    env = {"PATH": "/usr/bin:/bin"}
    gpu.use_carried_tcmalloc(env, lib)
    assert "NEWSLORA_TCMALLOC" not in env
    assert "cannot be preloaded" in capsys.readouterr().out
