"""A GPU session in a few device calls: pack here, carry the parts over, run there, merge back.

The device tool lends a GPU machine for minutes (15 per task, start-up and idle time counted),
carries at most 64 MiB per call and gives the machine back after 30 s idle. That machine has
PyTorch, transformers and peft, but not newslora's other packages, no weight packages and no
network. So everything it needs travels in parts, over calls made back to back (DEVELOPERS.md,
"A GPU session", says which jobs go in which call):

    python benchmarks/gpu_session.py pack      # here: .gpu/ parts (<= 30 MiB) and the call plan
    # on the GPU machine, one call per line of the plan `pack` prints (each carries its parts):
    python3 benchmarks/gpu_session.py stash    # keeps the parts this call brought
    python3 benchmarks/gpu_session.py run accuracy   # then: run merge speed torchrun ...
    python benchmarks/gpu_session.py merge FOLDER   # here: adds the rows that came back

Groups: `base` (wheels of this venv's exact versions for CPython 3.12, the AG News files,
tcmalloc's library where this machine has it),
`minilm` and `mpnet` (weights in bf16, restored to fp32 there: the weights are bf16-rounded).
`run` checks every sha256, then runs the jobs asked for in order within --budget-s, each
writing its rows into $OUT as it finishes, so a job cut short leaves the earlier ones' rows.
"""

import argparse
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from gpu_jobs import GPU, JOBS, SMOKE, job_commands, needs

REPO = Path(__file__).resolve().parents[1]
PACK = REPO / ".gpu"  # git-ignored
# on the GPU machine: parts, groups, runs (NEWSLORA_GPU_HOME: elsewhere, for a dry run on a CPU)
HOME = Path(os.environ.get("NEWSLORA_GPU_HOME", "/root/newslora-gpu"))
PART_BYTES = 10 * 2**20  # small parts fill each call: 4 calls for all three groups, not 5
CALL_BYTES = 60 * 2**20
# installed there with --no-deps, in this venv's versions (the GPU image lacks or differs)
WHEELS = [
    "transformers",
    "peft",
    "datasets",
    "dill",
    "multiprocess",
    "tomli-w",
    "fsspec",
    "regex",
    "huggingface-hub",
    "httpx2",
    "httpcore2",
    "truststore",
    "kernels",
    "tomlkit",
]
CARRIED_TCMALLOC = "lib/libtcmalloc_minimal.so.4"  # in `base`: Debian's, ~165 KiB
DATA_FILES = ["agnews/train_pool.csv", "agnews/test.csv", "competition/test_unlabelled.csv"]


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(2**20):
            digest.update(chunk)
    return digest.hexdigest()


# --- here: pack -------------------------------------------------------------------------------


def download_wheels(folder, python):
    platforms = [f"manylinux_2_{n}_x86_64" for n in (28, 27, 17)] + ["manylinux2014_x86_64"]
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in WHEELS]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
    cmd += ["--python-version", python, "--implementation", "cp", "-d", str(folder)]
    cmd += [arg for p in platforms for arg in ("--platform", p)]
    subprocess.run(cmd + pins, check=True)


def cast_floats(tensors, dtype):
    """The state dict with its floating-point tensors in `dtype` (integer buffers as they are)."""
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}


def bf16_copy(model_dir, dest):
    """The encoder's folder with model.safetensors in bf16 (half the bytes to carry)."""
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(model_dir, dest, ignore=shutil.ignore_patterns("model.safetensors", "onnx*"))
    tensors = load_file(Path(model_dir) / "model.safetensors")
    tensors = cast_floats(tensors, torch.bfloat16)
    save_file(tensors, dest / "model.bf16.safetensors")


