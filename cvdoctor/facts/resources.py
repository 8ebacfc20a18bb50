"""Provider "resources": effective CPUs, memory, free disk where data and caches live, open files.

"Effective" means what this process may really use: the CPU affinity mask, the cgroup CPU quota
(v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``/``cpu.cfs_period_us``) and the memory limit of a
container, not the host's totals that ``os.cpu_count()`` and ``free`` report.
"""
from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Mapping

from cvdoctor.cachedirs import cache_paths
from cvdoctor.factgraph import fact

_NO_LIMIT = 1 << 60  # cgroup v1 writes ~2**63 for "no memory limit"


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _cgroup_dirs(root: Path, controller: str) -> list[Path]:
    """Where this process's cgroup files for `controller` may be: its own group first, then the
    mount root (inside a container's cgroup namespace they are the same)."""
    dirs: list[Path] = []
    text = _read(root / "proc/self/cgroup") or ""
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, group = parts
        group = group.lstrip("/")
        if controllers == "":  # cgroup v2 unified hierarchy
            dirs.append(root / "sys/fs/cgroup" / group)
        elif controller in controllers.split(","):
            for mount in (controllers, controller, "cpu,cpuacct"):
                dirs.append(root / "sys/fs/cgroup" / mount / group)
    dirs += [root / "sys/fs/cgroup", root / "sys/fs/cgroup" / controller,
             root / "sys/fs/cgroup/cpu,cpuacct"]
    return list(dict.fromkeys(dirs))


def cgroup_cpu_quota(root: Path = Path("/")) -> float | None:
    """CPUs allowed by the cgroup quota (e.g. 2.5), None when there is no quota."""
    for d in _cgroup_dirs(root, "cpu"):
        v2 = _read(d / "cpu.max")
        if v2:
            quota, _, period = v2.partition(" ")
            if quota == "max":
                return None
            try:
                return int(quota) / int(period or 100000)
            except ValueError:
                return None
        quota_us, period_us = _read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us")
        if quota_us is not None and period_us:
            try:
                q, p = int(quota_us), int(period_us)
            except ValueError:
                return None
            return None if q <= 0 or p <= 0 else q / p
    return None


def cgroup_memory(root: Path = Path("/")) -> dict:
    """{'limit': bytes|None, 'usage': bytes|None} from cgroup v2 memory.max or v1 limit_in_bytes."""
    for d in _cgroup_dirs(root, "memory"):
        for limit_name, usage_name in (("memory.max", "memory.current"),
                                       ("memory.limit_in_bytes", "memory.usage_in_bytes")):
            limit = _read(d / limit_name)
            if limit is None:
                continue
            usage = _read(d / usage_name)
            value = None if limit == "max" or not limit.isdigit() or int(limit) >= _NO_LIMIT \
                else int(limit)
            return {"limit": value, "usage": int(usage) if usage and usage.isdigit() else None,
                    "file": str(d / limit_name)}
    return {"limit": None, "usage": None, "file": None}


def effective_cpus(root: Path = Path("/")) -> dict:
    count = os.cpu_count() or 1
    try:
        affinity: int | None = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    quota = cgroup_cpu_quota(root)
    candidates = [count] + ([affinity] if affinity else []) + \
        ([max(1, math.ceil(quota))] if quota else [])
    effective = min(candidates)
    return {"cpu_count": count, "affinity": affinity, "cgroup_quota": quota,
            "effective": effective, "suggested_num_workers": suggested_workers(effective)}


def suggested_workers(effective: int) -> int:
    """One worker per usable CPU, keeping one for the training loop once there are more than
    two, and no more than 8: past that, workers mostly add memory and start-up time."""
    return max(1, min(8, effective - 1 if effective > 2 else effective))


def data_and_cache_dirs(cwd: Path, environ: Mapping[str, str] = os.environ) -> dict[str, Path]:
    paths = cache_paths(environ)
    return {"cwd": cwd, "cache": paths["cache"], "torch_home": paths["torch_home"],
            "hf_cache": paths["hf_hub_cache"]}


def _existing(path: Path) -> Path | None:
    """The path itself or its nearest existing ancestor: where a download would land."""
    for p in (path, *path.parents):
        if p.exists():
            return p
    return None


def disk_space(dirs: dict[str, Path]) -> list[dict]:
    """Free space per filesystem; places sharing one filesystem are reported together."""
    by_device: dict[int, dict] = {}
    for role, path in dirs.items():
        where = _existing(path)
        if where is None:
            continue
        try:
            dev = where.stat().st_dev
            usage = shutil.disk_usage(where)
        except OSError:
            continue
        entry = by_device.setdefault(dev, {"paths": [], "roles": [], "free": usage.free,
                                           "total": usage.total, "measured_at": str(where)})
        entry["roles"].append(role)
        entry["paths"].append(str(path))
    return list(by_device.values())


def open_files_limit() -> dict:
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return {"soft": None, "hard": None}
    infinity = getattr(resource, "RLIM_INFINITY", -1)
    return {"soft": None if soft == infinity else soft, "hard": None if hard == infinity else hard}


def memory() -> dict:
    import psutil

    vm = psutil.virtual_memory()
    cg = cgroup_memory()
    total, available = vm.total, vm.available
    if cg["limit"] is not None and cg["limit"] < total:
        total = cg["limit"]
        if cg["usage"] is not None:
            available = min(available, max(0, cg["limit"] - cg["usage"]))
    return {"host_total": vm.total, "host_available": vm.available, "cgroup_limit": cg["limit"],
            "cgroup_usage": cg["usage"], "total": total, "available": available}


def gather_resources(cwd: Path, environ: Mapping[str, str] = os.environ) -> dict:
    return {"cpus": effective_cpus(), "memory": memory(),
            "disk": disk_space(data_and_cache_dirs(cwd, environ)),
            "open_files": open_files_limit()}


@fact("resources")
def gather(ctx) -> dict:
    return gather_resources(Path(ctx.option("cwd") or Path.cwd()))
