"""The model command's distributed facts.

- ``ddp_setup``: what was asked (`--ddp N` or ``ddp = N`` in the model file, `--ddp-timeout`),
  how the ranks will run here (gloo on CPU; NCCL with one GPU per rank when the model is on a GPU
  and there are enough of them), the per-rank batch and the BatchNorm layers. No process starts.
- ``ddp``: the run itself (`cvdoctor.ddp.runner`) and what the ranks' logs say
  (`cvdoctor.ddp.analysis`). Not gathered when DDP was not asked for, or when the model's
  forward/backward already fails in one process.
"""
from __future__ import annotations

import pickle
from typing import Any

from cvdoctor.factgraph import fact

DEFAULT_TIMEOUT_S = 60.0
MAX_RANKS = 16
ZOOS = ("torchvision", "timm")


def load_request(ctx: Any) -> dict[str, Any] | None:
    """How a rank rebuilds what this context checks: the same target string and load options
    (file, module or zoo targets), or None when the context holds objects given to the API.

    Read from the context's label and the spec's name (`cvdoctor.model.loader` names a file's
    model "<target> (<attribute or factory()>)"); a ModelContext that kept its target and load
    options would make this exact."""
    label, spec = getattr(ctx, "label", None), ctx.spec
    if not isinstance(label, str):
        return None
    zoo = label.partition(":")[0] in ZOOS and ":" in label and spec.name == label
    if not (zoo or spec.name.startswith(label + " (")):
        return None
    from cvdoctor.model.tensors import batch_size

    model_name = None
    if not zoo:
        source = spec.name[len(label) + 2:-1]
        model_name = source[:-2] if source.endswith("()") else source
    options = {"input_shape": list(spec.input_shape) if spec.input_shape else None,
               "num_classes": spec.num_classes, "batch_size": batch_size(spec.inputs),
               "model_name": None if zoo or ":" in label else model_name}
    return {"kind": "target", "target": label, "options": options}


@fact("ddp_setup")
def setup(ctx) -> dict[str, Any]:
    asked = ctx.option("ddp")
    if not asked:
        return {"asked": False}
    import torch
    from torch import nn
    from torch.nn.modules.batchnorm import _BatchNorm

    from cvdoctor.model.tensors import batch_size

    world = int(asked)
    timeout = float(ctx.option("ddp_timeout", DEFAULT_TIMEOUT_S))
    model = ctx.spec.model
    out: dict[str, Any] = {"asked": True, "world_size": world, "timeout_s": timeout,
                           "batch_per_rank": batch_size(ctx.spec.inputs),
                           "batchnorm": [n for n, m in model.named_modules()
                                         if isinstance(m, _BatchNorm)
                                         and not isinstance(m, nn.SyncBatchNorm)],
                           "sync_batchnorm": [n for n, m in model.named_modules()
                                              if isinstance(m, nn.SyncBatchNorm)],
                           "wrapped_in": type(model).__name__ if isinstance(
                               model, (nn.DataParallel, nn.parallel.DistributedDataParallel))
                           else None, "note": None}
    if ctx.device.type == "cuda":
        gpus = torch.cuda.device_count()
        if gpus >= world:
            out.update(backend="nccl", device="cuda")
        else:
            out.update(backend="gloo", device="cuda-shared",
                       note=f"{world} ranks on {gpus} GPU(s): gloo with every rank on cuda:0 "
                            "(NCCL needs one GPU per rank)")
    else:
        out.update(backend="gloo", device="cpu")
    if world > MAX_RANKS:
        out["refused"] = (f"--ddp {world}: cvdoctor starts at most {MAX_RANKS} ranks on one "
                          "machine (what it checks shows with 2)")
    return out


@fact("ddp", needs=["ddp_setup", "base"])
def run(ctx) -> dict[str, Any]:
    setup = ctx.fact("ddp_setup")
    if not setup.get("asked"):
        return {"ran": False, "reason": "not asked for: give --ddp N (or ddp = N in the model "
                                        "file) to check data-parallel training"}
    if setup.get("refused"):
        return {"ran": False, "reason": setup["refused"]}
    base = ctx.fact("base")
    if not base.ok:
        return {"ran": False, "caused_by": "model.forward",
                "reason": "the forward/backward already fails in one process (model.forward): "
                          "fix that first"}
    from cvdoctor.ddp.analysis import analyse
    from cvdoctor.ddp.runner import Launch, run_ranks

    source = load_request(ctx)
    payload = None
    if source is None:
        try:
            payload = objects_payload(ctx.spec)
        except Exception as exc:  # noqa: BLE001 - pickling errors come in every type
            return {"ran": False, "reason": "the model and batch cannot be sent to the rank "
                    f"processes ({type(exc).__name__}: {exc}); give the model file instead, "
                    "which every rank loads itself"}
        source = {"kind": "pickle"}
    launch = Launch(world_size=setup["world_size"], source=source, backend=setup["backend"],
                    device=setup["device"], timeout_s=setup["timeout_s"], payload=payload)
    result = run_ranks(launch, progress=getattr(ctx, "progress", None))
    return {"ran": True, "run": result, "analysis": analyse(result), "setup": setup}


def objects_payload(spec: Any) -> bytes:
    """The API's objects for the ranks: multiprocessing's preparation data (the parent's
    sys.path, working directory and __main__ module, as its spawn start method sends them), then
    the ModelSpec, both pickled. Classes defined in functions or lambdas cannot be sent."""
    import multiprocessing.spawn as mp_spawn

    preparation = mp_spawn.get_preparation_data("cvdoctor-ddp")
    preparation.pop("authkey", None)  # multiprocessing's own secret: not needed, not picklable
    return pickle.dumps(preparation) + pickle.dumps(spec)
