"""model.ddp: N ranks join a real process group, wrap the model in DDP and take steps."""
from __future__ import annotations

from cvdoctor.catalog import recipe_for_error
from cvdoctor.ddp.analysis import stage_words
from cvdoctor.ddp.words import how_it_ran, names, not_run, ranks
from cvdoctor.finding import FAIL, WARN, Problem, report_problems, skipped
from cvdoctor.probes import SIGNAL_MEANINGS
from cvdoctor.registry import register
from cvdoctor.text import first_line

TITLE = "Data-parallel run"
FAILED = "ddp-rank-failed"
HUNG = "ddp-rank-hang"
PREFIX = "checkpoint-key-prefix"
HINTS = {
    "default process group twice": "cvdoctor starts the process group before it loads the file, "
    "as torchrun scripts do: call init_process_group only under `if __name__ == '__main__':` "
    "or guard it with `if not dist.is_initialized()`",
}


def _where(f: dict) -> str:
    return stage_words(f.get("stage"), f.get("step"))


def _others(a: dict, root: dict) -> str:
    """How the failure reached the other ranks."""
    parts = []
    for f in a["run"]["failures"]:
        if f["rank"] == root["rank"]:
            continue
        if f["kind"] == "error":
            parts.append(f"{ranks([f['rank']])} then failed in {_where(f)}: "
                         f"{first_line(f['message'], 100)}")
        elif f["kind"] == "stopped":
            parts.append(f"{ranks([f['rank']])} was waiting in {_where(f)}")
    return ("; " + "; ".join(parts)) if parts else ""


def _failure(a: dict) -> Problem:
    run = a["run"]
    root = run["root"] or {}
    if run["outcome"] == "launch-failed":
        return Problem(FAIL, FAILED, f"the rank processes could not start: {run.get('error')}",
                       "check that this Python can run `python -m cvdoctor.ddp.worker`", {})
    if root.get("kind") == "stopped":
        frame = f" (at {root['frame']})" if root.get("frame") else ""
        behind = root.get("behind") or [root.get("rank")]
        waited = run.get("hung_for_s") or run.get("timeout_s")
        return Problem(
            FAIL, HUNG, f"{ranks(behind)} made no progress for {waited:g} s in "
            f"{_where(root)}{frame}{_others(a, root)}; every rank was stopped after the "
            f"{run.get('timeout_s'):g} s timeout",
            "find what that rank waits for at that line (a blocking call, a collective only some "
            "ranks reach); raise --ddp-timeout only if the step is merely slow",
            {"failures": run["failures"], "root": root})
    if root.get("kind") == "died":
        sig = root.get("signal")
        meaning = SIGNAL_MEANINGS.get(str(sig))
        how = f"died by {sig}" + (f" ({meaning})" if meaning else "") if sig else \
            f"exited with code {root.get('returncode')}"
        tail = first_line((root.get("stderr") or "").strip().splitlines()[-1:][0]
                          if (root.get("stderr") or "").strip() else "", 160)
        return Problem(FAIL, FAILED, f"{ranks([root['rank']])} {how} in {_where(root)}"
                       f"{': ' + tail if tail else ''}{_others(a, root)}",
                       "run that rank's step alone to see why it dies (memory, a native crash)",
                       {"failures": run["failures"], "root": root})
    text = f"{root.get('type')}: {root.get('message', '')}"
    match = recipe_for_error(text, root.get("traceback") or "")
    recipe = match.recipe if match else FAILED
    hint = next((h for key, h in HINTS.items() if key in text), None)
    fix = hint or (match.fix if match and match.fix else
                   "read that rank's traceback (-v): code that runs differently per rank (the "
                   "rank, per-rank files or data) raised there")
    return Problem(FAIL, recipe, f"{ranks([root.get('rank', 0)])} raised {root.get('type')} in "
                   f"{_where(root)}: {first_line(root.get('message'), 200)}{_others(a, root)}",
                   fix, {"failures": run["failures"], "root": root,
                         "traceback": root.get("traceback")})


