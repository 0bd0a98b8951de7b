"""Atomic writes: an output either appears whole or the previous one stays untouched."""

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from newslora import NewsloraError


def writable_dir(path):
    """Make the folder `path` and check that a file can be written in it."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError as e:
        raise NewsloraError(f"{path}: cannot write there ({e.strerror or e})") from None


def not_an_input(output, *inputs):
    """Stop before an output replaces a file the command reads (`predict in.csv in.csv`)."""
    for spec in inputs:
        if spec and Path(spec).exists() and Path(spec).resolve() == Path(output).resolve():
            raise NewsloraError(f"{output}: is the input file too; write to another path")


@contextmanager
def atomic_path(path, is_dir=False):
    """Yield a temporary sibling of `path`; move it over `path` only if the block succeeds."""
    path = Path(path)
    if path.exists() and path.is_dir() != is_dir:  # never a file for a folder, or the reverse
        want = "a folder" if is_dir else "a file"
        raise NewsloraError(f"{path}: exists and is not {want}; give {want}'s path")
    writable_dir(path.parent)  # a read-only or missing place: the user's path, not a bug
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        _make_readable(tmp)
        if is_dir and path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()


def _make_readable(path):
    """mkstemp/mkdtemp create private (0600/0700) entries; outputs get the usual umask modes."""
    umask = os.umask(0)
    os.umask(umask)
    for p in [path, *(path.rglob("*") if path.is_dir() else [])]:
        p.chmod((0o777 if p.is_dir() else 0o666) & ~umask)


def read_json(path):
    """A JSON file a run or an export wrote; None where it is missing. A damaged one (cut
    short, edited by hand) stops in one line naming it, not deep inside whatever reads it."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        detail = f"{e.msg}, line {e.lineno}" if isinstance(e, json.JSONDecodeError) else e.reason
        raise NewsloraError(f"{path}: damaged, not valid JSON ({detail})") from None


def write_json(path, obj):
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")


def not_a_run(run_dir, missing):
    """The error for a folder that is not a finished run; one whose training stopped before
    the end (checkpoints, no adapter) says how to go on."""
    run_dir = Path(run_dir)
    if (run_dir / "checkpoints").is_dir() and not (run_dir / "adapter").is_dir():
        why = "its training stopped before the end: `newslora train` with --resume continues it"
    else:
        why = f"no {missing}"
    return NewsloraError(f"{run_dir}: not a finished newslora run ({why})")
