"""env.gpu_memory: total and free memory per GPU, and memory other processes already hold."""
from __future__ import annotations

from typing import Any

from cvdoctor.finding import passed, skipped, warned
from cvdoctor.registry import register
from cvdoctor.text import human_bytes


TITLE = "GPU memory"
# Warn when other processes hold more than this share of a GPU: training would get the rest.
BUSY_SHARE = 0.5


def _gib(n: int | None) -> str:
    return human_bytes(n, "GiB", suffix=False)


def device_memory(gpu: dict, t: dict) -> list[dict[str, Any]]:
    """One row per GPU: total, free, and what other processes hold (None when unknown).

    NVML (the "gpu" facts) is preferred: it sees every process. torch's mem_get_info, measured
    inside cvdoctor's probe, fills in where NVML has no memory numbers (unified memory on GB10
    and Jetson reports "Not Supported").
    """
    nvml = gpu.get("devices") or []
    tdev = t.get("devices") or []
    base = nvml or tdev
    own = set(gpu.get("own_pids") or [])
    rows = []
    for i, d in enumerate(base):
        td = tdev[i] if nvml and len(tdev) == len(nvml) else (d if not nvml else {})
        total = d.get("total_memory") or td.get("total_memory")
        free = d.get("free_memory") if d.get("free_memory") is not None else td.get("free_memory")
        row: dict[str, Any] = {"index": d.get("index", i), "name": d.get("name") or td.get("name"),
                               "total": total, "free": free, "others": None, "processes": None,
                               "unified": bool(td.get("integrated") or d.get("integrated")
                                               or (nvml and d.get("total_memory") is None))}
        procs = d.get("processes")
        if procs is not None:
            others = [p for p in procs if p.get("pid") not in own]
            row["processes"] = others
            if all(isinstance(p.get("used_memory"), int) for p in others):
                row["others"] = sum(p["used_memory"] for p in others)
        if row["others"] is None and total and free is not None and d.get("used_memory") is not None:
            row["others"] = d["used_memory"]  # NVML's used memory, processes unknown
        elif row["others"] is None and total and free is not None and not nvml:
            row["others"] = total - free  # torch's view: includes the probe's own context
        rows.append(row)
    return rows


@register("env.gpu_memory", order=40, title=TITLE,
          recipes=["gpu-memory-in-use"], needs=["gpu", "torch"])
def check(ctx):
    """Total and free memory per GPU (NVML first; torch's numbers where NVML has none, as on
    unified-memory GB10 and Jetson), and memory other processes already hold.

    Warns (gpu-memory-in-use) when other processes hold more than half of a GPU (cvdoctor's own
    probes are not counted); fine when those jobs are yours. Skips without a GPU."""
    gpu = ctx.fact("gpu")
    t = ctx.optional_fact("torch")
    rows = device_memory(gpu, t)
    if not rows and gpu.get("present"):
        return skipped(TITLE, f"a GPU is present ({gpu.get('source')}) but neither NVML nor "
                       "torch could report its memory; see env.cuda")
    if not rows:
        return skipped(TITLE, "no GPU found, so there is no GPU memory to measure")
    if all(r["total"] is None for r in rows):
        return skipped(TITLE, f"{len(rows)} GPU(s) found but neither NVML nor torch reported "
                       "their memory", devices=rows)
    busy, parts = [], []
    for r in rows:
        label = f"GPU {r['index']} {r['name']}"
        if r["total"] is None:
            parts.append(f"{label}: memory not reported")
            continue
        text = f"{label}: {_gib(r['free'])} of {_gib(r['total'])} GiB free"
        if r["unified"]:
            text += " (unified memory, shared with the CPU)"
        if r["others"] is not None and r["others"] > BUSY_SHARE * r["total"]:
            procs = r["processes"] or []
            who = (f" by {len(procs)} other process(es) (pid "
                   + ", ".join(str(p["pid"]) for p in procs[:5]) + ")") if procs else ""
            busy.append(f"{label}: {_gib(r['others'])} of {_gib(r['total'])} GiB already in "
                        f"use{who}, {_gib(r['free'])} GiB free")
        parts.append(text)
    if busy:
        return warned(TITLE, "; ".join(busy) + " (fine if those jobs are yours and expected)",
                      "free the GPU (stop the other jobs, see nvidia-smi) or pick an idle one "
                      "with CUDA_VISIBLE_DEVICES", "gpu-memory-in-use", devices=rows)
    return passed(TITLE, "; ".join(parts), devices=rows)
