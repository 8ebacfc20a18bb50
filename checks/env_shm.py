"""env.shm: /dev/shm is large enough for DataLoader workers; --deep pushes real batches
through it."""
from __future__ import annotations

from cvdoctor.text import human_bytes
from cvdoctor.finding import failed, passed, skipped, warned
from cvdoctor.probes import describe_failure
from cvdoctor.registry import register

TITLE = "Shared memory (/dev/shm)"
RECIPE = "shm-docker-ipc"


def _fix(need: int, in_container: bool) -> str:
    size = f"{max(1, -(-need // 2**30))}g"
    if in_container:
        return (f"restart the container with --ipc=host (or --shm-size={size}): "
                "docker run --ipc=host ...")
    return f"enlarge /dev/shm: sudo mount -o remount,size={size} /dev/shm"


def _probe_finding(s: dict, base: dict, in_container: bool, where: str) -> object:
    probe = s["probe"] or {}
    meta = probe.get("_probe", {})
    need = s["estimate"]["need_bytes"]
    evidence = {**base, "probe": {k: v for k, v in probe.items() if k != "_probe"},
                "probe_process": meta}
    if probe.get("torch") is False:
        return None  # torch does not import: env.torch says why; the static answer stands
    if probe.get("ok"):
        return passed(TITLE, f"{where}; --deep: {probe['workers']} DataLoader workers held "
                      f"{human_bytes(probe['held_bytes'])} of batches in shared memory without "
                      "error", **evidence)
    moved = (f"{probe.get('batches_received', 0)} of {probe.get('batches_requested', '?')} "
             f"batches of {human_bytes(probe.get('batch_bytes'))} arrived")
    if "ok" not in probe:  # the probe process itself died or hung
        error = describe_failure(meta, "the DataLoader probe")
        moved = "no result came back"
    else:
        error = probe.get("error_line") or probe.get("error") or "unknown error"
        if "timed out" in (probe.get("error") or ""):
            error += " (a worker logged this; the loader then hung until its timeout)"
    return failed(TITLE, f"{where}; --deep: DataLoader workers failed on shared memory ({moved}): "
                  f"{error}", _fix(need, in_container), RECIPE, **evidence)


@register("env.shm", order=50, title=TITLE, recipes=[RECIPE], needs=["shm", "platform"])
def check(ctx):
    """Size and free space of /dev/shm against what DataLoader workers need (2 workers x
    prefetch_factor 2 x 64-image 224x224 batches, scaled to the usable CPUs); with --deep, real
    DataLoader workers push that much through shared memory in a subprocess.

    Fails (shm-docker-ipc) inside a container whose /dev/shm is too small (Docker's default is
    64 MiB) or when the --deep probe fails, hangs or dies on a bus error; outside containers a
    too-small /dev/shm warns. Skips on systems without /dev/shm."""
    s = ctx.fact("shm")
    p = ctx.fact("platform")
    system = s.get("system") or p.get("system")
    if system and system != "Linux":
        return skipped(TITLE, f"{system} has no /dev/shm: DataLoader workers share memory "
                       "another way there", system=system)
    container = p.get("ngc") and "NGC PyTorch" or p.get("container")
    # "an NGC PyTorch container", "an lxc container", "a docker container", "an unknown one"
    article = "an" if str(container)[:1].lower() in "aeiou" or str(container).startswith(
        ("NGC", "lxc")) else "a"
    in_container = bool(container)
    est = s["estimate"]
    need = est["need_bytes"]
    base = {"path": s.get("path"), "exists": s.get("exists"), "mounted": s.get("mounted"),
            "fstype": s.get("fstype"), "size_bytes": s.get("size_bytes"),
            "free_bytes": s.get("free_bytes"), "container": container, "need_bytes": need,
            "estimate": est["assumption"]}
    inside = f" inside {article} {container} container" if in_container else ""
    if not s.get("exists"):
        message = f"{s.get('path')} does not exist{inside}; DataLoader workers cannot share batches"
        make = failed if in_container else warned
        return make(TITLE, message, _fix(need, in_container), RECIPE, **base)
    size, free = s.get("size_bytes") or 0, s.get("free_bytes") or 0
    where = f"{s['path']} is {human_bytes(size)} ({human_bytes(free)} free){inside}"
    need_text = (f"{est['workers']} DataLoader workers with prefetch_factor "
                 f"{est['prefetch_factor']} and 64-image 224x224 batches need about "
                 f"{human_bytes(need)}")
    static = None
    if free < need:
        make = failed if in_container else warned
        tail = (" (Docker's default --shm-size is 64 MiB)" if in_container and size <= 64 * 2**20
                else "")
        static = make(TITLE, f"{where}; {need_text}{tail}", _fix(need, in_container), RECIPE,
                      **base)
    if s.get("probe") is not None:
        deep = _probe_finding(s, base, in_container, where)
        if deep is not None and (static is None or deep.status == "fail"):
            if static is not None:
                deep.message += f"; {need_text}"
            return deep
    return static or passed(TITLE, f"{where}; {need_text}", **base)
