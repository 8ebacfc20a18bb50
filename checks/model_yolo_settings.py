"""model.yolo_settings: imgsz, batch and workers against the model's stride and this machine."""
from __future__ import annotations

from cvdoctor.finding import Problem, report_problems, skipped
from cvdoctor.registry import register
from cvdoctor.text import human_bytes
from cvdoctor.yolo.plan import (DEFAULT_BATCH, DEFAULT_WORKERS, imgsz_value, loader_workers,
                                shm_need, train_memory)
from cvdoctor.yolo.report import model_missing, skip_unless_yolo

TITLE = "YOLO settings: imgsz, batch, workers"
IMGSZ = "yolo-imgsz-stride"
RECIPES = [IMGSZ, "shm-docker-ipc", "resources-few-cpus", "cuda-oom"]


@register("model.yolo_settings", targets=["yolo"], order=16, title=TITLE, recipes=RECIPES,
          needs=["yolo_probe", "shm", "resources", "gpu"])
def check(ctx):
    """Compares the run's settings (command line, then the file, then the checkpoint's own
    training arguments, then ultralytics' defaults) with the model and the machine:

    - imgsz against the model's largest stride: ultralytics rounds it up to a multiple and trains
      at that size (warns, with the size it really uses);
    - workers against the CPUs the process may use: ultralytics caps them by os.cpu_count(),
      which ignores a container's CPU quota (warns);
    - the shared memory the workers' prefetched batches hold (4 per worker in ultralytics)
      against free /dev/shm (fails when it cannot fit: workers die with a bus error);
    - on a GPU, device memory for one step at this batch size, from the bytes autograd saved per
      image in the probe's real step, plus weights, gradients, optimizer and EMA (warns when it
      exceeds the free memory). On CPU ultralytics uses no workers and the GPU parts skip."""
    skip = skip_unless_yolo(ctx, TITLE)
    if skip:
        return skip
    probe = ctx.fact("yolo_probe")
    why = model_missing(probe)
    if why:
        return skipped(TITLE, why)
    settings = probe.get("settings") or {}
    sources = probe.get("settings_source") or {}
    trainer = probe.get("trainer") or {}
    model = probe["model"]
    problems: list[Problem] = []
    notes: list[str] = []

    raw = settings.get("imgsz")
    imgsz = imgsz_value(raw) or 640
    stride = max(int(trainer.get("stride") or model.get("stride_max") or 32), 32)
    used = trainer.get("imgsz_used")
    used = imgsz_value(used) if used is not None else -(-imgsz // stride) * stride
    if raw is not None and imgsz_value(raw) is None:
        notes.append(f"imgsz {raw!r} is not a size (see model.yolo_train_step)")
    elif imgsz % stride:
        down, up = max(stride, imgsz // stride * stride), used
        problems.append(Problem(
            "warn", IMGSZ,
            f"imgsz {imgsz} is not a multiple of the model's largest stride {stride}: "
            f"ultralytics trains at {used} instead (one warning line in its log)",
            f"Use imgsz={down} or imgsz={up}, a multiple of {stride}.",
            {"imgsz": imgsz, "stride": stride, "imgsz_used": used}))
    else:
        notes.append(f"imgsz {imgsz} ({sources.get('imgsz', 'default')}) is a multiple of the "
                     f"stride {stride}")

    batch = settings.get("batch", DEFAULT_BATCH)
    workers = settings.get("workers", DEFAULT_WORKERS)
    gpu = ctx.fact("gpu") or {}
    gpus = int(gpu.get("count") or 0) if gpu.get("present") else 0
    cpus = (ctx.fact("resources") or {}).get("cpus") or {}
    if batch == -1 or (isinstance(batch, float) and 0 < batch < 1):
        notes.append("batch -1/fraction: ultralytics' AutoBatch sizes it on the GPU")
        batch = None
    if not gpus:
        notes.append("no GPU: ultralytics loads data in the training process (workers=0)")
    elif isinstance(workers, int) and isinstance(batch, int):
        nw = loader_workers(workers, int(cpus.get("cpu_count") or 1), gpus, batches=10 ** 6)
        usable = int(cpus.get("effective") or cpus.get("cpu_count") or 1)
        if nw > usable:
            problems.append(Problem(
                "warn", "resources-few-cpus",
                f"workers={workers}: ultralytics starts {nw} loader processes (it caps by "
                f"os.cpu_count()={cpus.get('cpu_count')}, which ignores CPU quotas) on "
                f"{usable} usable CPUs",
                f"Use workers={max(1, usable - 1)}.", {"workers": nw, "usable_cpus": usable}))
        problems += _shm(ctx, nw, batch, used, int(model.get("channels") or 3))
        problems += _memory(probe, gpu, batch, used, settings)
    if not problems:
        notes.append(f"batch {batch if batch is not None else 'auto'}"
                     + (f", workers {workers}" if gpus else ""))
    return report_problems(TITLE, problems, "; ".join(notes), imgsz=imgsz, batch=batch,
                           workers=workers)


def _shm(ctx, workers: int, batch: int, imgsz: int, channels: int) -> list[Problem]:
    if workers <= 0:
        return []
    shm = ctx.fact("shm") or {}
    free = shm.get("free_bytes")
    if not shm.get("exists") or free is None:
        return []
    need = shm_need(workers, batch, imgsz, channels)
    if need["need_bytes"] <= free:
        return []
    fits = max(0, int(free // (need["batch_bytes"] * 4 * 2)))
    return [Problem(
        "fail", "shm-docker-ipc",
        f"{workers} loader workers hold about {human_bytes(need['need_bytes'])} of batches in "
        f"/dev/shm ({need['assumption']}); it has {human_bytes(free)} free",
        "Run the container with --ipc=host (or a bigger --shm-size); until then use "
        f"workers={fits}.", {"need": need, "shm_free": free})]


def _memory(probe: dict, gpu: dict, batch: int, imgsz: int, settings: dict) -> list[Problem]:
    step = probe.get("step") or {}
    devices = gpu.get("devices") or []
    free = devices[0].get("free_memory") if devices else None
    if not step.get("saved_bytes") or free is None:
        return []
    ran = (step.get("img_shape") or [0, 0, 0, 0])[-1]
    if ran and ran != imgsz:
        return []
    amp = settings.get("amp", True) is not False
    mem = train_memory(step["saved_bytes"], step.get("images") or 1, batch,
                       int(probe["model"].get("params") or 0), amp)
    if mem["need_bytes"] <= free:
        return []
    per = mem["per_image_bytes"] * (0.5 if amp else 1.0)
    fits = max(1, int((free - mem["state_bytes"]) // max(per, 1)))
    return [Problem(
        "warn", "cuda-oom",
        f"batch {batch} at {imgsz} px needs about {human_bytes(mem['need_bytes'])} for one "
        f"training step ({human_bytes(mem['activation_bytes'])} of activations, measured on "
        f"{step.get('images')} images{', halved for AMP' if amp else ''}, plus weights, gradients, "
        f"optimizer and EMA); {devices[0].get('name', 'GPU 0')} has {human_bytes(free)} free",
        f"Use batch={min(fits, batch - 1) if batch > 1 else 1} or batch=-1 (AutoBatch).",
        {"memory": mem, "free_memory": free})]
