"""model.ddp_unused: every trainable parameter gets a gradient on every rank, as DDP requires."""
from __future__ import annotations

from cvdoctor.ddp.words import modules, names, not_run, ranks
from cvdoctor.finding import FAIL, Finding, Problem, passed, report_problems, skipped
from cvdoctor.registry import register
from cvdoctor.text import plural

TITLE = "Parameters without gradient under DDP"
RECIPE = "ddp-unused-parameters"


def _reproduced(red: dict | None) -> str:
    if not red:
        return ""
    detail = f" ({red['indices']})" if red.get("indices") else ""
    return (f"; DDP stopped on {ranks([red['rank']])} at the forward of step {red.get('step')}: "
            f"\"{red['first_line']}\"{detail}")


@register("model.ddp_unused", order=110, title=TITLE, recipes=[RECIPE], needs=["ddp"], opt_in="ddp")
def check(ctx):
    """Inside the DDP run, each rank runs two forward/backward passes on a copy of the wrapped
    model (rank 0's batch, then its own) and records which trainable parameters got no
    gradient; then two real DDP steps with the default find_unused_parameters=False reproduce
    DDP's own "Expected to have finished reduction in the prior iteration" error when that
    matters. Fails when a parameter gets no gradient: never on any pass (a module forward never
    calls, or whose output the loss ignores: delete or freeze it), on some passes only (a branch
    taken on some steps: find_unused_parameters=True is the right fix), or on some ranks only
    (rank-dependent control flow, reported by model.ddp_sync). Passes when every trainable
    parameter got a gradient on every pass and rank. Skips when DDP was not asked for."""
    ddp = ctx.fact("ddp")
    reason = not_run(ddp)
    if reason:
        return skipped(TITLE, reason)
    u = ddp["analysis"]["unused"]
    if u is None:
        return skipped(TITLE, "the ranks stopped before their first forward/backward "
                       "(model.ddp says where)")
    red = u["reduction_error"]
    evidence = {"never": u["never"], "sometimes": u["sometimes"],
                "rank_dependent": u["rank_dependent"], "reduction_error": red,
                "per_rank": u["per_rank"]}
    problems = []
    if u["never"]:
        owners = modules(u["never"])
        called = [m for m in owners if any(u["called"].get(p) for p in u["never"]
                                           if p.startswith(m + "."))]
        why = ("forward never calls them" if not called else
               "their outputs never reach the loss" if len(called) == len(owners) else
               "forward never calls some, and the outputs of others never reach the loss")
        first = owners[0]
        problems.append(Problem(
            FAIL, RECIPE,
            f"{plural(len(u['never']), 'trainable tensor')} of {u['trainable']} get no gradient "
            f"on any pass on any rank: {names(u['never'])} in {names(owners)} ({why})"
            f"{_reproduced(red)}",
            f"a model fix: delete {names(owners, 2)} or freeze it before wrapping "
            f"(model.{first}.requires_grad_(False)); find_unused_parameters=True would only "
            "silence DDP, and these parameters would still never train", evidence))
    if u["sometimes"]:
        owners = modules(u["sometimes"])
        problems.append(Problem(
            FAIL, RECIPE,
            f"{plural(len(u['sometimes']), 'trainable tensor')} get a gradient on some passes and "
            f"not on others: {names(u['sometimes'])} in {names(owners)} (a branch taken on some "
            f"steps or batches only){'' if u['never'] else _reproduced(red)}",
            "DistributedDataParallel(model, find_unused_parameters=True): the branch really is "
            "skipped on some steps, so DDP must look for unused parameters each step",
            evidence))
    if problems:
        return report_problems(TITLE, problems, "")
    if u["rank_dependent"]:
        return Finding(FAIL, TITLE,
                       f"{plural(len(u['rank_dependent']), 'trainable tensor')} get a gradient on "
                       f"some ranks only, on the same batch: {names(u['rank_dependent'])}"
                       f"{_reproduced(red)}",
                       fix="make forward take the same path on every rank (see model.ddp_sync); "
                       "find_unused_parameters=True would hide it while the ranks train "
                       "different graphs", recipe=RECIPE, evidence=evidence,
                       caused_by="model.ddp_sync")
    return passed(TITLE, f"all {plural(u['trainable'], 'trainable tensor')} got a gradient on "
                  f"every pass on {ranks(u['per_rank'])}; DDP needs no find_unused_parameters",
                  **evidence)
