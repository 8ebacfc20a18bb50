"""env.resources: CPUs, memory, disk and open-files limit as this process really gets them."""
from __future__ import annotations

from cvdoctor.text import human_bytes
from cvdoctor.finding import passed, skipped, warned
from cvdoctor.registry import register

TITLE = "Resources"
# Thresholds, each stated in the message that uses it.
MIN_CPUS = 4  # below this, decoding + augmentation in workers usually starves the model
MIN_AVAILABLE_MEMORY = 4 * 2**30  # workers each copy the dataset object and hold batches
MIN_FREE_DISK = 10 * 2**30  # SAM ViT-H alone is 2.4 GiB; a dataset plus checkpoints needs more
# DataLoader workers with the file_descriptor strategy keep one descriptor per shared tensor in
# flight (plus the libraries' own); file_system passes names instead of descriptors.
MIN_OPEN_FILES = {"file_descriptor": 1024, "file_system": 256}
LINUX_DEFAULT_STRATEGY = "file_descriptor"


def cpu_finding(c: dict):
    eff, workers = c.get("effective"), c.get("suggested_num_workers")
    limits = [f"{c.get('cpu_count')} CPUs in the machine"]
    if c.get("affinity") and c["affinity"] != c.get("cpu_count"):
        limits.append(f"affinity allows {c['affinity']}")
    if c.get("cgroup_quota"):
        limits.append(f"cgroup quota {c['cgroup_quota']:g} CPUs")
    measured = f"{eff} usable CPUs ({', '.join(limits)}); suggested num_workers={workers}"
    evidence = {"cpus": c}
    if eff is not None and eff < MIN_CPUS:
        return warned(
            "CPUs", f"{measured}; below {MIN_CPUS} CPUs, image decoding and augmentation in "
            "DataLoader workers usually cannot keep a GPU busy (fine for small or cached "
            "datasets such as CIFAR-10 in memory)",
            f"use DataLoader(num_workers={workers}); give the container more CPUs "
            f"(docker run --cpus={MIN_CPUS}) or pre-process images once", "resources-few-cpus",
            **evidence)
    return passed("CPUs", measured, **evidence)


def memory_finding(m: dict):
    total, available = m.get("total"), m.get("available")
    limited = m.get("cgroup_limit") is not None and m["cgroup_limit"] < m.get("host_total", 0)
    scope = (f"cgroup limit {human_bytes(m['cgroup_limit'])} of {human_bytes(m['host_total'])} "
             "host RAM" if limited else "RAM")
    measured = f"{human_bytes(available)} available of {human_bytes(total)} {scope}"
    if available is not None and available < MIN_AVAILABLE_MEMORY:
        return warned(
            "Memory", f"{measured}; below {human_bytes(MIN_AVAILABLE_MEMORY)} DataLoader "
            "workers and large batches risk the OOM killer (\"DataLoader worker ... is killed "
            "by signal: Killed\")",
            "close other jobs, lower num_workers and batch_size, or raise the container's "
            "--memory limit", "resources-low-memory", memory=m)
    return passed("Memory", measured, memory=m)


def disk_finding(disks: list[dict]):
    if not disks:
        return skipped("Disk", "no data or cache directory could be measured", disk=disks)
    low = [d for d in disks if d["free"] < MIN_FREE_DISK]
    parts = [f"{human_bytes(d['free'])} free for {', '.join(d['roles'])} "
             f"({d['measured_at']})" for d in disks]
    measured = "; ".join(parts)
    if low:
        return warned(
            "Disk", f"{measured}; below {human_bytes(MIN_FREE_DISK)} a dataset plus checkpoints "
            "(SAM ViT-H alone is 2.4 GiB) can fail mid-download with \"No space left on device\"",
            "free space, or point caches elsewhere: export TORCH_HOME=/big/disk/torch "
            "HF_HOME=/big/disk/huggingface", "resources-low-disk", disk=disks)
    return passed("Disk", measured, disk=disks)


def open_files_finding(limits: dict, strategy: str | None):
    soft, hard = limits.get("soft"), limits.get("hard")
    known = strategy is not None
    strategy = strategy or LINUX_DEFAULT_STRATEGY
    how = strategy if known else f"{strategy} (Linux default; torch did not report)"
    evidence = {"open_files": limits, "sharing_strategy": strategy,
                "sharing_strategy_reported": known}
    if soft is None:
        return passed("Open files", f"no open-files limit; sharing strategy {how}", **evidence)
    need = MIN_OPEN_FILES.get(strategy, MIN_OPEN_FILES[LINUX_DEFAULT_STRATEGY])
    measured = (f"open-files limit {soft} (hard {hard if hard is not None else 'unlimited'}); "
                f"sharing strategy {how}")
    if soft < need:
        raise_to = hard if hard is not None and hard < 65536 else 65536
        return warned(
            "Open files", f"{measured}; below {need} DataLoader workers sharing tensors by "
            "descriptor fail with \"Too many open files\"",
            f"ulimit -n {raise_to} before training, or in the script "
            "torch.multiprocessing.set_sharing_strategy('file_system')",
            "resources-open-files-limit", **evidence)
    return passed("Open files", measured, **evidence)


@register("env.resources", order=80, title=TITLE,
          recipes=["resources-few-cpus", "resources-low-memory", "resources-low-disk",
                   "resources-open-files-limit"],
          needs=["resources", "torch"])
def check(ctx):
    """CPUs (affinity and cgroup quota), memory (cgroup limit), free disk where data and caches
    live, and the open-files limit against torch's sharing strategy, as this process gets them.

    Warns below 4 usable CPUs (resources-few-cpus), 4 GiB of available memory
    (resources-low-memory), 10 GiB free disk (resources-low-disk), or an open-files limit too low
    for DataLoader workers sharing tensors by descriptor (resources-open-files-limit). Each is
    fine for small datasets or on purpose; none fails."""
    r = ctx.fact("resources")
    strategy = ctx.optional_fact("torch").get("sharing_strategy")
    return [cpu_finding(r.get("cpus", {})), memory_finding(r.get("memory", {})),
            disk_finding(r.get("disk", [])), open_files_finding(r.get("open_files", {}), strategy)]
