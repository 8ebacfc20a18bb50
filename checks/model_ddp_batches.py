"""model.ddp_batches: each rank gets its own data, in batches BatchNorm can use."""
from __future__ import annotations

from cvdoctor.ddp.words import names
from cvdoctor.finding import FAIL, WARN, Problem, report_problems, skipped
from cvdoctor.registry import register
from cvdoctor.text import plural

TITLE = "Per-rank batches"
BN_RECIPE = "ddp-syncbatchnorm"
SAMPLER_RECIPE = "ddp-distributed-sampler"
# BatchNorm's batch statistics get noisy below this many samples (Wu & He, Group Normalization:
# ImageNet error climbs steeply from 8 images per GPU down).
MIN_BN_BATCH = 8
SAMPLER_FIX = ("DataLoader(dataset, batch_size=B, sampler=DistributedSampler(dataset), "
               "shuffle=False) and sampler.set_epoch(epoch) at the start of every epoch")


def _batchnorm(setup: dict) -> Problem | None:
    b, layers = setup.get("batch_per_rank"), setup.get("batchnorm") or []
    if not layers or b is None or b >= MIN_BN_BATCH:
        return None
    n = setup["world_size"]
    total = b * n
    gpu_note = "" if setup.get("device") != "cpu" else " (SyncBatchNorm runs on GPUs only)"
    return Problem(
        WARN, BN_RECIPE,
        f"{plural(len(layers), 'BatchNorm layer')} ({names(layers)}) normalize over "
        f"{plural(b, 'sample')} per rank, without SyncBatchNorm: below {MIN_BN_BATCH} the batch "
        f"statistics are noisy and train/eval behaviour drifts apart; SyncBatchNorm would "
        f"normalize over the {total} samples of all {n} ranks",
        f"model = nn.SyncBatchNorm.convert_sync_batchnorm(model) before wrapping it in DDP"
        f"{gpu_note}; or GroupNorm, or a larger per-rank batch",
        {"batch_per_rank": b, "batchnorm": layers, "world_size": n})


def _sampler(data: dict | None, world: int) -> tuple[Problem | None, str]:
    loader = (data or {}).get("loader") or {}
    if not loader.get("from_loader"):
        return None, "the batch does not come from a loader: sampler not checked"
    where = loader.get("source")
    same = data.get("all_same")
    first = (f"every rank drew the same first batch from {where}" if same else
             f"the ranks drew different first batches from {where}")
    evidence = {"loader": loader, "same_first_batch": data.get("same_first_batch")}
    if loader.get("distributed"):
        return None, (f"{where} splits the data with {loader.get('split_by')} "
                      f"({loader.get('num_replicas')} replicas)")
    if loader.get("iterable_dataset"):
        if same:
            return Problem(FAIL, SAMPLER_RECIPE,
                           f"{first}: its IterableDataset does not split the stream by rank",
                           "shard the stream by rank inside the dataset (skip items whose index "
                           "% world_size != rank, or a per-rank shard list)", evidence), ""
        return None, f"{where} (an IterableDataset) yields different data per rank"
    sampler = loader.get("sampler") or "no sampler"
    if same:
        return Problem(FAIL, SAMPLER_RECIPE,
                       f"{first}: its sampler is {sampler}, not a DistributedSampler, so every "
                       f"rank trains on the whole dataset in the same order (each step computes "
                       f"one batch {world} times)", SAMPLER_FIX, evidence), ""
    return Problem(WARN, SAMPLER_RECIPE,
                   f"{first}, but its sampler is {sampler}, not a DistributedSampler: every rank "
                   "still goes through the whole dataset each epoch, in its own order",
                   SAMPLER_FIX, evidence), ""


@register("model.ddp_batches", order=112, title=TITLE, recipes=[BN_RECIPE, SAMPLER_RECIPE],
          needs=["ddp_setup", "ddp"], opt_in="ddp")
def check(ctx):
    """Reads how the model file feeds the ranks. With a loader (train_loader, get_dataloader()),
    each rank of the DDP run builds it after joining the process group and reports its sampler
    and its first batch: fails when every rank drew the same batch from a loader without a
    DistributedSampler (every rank trains on the same data), warns when the loader has no
    DistributedSampler but the batches differ (each rank still walks the whole dataset). Warns
    when BatchNorm layers (not SyncBatchNorm) see fewer than 8 samples per rank (the per-rank
    batch is get_batch()'s), with the convert_sync_batchnorm line. Passes otherwise; skips when
    DDP was not asked for."""
    setup = ctx.fact("ddp_setup")
    if not setup.get("asked"):
        return skipped(TITLE, "not asked for: give --ddp N (or ddp = N in the model file) to "
                       "check data-parallel training")
    problems: list[Problem] = []
    notes: list[str] = []
    bn = _batchnorm(setup)
    per_rank = setup.get("batch_per_rank")
    if bn:
        problems.append(bn)
    elif per_rank is not None:
        layers = setup.get("batchnorm") or setup.get("sync_batchnorm")
        kind = "BatchNorm layer" if setup.get("batchnorm") else "SyncBatchNorm layer"
        notes.append(f"{plural(per_rank, 'sample')} per rank" +
                     (f" through {plural(len(layers), kind)}" if layers else ""))
    ddp = ctx.fact("ddp")
    if ddp.get("ran"):
        problem, note = _sampler(ddp["analysis"]["data"], setup["world_size"])
        if problem:
            problems.append(problem)
        elif note:
            notes.append(note)
    else:
        notes.append("sampler not checked: the DDP run did not happen")
    evidence = {"batch_per_rank": setup.get("batch_per_rank"),
                "batchnorm": setup.get("batchnorm")}
    return report_problems(TITLE, problems, "; ".join(notes), **evidence)

