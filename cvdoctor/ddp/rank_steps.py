"""What one rank does, stage by stage (see `cvdoctor.ddp.worker` for the order and the log)."""
from __future__ import annotations

import copy
import datetime
import importlib
import inspect
import pickle
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.parallel import DistributedDataParallel

from cvdoctor.ddp.compare import same
from cvdoctor.ddp.state import batch_digest, named_digests, output_digests, outside_state
from cvdoctor.model.tensors import map_tensors

SEED = 1234
CHECKPOINT_FUNCS = ("save_checkpoint",)
STATE_KEYS = ("state_dict", "model_state_dict", "model", "net", "module")


class LocalBatchNorm(_BatchNorm):
    """SyncBatchNorm computed on this rank alone: SyncBatchNorm only runs on GPUs, and DDP
    refuses a CPU module holding one ("SyncBatchNorm layers only work with GPU modules")."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")


def run(job: dict[str, Any], rank: int, log: Any) -> None:
    world = int(job["world_size"])
    device = _device(job, rank)
    log.begin("init")
    dist.init_process_group(job["backend"], init_method="env://", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=float(job["timeout_s"])))
    log.end("init", backend=str(dist.get_backend()), device=str(device))

    log.begin("load")
    spec, namespace = _load(job["source"])
    log.end("load", batch_source=spec.batch_source)
    log.fact("loader", _loader_info(spec, namespace))

    model = spec.model
    localized = _localize_sync_bn(model) if device.type == "cpu" else []
    model.to(device).train()
    log.fact("built", {"params": named_digests(model.named_parameters()),
                       "buffers": named_digests(model.named_buffers()),
                       "outside": outside_state(model), "localized_sync_bn": localized,
                       "batchnorm": [n for n, m in model.named_modules()
                                     if isinstance(m, _BatchNorm)],
                       "trainable": [n for n, p in model.named_parameters() if p.requires_grad]})

    log.begin("wrap")
    ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                  else None)
    log.end("wrap")

    from cvdoctor.model.context import ModelContext

    ctx = ModelContext(spec, device=device)
    log.begin("share")
    own = ctx.batch()
    own_cpu = map_tensors(own, lambda t: t.detach().cpu())
    box = [own_cpu if rank == 0 else None]
    dist.broadcast_object_list(box, src=0, device=device if job["backend"] == "nccl" else None)
    shared = map_tensors(box[0], lambda t: t.to(device))
    own_digest, shared_digest = batch_digest(own_cpu), batch_digest(box[0])
    same_as_rank0 = len(own_digest) == len(shared_digest) and all(
        same(a, b, rtol=0.0) for a, b in zip(own_digest, shared_digest))
    own_step = own
    if rank and same_as_rank0:
        own_step = _perturbed(own, rank)
    log.end("share", own_same_as_rank0=same_as_rank0, perturbed=own_step is not own)

    log.begin("survey")
    survey = _survey(ctx, ddp.module, shared, own_step)
    log.fact("survey", survey)
    log.end("survey")

    optimizer = ctx.build_optimizer(ddp.module)
    for step, (inputs, targets) in ((1, shared), (2, own_step)):
        log.begin("forward", step)
        torch.manual_seed(SEED + step)
        outputs, loss = ctx.compute_loss(ddp, inputs, targets)
        log.fact("forward", {"outputs": None if outputs is None else output_digests(outputs),
                             "loss": _number(loss)})
        log.begin("backward", step)
        loss.backward()
        log.begin("optimizer", step)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        module = ddp.module
        log.fact("after_step", {"params": named_digests(module.named_parameters()),
                                "buffers": named_digests(module.named_buffers()),
                                "outside": outside_state(module)})
        log.end("step", step)

    log.begin("checkpoint")
    if rank == 0:
        log.fact("checkpoint", _checkpoint(namespace, ddp, Path(job["workdir"])))
    log.end("checkpoint")
    log.begin("finish")
    if job["backend"] == "nccl":
        dist.barrier(device_ids=[device.index])
    else:
        dist.barrier()
    log.end("finish")


def _device(job: dict[str, Any], rank: int) -> torch.device:
    if job["device"] == "cuda":
        torch.cuda.set_device(rank)
        return torch.device("cuda", rank)
    if job["device"] == "cuda-shared":
        torch.cuda.set_device(0)
        return torch.device("cuda", 0)
    return torch.device("cpu")


# --- loading ----------------------------------------------------------------------------------

def _load(source: dict[str, Any]):
    """The ModelSpec this rank trains, and the model file's namespace (None for objects)."""
    if source["kind"] == "pickle":
        import multiprocessing.spawn as mp_spawn

        with open(source["path"], "rb") as fh:
            preparation = pickle.load(fh)
            # The parent's sys.path, working directory and __main__ (as multiprocessing's spawn
            # start method does), so the user's classes unpickle here.
            mp_spawn.prepare(preparation)
            spec = pickle.load(fh)  # noqa: S301 - written by our own parent process
        return spec, None
    from cvdoctor.model.loader import LoadOptions, load_target

    options = dict(source.get("options") or {})
    if options.get("input_shape") is not None:
        options["input_shape"] = tuple(options["input_shape"])
    spec = load_target(source["target"], LoadOptions(**options))
    return spec, _namespace(source["target"])


