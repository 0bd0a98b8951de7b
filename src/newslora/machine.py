"""The cores newslora may use: a container's CPU quota, which torch does not read.

torch sizes its thread pool to the cores it sees. In a container limited by a CPU quota
(`docker run --cpus 2`, a Kubernetes CPU limit) it sees every core of the host, so its threads
take turns on the quota and the kernel stops them all at each period's end (CFS throttling).
"""

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


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
