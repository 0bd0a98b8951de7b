"""What newslora's process takes from the machine before torch starts: the cores a
container's CPU quota allows, and the memory allocator.

torch sizes its thread pool to the cores it sees. In a container limited by a CPU quota
(`docker run --cpus 2`, a Kubernetes CPU limit) it sees every core of the host, so its threads
take turns on the quota and the kernel stops them all at each period's end (CFS throttling).

A training step allocates and frees thousands of tensors. gperftools' tcmalloc, which
PyTorch's performance tuning guide and AMD's ZenDNN guide suggest for CPUs, serves them faster
than glibc's malloc.
"""

import math
import os
import sys
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
TCMALLOC = "libtcmalloc_minimal.so.4"
# what `make install` installs as root (libtcmalloc-minimal4t64 since Debian 13, Ubuntu 24.04)
TCMALLOC_PACKAGE = "libtcmalloc-minimal4"
# where it is looked for: the folders the dynamic linker searches, and a conda environment's
LIBRARY_DIRS = (
    "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
    "/usr/local/lib", f"{sys.prefix}/lib",
)  # fmt: skip


def cgroup_cpus(root=CGROUP_ROOT, membership=Path("/proc/self/cgroup")):
    """CPUs this process's cgroup quota allows (the tightest along its cgroup path, v2 `cpu.max`
    or v1 `cpu.cfs_quota_us`), or None where nothing limits it or cgroups cannot be read."""
    root, limits = Path(root), []
    try:
        lines = Path(membership).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.count(":") < 2:  # not "id:controllers:path": nothing to read
            continue
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2: "0::/path"
            limits += [_v2_limit(d) for d in _chain(root, path)]
        elif "cpu" in controllers.split(","):  # cgroup v1: "4:cpu,cpuacct:/path"
            mount = next((m for m in (root / controllers, root / "cpu") if m.is_dir()), None)
            limits += [_v1_limit(d) for d in _chain(mount, path)] if mount else []
    limits = [x for x in limits if x is not None]
    return min(limits) if limits else None


def _chain(mount, path):
    """The cgroup's folder and its parents up to `mount`. In a container without its own cgroup
    namespace the host's path does not exist under the mount: the mount is then the cgroup."""
    folder = mount / path.lstrip("/")
    if not folder.is_dir():
        return [mount]
    return [folder, *(p for p in folder.parents if p.is_relative_to(mount))]


def _v2_limit(folder):
    try:
        quota, period = (folder / "cpu.max").read_text().split()
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def _v1_limit(folder):
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 else quota / period


def threads_for(cpus):
    """Threads for a quota of `cpus`: the nearest whole CPU, halves up, at least one. On 2 cores
    1 thread trained 1.37x as fast as 2 under a 1-CPU quota and 1.09x under 1.25, and 2
    threads 1.21x as fast as 1 under 1.5 (benchmarks/README.md, "Threads and a CPU quota")."""
    return max(1, math.floor(cpus + 0.5))


def fit_threads():
    """Size torch's thread pool to the cgroup's CPU quota. Its OpenMP pool reads
    OMP_NUM_THREADS when torch starts, so this runs before torch is imported; a count the user
    set is left alone."""
    cpus = cgroup_cpus()
    if cpus is not None and "OMP_NUM_THREADS" not in os.environ:
        usable = threads_for(cpus)
        if usable < len(os.sched_getaffinity(0)):
            os.environ["OMP_NUM_THREADS"] = str(usable)


def tcmalloc_path(dirs=LIBRARY_DIRS, environ=os.environ):
    """tcmalloc's shared library, or None where it is not installed: $NEWSLORA_TCMALLOC where
    set (a copy outside the linker's folders, e.g. one carried to a machine without apt),
    else the first of `dirs` that has it."""
    if given := environ.get("NEWSLORA_TCMALLOC"):
        return Path(given) if Path(given).is_file() else None
    return next((p for d in dirs if (p := Path(d) / TCMALLOC).is_file()), None)


def allocator():
    """The allocator this process runs on: "tcmalloc" when it is preloaded, else "default"."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "default"
    return "tcmalloc" if "libtcmalloc" in maps else "default"


def tcmalloc_skipped(environ=os.environ):
    """Why this process would not start over on tcmalloc, or None."""
    if environ.get("NEWSLORA_MALLOC", "tcmalloc") != "tcmalloc":
        return f"NEWSLORA_MALLOC={environ['NEWSLORA_MALLOC']}"
    if "LD_PRELOAD" in environ:
        return "LD_PRELOAD is set"
    if environ.get("NEWSLORA_TCMALLOC") and tcmalloc_path(environ=environ) is None:
        return f"NEWSLORA_TCMALLOC={environ['NEWSLORA_TCMALLOC']} is not a file"
    if not sys.platform.startswith("linux"):
        return "not on Linux"
    if not sys.executable:
        return "no Python executable to start again"
    if tcmalloc_path(environ=environ) is None:
        return "not installed"
    return None


def preload_tcmalloc(environ=os.environ):
    """Run this command again with tcmalloc as its allocator. An allocator must be in place
    before the process's first malloc, so the process starts over (os.execve) with LD_PRELOAD
    set, which also stops a second start. On 2 CPU cores training ran 1.09-1.20x as fast
    (benchmarks/README.md, "tcmalloc"). A LD_PRELOAD the user set, NEWSLORA_MALLOC=default, or
    a machine without the library leave the process as it is."""
    if tcmalloc_skipped(environ):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    argv = [sys.executable, *sys.orig_argv[1:]]
    os.execve(sys.executable, argv, {**environ, "LD_PRELOAD": str(tcmalloc_path(environ=environ))})


def fit_process(restart):
    """Everything above, in order, before torch is imported: start over on tcmalloc when
    `restart` (a command line; never a process that imported newslora, such as a test run),
    then size torch's threads to the CPU quota."""
    if restart:
        preload_tcmalloc()
    fit_threads()