def _namespace(target: str) -> dict[str, Any] | None:
    path = Path(target)
    if target.endswith(".py") or path.is_file():
        resolved = str(path.resolve())
        for module in list(sys.modules.values()):
            if getattr(module, "__file__", None) == resolved:
                return vars(module)
        return None
    module_name, sep, _attr = target.partition(":")
    if module_name in ("torchvision", "timm") and sep:
        return None
    try:
        return vars(importlib.import_module(module_name))
    except Exception:  # noqa: BLE001 - loaded already, or the loader said why not
        return None


def _loader_info(spec: Any, ns: dict[str, Any] | None) -> dict[str, Any]:
    """How the file's loader hands out data: its sampler, whether it splits by rank."""
    if spec.batch_source != "loader" or ns is None:
        return {"from_loader": False}
    from cvdoctor.model.loader import LOADER_ATTRS, LOADER_FUNCS

    loader, source = None, None
    for name in LOADER_ATTRS:
        if name in ns and ns[name] is not None and not callable(ns[name]):
            loader, source = ns[name], name
            break
    else:
        for name in LOADER_FUNCS:
            if callable(ns.get(name)):
                loader, source = ns[name](), f"{name}()"
                break
    if loader is None:
        return {"from_loader": False}
    return {"from_loader": True, "source": source, **sampler_info(loader)}


def sampler_info(loader: Any) -> dict[str, Any]:
    from torch.utils.data import DistributedSampler, IterableDataset

    sampler = getattr(loader, "sampler", None)
    batch_sampler = getattr(loader, "batch_sampler", None)
    dataset = getattr(loader, "dataset", None)
    candidates = [s for s in (sampler, batch_sampler, getattr(batch_sampler, "sampler", None))
                  if s is not None]

    def splits(s: Any) -> bool:
        return isinstance(s, DistributedSampler) or (hasattr(s, "num_replicas")
                                                     and hasattr(s, "rank"))

    split = next((s for s in candidates if splits(s)), None)
    return {"loader_type": type(loader).__name__,
            "sampler": type(sampler).__name__ if sampler is not None else None,
            "batch_sampler": type(batch_sampler).__name__ if batch_sampler is not None else None,
            "distributed": split is not None,
            "split_by": type(split).__name__ if split is not None else None,
            "num_replicas": getattr(split, "num_replicas", None),
            "sampler_rank": getattr(split, "rank", None),
            "iterable_dataset": isinstance(dataset, IterableDataset),
            "dataset_len": _len(dataset)}


def _len(obj: Any) -> int | None:
    try:
        return len(obj)
    except Exception:  # noqa: BLE001
        return None


# --- the model --------------------------------------------------------------------------------

def _localize_sync_bn(model: nn.Module) -> list[str]:
    names = []
    for name, module in model.named_modules():
        if isinstance(module, nn.SyncBatchNorm):
            module.__class__ = LocalBatchNorm
            names.append(name)
    return names