def _checkpoint(c: dict | None) -> tuple[Problem | None, str]:
    if not c or not c.get("defined"):
        return None, "no save_checkpoint(model, path) in the file: saving not checked"
    if not c.get("called"):
        return None, f"save_checkpoint not called: {c.get('reason')}"
    if c.get("error"):
        return Problem(FAIL, FAILED, f"save_checkpoint(model, path) raised on rank 0 with the "
                       f"wrapped model: {first_line(c['error'], 240)}",
                       "let save_checkpoint unwrap DDP first: "
                       "m = model.module if hasattr(model, 'module') else model", {"checkpoint": c}
                       ), ""
    if c.get("pickled_wrapper"):
        return Problem(WARN, PREFIX, "save_checkpoint(model, path) pickled the whole "
                       "DistributedDataParallel wrapper: loading it needs torch.distributed and a "
                       "process group, and its keys carry `module.`",
                       "save model.module.state_dict() instead of the wrapper",
                       {"checkpoint": c}), ""
    if c.get("prefixed") and not c.get("loads_into_model", True):
        return Problem(WARN, PREFIX, f"save_checkpoint(model, path) on rank 0 saved "
                       f"{c['prefixed']} of {c['keys']} keys with DDP's `module.` prefix "
                       f"({names(c.get('sample') or [])}): loading it into the model without "
                       f"the wrapper fails: {first_line(c.get('load_error'), 200)}",
                       "in save_checkpoint, save the unwrapped model: "
                       "torch.save(getattr(model, 'module', model).state_dict(), path)",
                       {"checkpoint": c}), ""
    if c.get("written") is False:
        return None, "save_checkpoint wrote nothing at the path it was given"
    if c.get("loads_into_model"):
        return None, "rank 0's save_checkpoint() writes a state_dict that loads into the bare model"
    return None, f"save_checkpoint wrote a {c.get('saved_type')}"


@register("model.ddp", order=115, title=TITLE, recipes=[FAILED, HUNG, PREFIX],
          needs=["ddp"], error_recipes=True, opt_in="ddp")
def check(ctx):
    """Starts N rank processes with the launcher's variables (RANK, WORLD_SIZE, LOCAL_RANK,
    MASTER_ADDR, MASTER_PORT on a free port), in a real process group (gloo on CPU, NCCL with
    one GPU per rank), each loading the same model file, wrapping the model in
    DistributedDataParallel and taking two steps; every collective has the run's timeout
    (--ddp-timeout, default 60 s) and every process is killed at the end. Fails when a rank
    raises (matched to a recipe like `cvdoctor explain`), dies, or makes no progress within the
    timeout (naming the stage and, from its stack, the line it was stuck at). Warns when the
    file's save_checkpoint(model, path), called on rank 0 with the wrapped model, saves keys with
    DDP's `module.` prefix. Passes with the time the run took; skips when DDP was not asked for
    or the forward already fails in one process."""
    ddp = ctx.fact("ddp")
    reason = not_run(ddp)
    if reason:
        return skipped(TITLE, reason)
    a = ddp["analysis"]
    run = a["run"]
    setup = ddp.get("setup") or {}
    evidence = {"seconds": run.get("seconds"), "port": run.get("port"),
                "backend": run.get("backend"), "device": run.get("device"),
                "positions": run.get("positions")}
    problems: list[Problem] = []
    if not run["completed"]:
        problems.append(_failure(a))
    ckpt, ckpt_note = _checkpoint(a.get("checkpoint"))
    if ckpt:
        problems.append(ckpt)
    extra = [n for n in (run.get("port_note"), setup.get("note")) if n]
    ok = (f"{how_it_ran(run)}: every rank joined the process group, loaded the model, wrapped "
          f"it in DistributedDataParallel and took 2 steps in {run.get('seconds'):.1f} s")
    if ckpt_note:
        extra.append(ckpt_note)
    return report_problems(TITLE, problems, ok + "".join(f"; {n}" for n in extra), **evidence)
