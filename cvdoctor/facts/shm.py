"""Provider "shm": /dev/shm size and free space, what DataLoader workers need, and (--deep) a real
DataLoader run through shared memory in a subprocess.

DataLoader workers hand each batch to the training process through shared memory: with
``num_workers=W`` and ``prefetch_factor=P`` up to W x P batches sit in /dev/shm at once. The
estimate below uses a typical image batch and doubles it for the batch in use, pinned-memory
copies and other users of /dev/shm. It is an order of magnitude, stated in the evidence, not a
promise: the --deep probe is the measurement.
"""
from __future__ import annotations

import os
from pathlib import Path

from cvdoctor.factgraph import fact
from cvdoctor.facts.resources import effective_cpus

SHM_PATH = "/dev/shm"
PREFETCH_FACTOR = 2  # torch.utils.data.DataLoader's default
BATCH_SHAPE = (64, 3, 224, 224)  # 64 RGB 224x224 images, float32: a typical ImageNet-style batch
BATCH_BYTES = 64 * 3 * 224 * 224 * 4  # 38,535,168 bytes = 36.8 MiB
HEADROOM = 2.0
PROBE_WORKERS = 2
PROBE_BATCH_BYTES = 24 * 1024 * 1024  # big enough that Docker's 64 MiB holds two at most
PROBE_MAX_BYTES = 1024 * 1024 * 1024
# A batch takes milliseconds to make; a worker that cannot put it into /dev/shm logs the error
# and the loader waits forever, so a missing batch after this long is the failure.
PROBE_BATCH_TIMEOUT_S = 10


def shm_need(workers: int) -> dict:
    need = int(workers * PREFETCH_FACTOR * BATCH_BYTES * HEADROOM)
    return {"workers": workers, "prefetch_factor": PREFETCH_FACTOR,
            "batch": "64 x 3 x 224 x 224 float32", "batch_bytes": BATCH_BYTES,
            "headroom": HEADROOM, "need_bytes": need,
            "assumption": (f"{workers} workers x prefetch_factor {PREFETCH_FACTOR} x a batch of "
                           f"64 RGB 224x224 float32 images ({BATCH_BYTES / 2**20:.1f} MiB) x "
                           f"{HEADROOM:g} headroom")}


def _mount(path: str, mountinfo: str) -> dict | None:
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) >= 5 and fields[4] == path:
            rfields = right.split()
            return {"fstype": rfields[0] if rfields else None,
                    "options": rfields[2] if len(rfields) > 2 else None}
    return None


def measure_shm(path: str = SHM_PATH) -> dict:
    info: dict = {"path": path, "exists": os.path.isdir(path), "mounted": False, "fstype": None,
                  "size_bytes": None, "free_bytes": None, "used_bytes": None}
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    except OSError:
        mountinfo = ""
    mount = _mount(path, mountinfo)
    if mount:
        info.update(mounted=True, fstype=mount["fstype"])
    if not info["exists"]:
        return info
    try:
        st = os.statvfs(path)
    except OSError as exc:
        info["error"] = f"{type(exc).__name__}: {exc}"
        return info
    size = st.f_blocks * st.f_frsize
    info.update(size_bytes=size, free_bytes=st.f_bavail * st.f_frsize,
                used_bytes=(st.f_blocks - st.f_bfree) * st.f_frsize)
    return info


def run_shm_probe(need_bytes: int, timeout_s: float) -> dict:
    """Real DataLoader workers pushing ~need_bytes through /dev/shm at once (held, not freed)."""
    from cvdoctor.probes import run_probe

    target = min(max(need_bytes, 4 * PROBE_BATCH_BYTES), PROBE_MAX_BYTES)
    batches = -(-target // PROBE_BATCH_BYTES)
    return run_probe("shm_probe", ["--workers", str(PROBE_WORKERS), "--batches", str(batches),
                                   "--batch-bytes", str(PROBE_BATCH_BYTES),
                                   "--timeout", str(PROBE_BATCH_TIMEOUT_S)],
                     timeout_s=timeout_s)


def gather_shm(deep: bool = False, timeout_s: float = 60.0, path: str = SHM_PATH) -> dict:
    import platform

    cpus = effective_cpus()
    facts = {"system": platform.system(), **measure_shm(path),
             "estimate": shm_need(cpus["suggested_num_workers"]), "probe": None}
    if deep and facts["exists"]:
        facts["probe"] = run_shm_probe(facts["estimate"]["need_bytes"], timeout_s)
    return facts


@fact("shm")
def gather(ctx) -> dict:
    return gather_shm(deep=ctx.option("deep", False), timeout_s=ctx.option("timeout_s", 60.0))