def _perturbed(batch: Any, rank: int) -> Any:
    """This rank's own batch when the loader gave every rank the same one: float inputs with a
    little rank-seeded noise (what different samples look like to BatchNorm), targets as they
    are."""
    inputs, targets = batch
    gen = torch.Generator().manual_seed(SEED + rank)

    def noisy(t: torch.Tensor) -> torch.Tensor:
        if not t.is_floating_point() or t.numel() == 0:
            return t
        scale = float(t.detach().float().std()) if t.numel() > 1 else 1.0
        noise = torch.randn(t.shape, generator=gen, dtype=torch.float32).to(t.device, t.dtype)
        return t + noise * (0.1 * (scale or 1.0))

    return map_tensors(inputs, noisy), targets


def _survey(ctx: Any, module: nn.Module, shared: Any, own: Any) -> dict[str, Any]:
    """Two forward/backward passes on one copy, with no collective: the shared batch, then this
    rank's own batch (as consecutive training steps: a counter in the model advances, a random
    branch draws again). Which modules ran, which trainable parameters got no gradient, and the
    outputs on the shared batch."""
    replica = copy.deepcopy(module).train()
    ran: list[str] = []
    hooks = [m.register_forward_pre_hook(lambda _m, _a, name=name: ran.append(name))
             for name, m in replica.named_modules()]
    out: dict[str, Any] = {}
    try:
        for i, (label, (inputs, targets)) in enumerate((("shared", shared), ("own", own))):
            ran.clear()
            replica.zero_grad(set_to_none=True)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(SEED + i)
                outputs, loss = ctx.compute_loss(replica, inputs, targets)
            loss.backward()
            out[label] = {"modules_run": sorted(set(ran)),
                          "no_grad": [n for n, p in replica.named_parameters()
                                      if p.requires_grad and p.grad is None],
                          "outputs": None if outputs is None else output_digests(outputs),
                          "loss": _number(loss)}
    finally:
        for h in hooks:
            h.remove()
    return out


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):
        return None


# --- saving from the wrapper --------------------------------------------------------------------

def _checkpoint(ns: dict[str, Any] | None, ddp: DistributedDataParallel,
                workdir: Path) -> dict[str, Any]:
    """Call the file's save_checkpoint(model, path) with the wrapped model, as a training loop
    does, and load what it wrote into the bare model."""
    func = next((ns[n] for n in CHECKPOINT_FUNCS if ns and callable(ns.get(n))), None)
    if func is None:
        return {"defined": False}
    path = workdir / "rank0-checkpoint.pt"
    try:
        inspect.signature(func).bind(ddp, str(path))
    except (TypeError, ValueError):
        return {"defined": True, "called": False,
                "reason": "save_checkpoint does not take (model, path)"}
    try:
        func(ddp, str(path))
    except Exception as exc:  # noqa: BLE001 - the user's own function
        return {"defined": True, "called": True, "error": f"{type(exc).__name__}: {exc}"}
    if not path.exists():
        return {"defined": True, "called": True, "written": False}
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001
        return {"defined": True, "called": True, "written": True,
                "load_error": f"{type(exc).__name__}: {exc}"}
    info: dict[str, Any] = {"defined": True, "called": True, "written": True,
                            "saved_type": type(obj).__name__}
    if isinstance(obj, nn.Module):
        info["pickled_module"] = True
        info["pickled_wrapper"] = isinstance(obj, DistributedDataParallel)
        return info
    state, where = _state_dict_in(obj)
    if state is None:
        info["state_found"] = False
        return info
    keys = list(state)
    info.update(state_found=True, where=where, keys=len(keys),
                prefixed=sum(1 for k in keys if k.startswith("module.")),
                sample=[k for k in keys if k.startswith("module.")][:3])
    bare = copy.deepcopy(ddp.module)
    try:
        bare.load_state_dict(state)
        info["loads_into_model"] = True
    except Exception as exc:  # noqa: BLE001 - the real load_state_dict message is the evidence
        info["loads_into_model"] = False
        lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
        info["load_error"] = f"{type(exc).__name__}: " + " ".join(lines[:3])[:600]
    return info


def _state_dict_in(obj: Any) -> tuple[dict | None, str | None]:
    def tensors(d: Any) -> bool:
        return isinstance(d, dict) and d and all(isinstance(v, torch.Tensor) for v in d.values())

    if tensors(obj):
        return obj, "top level"
    if isinstance(obj, dict):
        for key in STATE_KEYS:
            if tensors(obj.get(key)):
                return obj[key], f"[{key!r}]"
    return None, None
