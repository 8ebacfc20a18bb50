"""What the ranks' logs say, compared across ranks: plain data for the model.ddp* checks.

Standard library only. Input: `cvdoctor.ddp.runner.run_ranks`'s result. Output, per topic:
- `run`: how far the ranks got; the rank that failed or hung first (its error, or the frame its
  stack was in), and how the failure reached the others;
- `unused`: trainable parameters without a gradient, per pass and rank, split into never used,
  used on some passes, and rank-dependent; DDP's own reduction error if it came;
- `sync`: replicas that differ: same input giving different outputs, modules that ran on some
  ranks only, state outside parameters and buffers, parameters after a step, buffers after a
  step on the same batch (BatchNorm statistics after the per-rank step are expected to differ);
- `data`: the loader's sampler and whether every rank drew the same first batch;
- `checkpoint`: what the file's save_checkpoint wrote from the wrapped model.
"""
from __future__ import annotations

import re
from typing import Any

from cvdoctor.ddp.compare import differing, relative_difference, same

STAGES = ("start", "import", "init", "load", "wrap", "share", "survey", "forward", "backward",
          "optimizer", "checkpoint", "finish")
STAGE_WORDS = {
    "start": "starting Python", "import": "importing torch",
    "init": "joining the process group (init_process_group)",
    "load": "loading the model file", "wrap": "wrapping the model in DistributedDataParallel",
    "share": "receiving rank 0's batch",
    "survey": "its first forward/backward (on a copy, before the DDP steps)",
    "forward": "the forward of step {step}",
    "backward": "the backward of step {step} (where DDP all-reduces gradients)",
    "optimizer": "the optimizer step of step {step}",
    "checkpoint": "rank 0's save_checkpoint()", "finish": "the final barrier",
}
# Errors a rank gets because another one failed: never the root cause.
_ECHOES = re.compile(
    r"Connection closed by peer|Connection reset by peer|Broken pipe|Timed out waiting \d+ms"
    r"|timed out|NCCL communicator was aborted|Socket Timeout|Connection refused"
    r"|Failed to recv|EOF|DistNetworkError|Watchdog caught", re.I)
REDUCTION_ERROR = "Expected to have finished reduction in the prior iteration"
_OWN_CODE_SKIP = re.compile(r"[/\\](?:torch|cvdoctor|threading\.py|multiprocessing|site-packages[/\\]"
                            r"(?:torch|numpy))[/\\]?")


class RankLog:
    def __init__(self, record: dict[str, Any]):
        self.record = record
        self.rank: int = record["rank"]
        self.events: list[dict[str, Any]] = record.get("events") or []

    def fact(self, name: str, step: int | None = None) -> Any:
        for e in reversed(self.events):
            if e.get("ev") == "fact" and e.get("name") == name and \
                    (step is None or e.get("step") == step):
                return e.get("value")
        return None

    def end(self, stage: str) -> dict[str, Any] | None:
        return next((e for e in self.events if e.get("ev") == "end" and e.get("stage") == stage),
                    None)

    @property
    def error(self) -> dict[str, Any] | None:
        return self.record.get("error")

    @property
    def position(self) -> int:
        """How far this rank got, comparable across ranks."""
        last = self.record.get("last_stage") or {"stage": "start"}
        return progress(last.get("stage", "start"), last.get("step"))

    @property
    def where(self) -> str:
        last = self.record.get("last_stage") or {"stage": "start"}
        return stage_words(last.get("stage", "start"), last.get("step"))


def progress(stage: str, step: int | None) -> int:
    """Stages in the order every rank goes through them (steps 1 and 2 of forward, backward,
    optimizer in turn)."""
    stepped = ("forward", "backward", "optimizer")
    if stage in stepped:
        return STAGES.index("forward") + 3 * ((step or 1) - 1) + stepped.index(stage)
    index = STAGES.index(stage) if stage in STAGES else 0
    return index + 3 if index > STAGES.index("optimizer") else index


def stage_words(stage: str | None, step: int | None = None) -> str:
    return STAGE_WORDS.get(stage or "start", stage or "start").format(step=step)


def analyse(run: dict[str, Any]) -> dict[str, Any]:
    logs = [RankLog(r) for r in run.get("ranks") or []]
    return {"run": run_summary(run, logs), "unused": unused(logs), "sync": sync(logs),
            "data": data(logs), "checkpoint": logs[0].fact("checkpoint") if logs else None}


# --- the run ----------------------------------------------------------------------------------

def is_echo(error: dict[str, Any]) -> bool:
    """Whether a rank's error only reports that another rank failed or is late."""
    return bool(_ECHOES.search(f"{error.get('type')}: {_first_line(error.get('message'))}"))


def user_frame(stack: str | None) -> str | None:
    """The innermost frame of the user's code in a faulthandler dump ('file.py:12 in forward')."""
    if not stack:
        return None
    for line in stack.splitlines():
        m = re.match(r'\s*File "([^"]+)", line (\d+) in (\S+)', line)
        if m and not _OWN_CODE_SKIP.search(m.group(1)) and "/lib/python3" not in m.group(1):
            name = m.group(1).replace("\\", "/").rsplit("/", 1)[-1]
            return f"{name}:{m.group(2)} in {m.group(3)}"
    return None