def build_groups(work, python):
    from common import DATA, ENCODERS

    from newslora.machine import tcmalloc_path
    from newslora.model import resolve_name

    base = work / "base"
    download_wheels(base / "wheels", python)
    if lib := tcmalloc_path():  # the GPU image has no apt; `run` uses this copy where it loads
        (base / CARRIED_TCMALLOC).parent.mkdir(parents=True)
        shutil.copy(lib, base / CARRIED_TCMALLOC)  # the file, not the linker's symlink
    for name in DATA_FILES:
        (base / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(DATA / name, base / "data" / name)
    mpnet = Path(ENCODERS["mpnet"])
    if not (mpnet / "model.safetensors").is_file():
        subprocess.run(["bash", str(REPO / "benchmarks" / "fetch_mpnet.sh")], check=True)
    bf16_copy(resolve_name(ENCODERS["minilm"]), work / "minilm")
    bf16_copy(mpnet, work / "mpnet")
    return {"base": base, "minilm": work / "minilm", "mpnet": work / "mpnet"}


def split(tar, group):
    parts, data = [], tar.read_bytes()
    for i in range(0, len(data), PART_BYTES):
        part = PACK / f"{group}.tar.part{len(parts) + 1:02d}"
        part.write_bytes(data[i : i + PART_BYTES])
        parts.append({"name": part.name, "bytes": part.stat().st_size, "sha256": sha256(part)})
    return parts


def call_plan(groups):
    """The parts in group order, packed into calls of at most CALL_BYTES."""
    calls, size = [[]], 0
    for group in groups.values():
        for part in group["parts"]:
            if calls[-1] and size + part["bytes"] > CALL_BYTES:
                calls.append([])
                size = 0
            calls[-1].append(part["name"])
            size += part["bytes"]
    return calls


def write_parts(folders, work):
    """Each group folder as a tar, split into parts under PACK, and the manifest; returns it."""
    groups = {}
    for group, folder in folders.items():
        tar = work / f"{group}.tar"
        with tarfile.open(tar, "w:gz") as t:  # bf16 weights gzip to ~80%: one call fewer
            t.add(folder, arcname=group)
        groups[group] = {"sha256": sha256(tar), "parts": split(tar, group)}
    plan = {"groups": groups, "calls": call_plan(groups)}
    (PACK / "manifest.json").write_text(json.dumps(plan, indent=1) + "\n")
    return plan


def pack(args):
    if PACK.exists():
        shutil.rmtree(PACK)
    work = PACK / "build"
    plan = write_parts(build_groups(work, args.python), work)
    shutil.rmtree(work)
    for i, call in enumerate(plan["calls"], 1):
        carry = json.dumps([".gpu/manifest.json", *(f".gpu/{p}" for p in call)])
        print(f"call {i}: carry {carry}")
    print("each call: python3 benchmarks/gpu_session.py stash; the last: ... stash && ... run")


# --- there: stash, assemble, run --------------------------------------------------------------


def manifest():
    return json.loads((PACK / "manifest.json").read_text())


def stash(_args):
    parts = {p["name"]: p for g in manifest()["groups"].values() for p in g["parts"]}
    (HOME / "parts").mkdir(parents=True, exist_ok=True)
    for path in sorted(PACK.glob("*.part*")):
        if sha256(path) != parts[path.name]["sha256"]:
            sys.exit(f"{path.name}: sha256 differs from the manifest (a broken transfer)")
        shutil.copy(path, HOME / "parts" / path.name)
        print(f"stashed {path.name}")
    have = {p.name for p in (HOME / "parts").iterdir()}
    for name, group in manifest()["groups"].items():
        missing = [p["name"] for p in group["parts"] if p["name"] not in have]
        print(f"{name}: {'complete' if not missing else f'{len(missing)} part(s) missing'}")


def assemble(group):
    """Parts -> tar (sha256 checked) -> HOME/group; weights restored to fp32."""
    if (HOME / group / ".done").is_file():
        return HOME / group
    spec = manifest()["groups"][group]
    if not group_complete(group):
        sys.exit(f"{group}: not every part has been stashed (see the plan `pack` printed)")
    tar = HOME / f"{group}.tar"
    with open(tar, "wb") as out:
        for part in spec["parts"]:
            out.write((HOME / "parts" / part["name"]).read_bytes())
    if sha256(tar) != spec["sha256"]:
        sys.exit(f"{group}: the reassembled tar's sha256 differs from the manifest")
    with tarfile.open(tar) as t:
        t.extractall(HOME, filter="data")
    tar.unlink()
    bf16 = HOME / group / "model.bf16.safetensors"
    if bf16.is_file():
        import torch
        from safetensors.torch import load_file, save_file

        tensors = load_file(bf16)
        tensors = cast_floats(tensors, torch.float32)
        save_file(tensors, HOME / group / "model.safetensors")
        bf16.unlink()
        print(f"{group}: {sum(v.numel() for v in tensors.values()):,} weights, fp32", flush=True)
    (HOME / group / ".done").touch()
    return HOME / group


def environment():
    base = assemble("base")
    site = HOME / "site"
    if not site.is_dir():
        wheels = sorted(str(w) for w in (base / "wheels").glob("*.whl"))
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps"]
        subprocess.run([*cmd, "--no-compile", "--target", str(site), *wheels], check=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1", TQDM_MININTERVAL="20", HF_HUB_OFFLINE="1")
    env["HF_DATASETS_OFFLINE"] = "1"
    env["USE_HUB_KERNELS"] = "0"  # no Hub kernel downloads (the seed arm does not import newslora)
    env["PYTHONPATH"] = f"{site}:{REPO / 'src'}"
    env["NEWSLORA_DATA"] = str(base / "data")
    for group in ("minilm", "mpnet"):
        if (HOME / group / ".done").is_file() or group_complete(group):
            env[f"NEWSLORA_{group.upper()}"] = str(assemble(group))
    use_carried_tcmalloc(env, base / CARRIED_TCMALLOC)
    return env


def use_carried_tcmalloc(env, lib):
    """newslora's processes start over on the carried tcmalloc (NEWSLORA_TCMALLOC, as on CPU)
    where it loads on this machine; else they keep glibc's malloc. Either way it is said, and
    step_profile's rows name the allocator (`host`). The seed arm keeps the system's malloc."""
    probe = [sys.executable, "-c", "from newslora.machine import allocator; print(allocator())"]
    if not lib.is_file():
        print("tcmalloc: none carried (pack found none here); glibc's malloc", flush=True)
        return
    done = subprocess.run(probe, env=env | {"LD_PRELOAD": str(lib)}, capture_output=True, text=True)
    if done.stdout.strip() == "tcmalloc" and not done.stderr:
        env["NEWSLORA_TCMALLOC"] = str(lib)
        print(f"tcmalloc: the carried copy loads; newslora runs on it ({lib})", flush=True)
    else:
        why = done.stderr.strip().splitlines()[-1:] or [done.stdout.strip()]
        print(f"tcmalloc: the carried copy does not load ({why[0]}); glibc's malloc", flush=True)


def group_complete(group):
    parts = manifest()["groups"][group]["parts"]
    return all((HOME / "parts" / p["name"]).is_file() for p in parts)


def run_job(job, out, env, deadline, size):
    """The job's commands in turn, output into session.log; its status."""
    if f"NEWSLORA_{needs(job, size).upper()}" not in env:
        return f"skipped: the {needs(job, size)} parts have not been carried"
    for cmd in job_commands(job, out, env, size, HOME):
        left = deadline - time.monotonic()
        if left < 30:
            return "skipped: budget"
        with open(out / "session.log", "a") as log:
            log.write(f"\n$ {' '.join(map(str, cmd))}\n")
            log.flush()
            try:
                cmd = list(map(str, cmd))
                done = subprocess.run(cmd, env=env, stdout=log, stderr=log, timeout=left, cwd=REPO)
            except subprocess.TimeoutExpired:
                return "stopped at the budget"
        if done.returncode != 0:
            return f"failed (exit {done.returncode}); see session.log"
    return "ok"


PREFLIGHT = """import torch, transformers, peft, datasets, pyarrow, newslora.train
print({m.__name__: m.__version__ for m in (torch, transformers, peft, datasets, pyarrow)})
print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device")"""


def run(args):
    out = Path(os.environ.get("OUT", HOME / "out"))
    out.mkdir(parents=True, exist_ok=True)
    deadline, env, record = time.monotonic() + args.budget_s, environment(), []
    sys.path[:0] = env["PYTHONPATH"].split(":")  # job_commands reads accuracy.py's names
    with open(out / "session.log", "a") as log:  # versions first; a broken install stops here
        subprocess.run([sys.executable, "-c", PREFLIGHT], env=env, stdout=log, stderr=log,
                       cwd=REPO, check=True)  # fmt: skip
    for job in args.jobs:
        began = time.monotonic()
        status = run_job(job, out, env, deadline, SMOKE if args.smoke else GPU)
        for table in out.glob("*.md"):  # at most 8 files come back; merge rewrites the tables
            table.unlink()
        record.append({"job": job, "status": status, "s": round(time.monotonic() - began, 1)})
        (out / "session.json").write_text(json.dumps(record, indent=1) + "\n")
        print(record[-1], flush=True)


# --- here: merge what came back ---------------------------------------------------------------


def merge(args):
    from common import RESULTS, RUNS, load_rows, save_rows, write_text
    from merge_agreement import markdown as merge_markdown
    from speed_tables import upsert
    from step_profile import add_rows

    from newslora.files import write_json

    came = Path(args.folder)
    if (came / "accuracy.json").is_file():
        rows = load_rows(RESULTS / "accuracy.json")
        new = [r for r in load_rows(came / "accuracy.json") if r not in rows]
        save_rows(rows + new, RESULTS / "accuracy.json")
        print(f"accuracy.json: {len(new)} row(s) added")
    for row in load_rows(came / "speed.json"):
        upsert(RESULTS / "speed.json", row)
        print(f"speed.json: {row['arm']} {row['encoder']} rows={row['rows']} L={row['max_length']}")
    if (came / "merge.json").is_file():
        new = load_rows(came / "merge.json")
        keys = {(r["run"], r["device"], r["precision"]) for r in new}
        rows = [r for r in load_rows(RESULTS / "merge_agreement.json")
                if (r["run"], r["device"], r["precision"]) not in keys] + new  # fmt: skip
        write_json(RESULTS / "merge_agreement.json", rows)
        write_text(RESULTS / "merge_agreement.md", merge_markdown(rows))
        print(f"merge_agreement.json: {len(new)} row(s)")
    if (came / "step_profile.json").is_file():
        new = load_rows(came / "step_profile.json")
        add_rows(RESULTS / "step_profile.json", new)
        print(f"step_profile.json: {len(new)} row(s)")
    if (came / "torchrun_summary.json").is_file():
        shutil.copy(came / "torchrun_summary.json", RESULTS / "torchrun_gpu.json")
    for tar in came.glob("*.tar.gz"):
        with tarfile.open(tar) as t:
            t.extractall(RUNS, filter="data")
        print(f"run folder: {RUNS / tar.name.removesuffix('.tar.gz')}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="here: build .gpu/ (parts + manifest) and print the plan")
    p.add_argument("--python", default="3.12", help="the GPU machine's Python, for the wheels")
    sub.add_parser("stash", help="there: keep the parts this call carried")
    p = sub.add_parser("run", help="there: assemble, install, run the jobs into $OUT")
    p.add_argument("jobs", nargs="+", choices=JOBS)
    p.add_argument("--budget-s", type=float, default=540, help="no job runs on past this")
    p.add_argument("--smoke", action="store_true", help="the jobs, small, on a CPU: a dry run")
    p = sub.add_parser("merge", help="here: add the rows a run brought back to results/")
    p.add_argument("folder", help="the call's files_at folder")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "benchmarks"))
    {"pack": pack, "stash": stash, "run": run, "merge": merge}[args.command](args)


if __name__ == "__main__":
    main()