_SOURCE_PREFIX = re.compile(r"^\[[^\]\s]+:\d+\]\s*")  # gloo's "[.../pair.cc:561] "


def _first_line(text: str | None, limit: int = 300) -> str:
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    line = _SOURCE_PREFIX.sub("", lines[0]) if lines else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def run_summary(run: dict[str, Any], logs: list[RankLog]) -> dict[str, Any]:
    outcome = run.get("outcome")
    failures = []
    for log in logs:
        rec, err = log.record, log.error
        if err:
            failures.append({"rank": log.rank, "kind": "error", "stage": err.get("stage"),
                             "step": err.get("step"), "type": err.get("type"),
                             "message": _first_line(err.get("message"), 4000) if
                             _SOURCE_PREFIX.match(err.get("message") or "") else
                             err.get("message") or "",
                             "traceback": err.get("traceback"),
                             "echo": is_echo(err)})
        elif rec.get("killed"):
            last = rec.get("last_stage") or {}
            failures.append({"rank": log.rank, "kind": "stopped", "stage": last.get("stage"),
                             "step": last.get("step"), "frame": user_frame(rec.get("stack")),
                             "stack": rec.get("stack")})
        elif rec.get("returncode") not in (0, None):
            last = rec.get("last_stage") or {}
            failures.append({"rank": log.rank, "kind": "died", "signal": rec.get("signal"),
                             "returncode": rec.get("returncode"), "stage": last.get("stage"),
                             "step": last.get("step"), "stderr": rec.get("stderr")})
    root = None
    own = [f for f in failures if f["kind"] == "died" or
           (f["kind"] == "error" and not f.get("echo"))]
    stopped = [f for f in failures if f["kind"] == "stopped"]
    if own:
        root = own[0]
    elif stopped:  # the others timed out or lost the connection waiting for these
        position = {lg.rank: lg.position for lg in logs}
        lowest = min(position[f["rank"]] for f in stopped)
        behind = [f for f in stopped if position[f["rank"]] == lowest]
        root = dict(behind[0], behind=[f["rank"] for f in behind])
    elif failures:
        root = failures[0]
    return {"outcome": outcome, "seconds": run.get("seconds"), "port": run.get("port"),
            "port_note": run.get("port_note"), "backend": run.get("backend"),
            "device": run.get("device"), "world_size": run.get("world_size"),
            "timeout_s": run.get("timeout_s"), "hung_for_s": run.get("hung_for_s"),
            "failures": failures, "root": root, "error": run.get("error"),
            "positions": {lg.rank: lg.where for lg in logs},
            "completed": outcome == "completed" and all(lg.record.get("done") for lg in logs)}


# --- parameters without gradient ----------------------------------------------------------------

def unused(logs: list[RankLog]) -> dict[str, Any] | None:
    surveys = {lg.rank: lg.fact("survey") for lg in logs}
    if not logs or any(s is None for s in surveys.values()):
        return None
    trainable = (logs[0].fact("built") or {}).get("trainable") or []
    passes = {r: [set(s["shared"]["no_grad"]), set(s["own"]["no_grad"])]
              for r, s in surveys.items()}
    every = [p for passes_r in passes.values() for p in passes_r]
    never = set.intersection(*every) if every else set()
    anywhere = set.union(*every) if every else set()
    shared_sets = [p[0] for p in passes.values()]
    rank_dependent = set.union(*shared_sets) - set.intersection(*shared_sets)
    sometimes = anywhere - never - rank_dependent
    ran = {r: set(s["shared"]["modules_run"]) | set(s["own"]["modules_run"])
           for r, s in surveys.items()}
    ran_somewhere = set.union(*ran.values()) if ran else set()

    def module_of(param: str) -> str:
        return param.rsplit(".", 1)[0] if "." in param else ""

    called = {p: module_of(p) in ran_somewhere for p in anywhere}
    reduction = None
    for lg in logs:
        err = lg.error or {}
        if REDUCTION_ERROR in (err.get("message") or ""):
            message = err["message"]
            indices = re.search(r"Parameter indices which did not receive grad for rank \d+:"
                                r"[ \d]*", message)
            names = re.search(r"Parameters which did not receive grad for rank \d+:[^\n]*",
                              message)
            reduction = {"rank": lg.rank, "step": err.get("step"), "stage": err.get("stage"),
                         "first_line": _first_line(message, 160),
                         "indices": indices.group(0).strip() if indices else None,
                         "names": names.group(0).strip() if names else None}
            break
    order = {p: i for i, p in enumerate(trainable)}

    def ordered(names: set[str]) -> list[str]:
        return sorted(names, key=lambda p: order.get(p, len(order)))

    return {"trainable": len(trainable), "never": ordered(never),
            "sometimes": ordered(sometimes), "rank_dependent": ordered(rank_dependent),
            "called": called, "reduction_error": reduction,
            "per_rank": {r: {"shared": ordered(p[0]), "own": ordered(p[1])}
                         for r, p in passes.items()}}


# --- replicas in step ---------------------------------------------------------------------------

def _diff_outputs(a: list | None, b: list | None) -> float | None:
    """None when equal; else the largest relative difference (inf when shapes differ)."""
    if a is None or b is None:
        return None if a is b else float("inf")
    if len(a) != len(b):
        return float("inf")
    worst = None
    for x, y in zip(a, b):
        if not same(x, y):
            rel = relative_difference(x, y)
            rel = float("inf") if rel is None else rel
            worst = rel if worst is None else max(worst, rel)
    return worst


def _is_bn_stat(name: str, bn_modules: set[str]) -> bool:
    module, _, leaf = name.rpartition(".")
    return leaf in ("running_mean", "running_var", "num_batches_tracked") and (
        module in bn_modules or not bn_modules)


def sync(logs: list[RankLog]) -> dict[str, Any] | None:
    if len(logs) < 2:
        return None
    ref = logs[0]
    wrap_error = next(({"rank": lg.rank, "message": _first_line(lg.error.get("message"), 400)}
                       for lg in logs if lg.error and lg.error.get("stage") == "wrap"
                       and not _ECHOES.search(lg.error.get("message") or "")), None)
    out: dict[str, Any] = {"wrap_error": wrap_error, "compared": [ref.rank]}
    surveys = {lg.rank: lg.fact("survey") for lg in logs}
    built = {lg.rank: lg.fact("built") for lg in logs}
    outputs, loss, modules, no_grad, outside_t, outside_v, before = {}, {}, {}, {}, {}, {}, {}
    s0 = surveys[ref.rank]
    for lg in logs[1:]:
        s = surveys[lg.rank]
        if s0 and s:
            out["compared"].append(lg.rank)
            diff = _diff_outputs(s0["shared"].get("outputs"), s["shared"].get("outputs"))
            if diff is not None:
                outputs[lg.rank] = diff
            la, lb = s0["shared"].get("loss"), s["shared"].get("loss")
            if la is not None and lb is not None and abs(la - lb) > 1e-5 * max(abs(la), 1e-6):
                loss[lg.rank] = (la, lb)
            a, b = set(s0["shared"]["modules_run"]), set(s["shared"]["modules_run"])
            if a != b:
                modules[lg.rank] = {"only_rank0": sorted(a - b), "only_here": sorted(b - a)}
            a, b = set(s0["shared"]["no_grad"]), set(s["shared"]["no_grad"])
            if a != b:
                no_grad[lg.rank] = {"only_rank0": sorted(a - b), "only_here": sorted(b - a)}
        b0, b1 = built[ref.rank], built[lg.rank]
        if b0 and b1:
            t = differing(b0["outside"]["tensors"], b1["outside"]["tensors"], rtol=0.0)
            if t:
                outside_t[lg.rank] = t
            v0, v1 = b0["outside"]["values"], b1["outside"]["values"]
            v = [k for k in dict.fromkeys([*v0, *v1]) if v0.get(k) != v1.get(k)]
            if v:
                outside_v[lg.rank] = {k: (v0.get(k), v1.get(k)) for k in v[:8]}
            p = differing(b0["params"], b1["params"], rtol=0.0)
            if p:
                before[lg.rank] = len(p)
    out.update(outputs=outputs, loss=loss, modules=modules, no_grad=no_grad,
               outside_tensors=outside_t, outside_values=outside_v, params_before=before)
    bn = set((built[ref.rank] or {}).get("batchnorm") or [])
    steps: dict[int, dict[str, Any]] = {}
    for step in (1, 2):
        after0 = ref.fact("after_step", step)
        if not after0:
            continue
        params, buffers, forward = {}, {}, {}
        for lg in logs[1:]:
            after = lg.fact("after_step", step)
            if not after:
                continue
            p = differing(after0["params"], after["params"])
            if p:
                params[lg.rank] = p
            b = differing(after0["buffers"], after["buffers"])
            if b:
                buffers[lg.rank] = b
            f0, f1 = ref.fact("forward", step), lg.fact("forward", step)
            if step == 1 and f0 and f1:
                diff = _diff_outputs(f0.get("outputs"), f1.get("outputs"))
                if diff is not None:
                    forward[lg.rank] = diff
        steps[step] = {"params": params, "buffers": buffers, "forward_outputs": forward,
                       "bn_stats_only": all(_is_bn_stat(n, bn) for names in buffers.values()
                                            for n in names)}
    out["steps"] = steps
    return out


# --- the loader ---------------------------------------------------------------------------------

def data(logs: list[RankLog]) -> dict[str, Any] | None:
    if not logs:
        return None
    loader = logs[0].fact("loader")
    shares = {lg.rank: lg.end("share") for lg in logs}
    same_batch = {r: bool(e.get("own_same_as_rank0")) for r, e in shares.items()
                  if e is not None and r != logs[0].rank}
    return {"loader": loader, "same_first_batch": same_batch,
            "all_same": bool(same_batch) and all(same_batch.values())}
