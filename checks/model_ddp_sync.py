"""model.ddp_sync: every rank holds and computes the same model."""
from __future__ import annotations

from cvdoctor.ddp.words import names, not_run, ranks
from cvdoctor.finding import FAIL, WARN, Problem, report_problems, skipped
from cvdoctor.registry import register
from cvdoctor.text import plural

TITLE = "Replicas in sync across ranks"
RECIPE = "ddp-replicas-diverge"
FIX_FLOW = ("take the same path in forward on every rank: no branch on dist.get_rank(), "
            "os.environ['RANK'] or rank-local state")
FIX_OUTSIDE = ("register tensors the model uses as buffers (self.register_buffer('pos', t)) or "
               "parameters, which DDP broadcasts from rank 0; seed every rank alike before "
               "building the model")


def _causes(s: dict, rank: int) -> tuple[list[str], str]:
    """Why `rank` computes something else than rank 0 on the same input, and the fix."""
    causes, fix = [], FIX_FLOW
    mods = s["modules"].get(rank)
    if mods:
        parts = []
        if mods["only_rank0"]:
            parts.append(f"{names(mods['only_rank0'])} ran on rank 0 only")
        if mods["only_here"]:
            parts.append(f"{names(mods['only_here'])} ran on {ranks([rank])} only")
        causes.append("rank-dependent control flow: " + ", ".join(parts))
    tensors = s["outside_tensors"].get(rank)
    values = s["outside_values"].get(rank)
    if tensors or values:
        what = []
        if tensors:
            what.append(f"{plural(len(tensors), 'tensor')} kept as plain attributes "
                        f"({names(tensors)})")
        if values:
            key, (a, b) = next(iter(values.items()))
            what.append(f"attribute `{key}` = {a} on rank 0, {b} on {ranks([rank])}")
        causes.append("state outside parameters and buffers differs, which DDP neither "
                      "broadcasts nor averages: " + "; ".join(what))
        if not mods:
            fix = FIX_OUTSIDE
    if (tensors or values) and s["params_before"].get(rank):
        causes.append(f"the ranks built the model from different random states (its "
                      f"{plural(s['params_before'][rank], 'parameter tensor')} differed until DDP "
                      "broadcast rank 0's): no common seed, or a per-rank seed, before the model "
                      "is built")
    if not causes:
        causes.append("the forward computes something rank-dependent (it reads the rank, or "
                      "draws from a per-rank random generator)")
    return causes, fix


@register("model.ddp_sync", order=111, title=TITLE, recipes=[RECIPE], needs=["ddp"], opt_in="ddp")
def check(ctx):
    """Compares the ranks of the DDP run with rank 0: whether DDP could wrap the same model on
    every rank; the outputs of the wrapped model's copy on rank 0's batch (same seed everywhere,
    so dropout agrees); which modules ran; parameters after each of the two steps (gradients are
    averaged, so they must agree); buffers after step 1, taken on the same batch everywhere.
    Fails when the ranks built different models, when the same input gives different outputs
    (rank-dependent control flow, state outside parameters and buffers, per-rank seeds before
    the model is built), when different modules run, or when parameters differ after a step.
    Warns when only buffers differ after the same-batch step (a rank-dependent update: DDP
    overwrites them with rank 0's at the next forward). BatchNorm running statistics after step
    2, where every rank has its own data, differ legitimately and are not compared. Skips with
    one rank or when DDP was not asked for."""
    ddp = ctx.fact("ddp")
    reason = not_run(ddp)
    if reason:
        return skipped(TITLE, reason)
    s = ddp["analysis"]["sync"]
    if s is None:
        return skipped(TITLE, "one rank: nothing to compare (use --ddp 2 or more)")
    if s["wrap_error"]:
        w = s["wrap_error"]
        return report_problems(TITLE, [Problem(
            FAIL, RECIPE, f"DistributedDataParallel refused the model on {ranks([w['rank']])}: "
            f"\"{w['message']}\": the ranks built different models (rank-dependent "
            "construction)", "build the same model on every rank: no layer sizes or modules "
            "that depend on the rank", {"wrap_error": w})], "")
    if len(s["compared"]) < 2:
        return skipped(TITLE, "the ranks stopped before a forward they could be compared on "
                       "(model.ddp says where)")
    problems: list[Problem] = []
    others = [r for r in s["compared"] if r != s["compared"][0]]
    evidence = {k: s[k] for k in ("outputs", "loss", "modules", "outside_tensors",
                                  "outside_values", "params_before")}
    for rank in others:
        out_diff = s["outputs"].get(rank)
        if out_diff is None and s["loss"].get(rank):
            out_diff = float("inf")
        if out_diff is not None or s["modules"].get(rank):
            causes, fix = _causes(s, rank)
            same_input = ("the same input gives different outputs on rank 0 and "
                          f"{ranks([rank])}" if out_diff is not None else
                          f"rank 0 and {ranks([rank])} run different modules on the same input")
            problems.append(Problem(FAIL, RECIPE, f"{same_input}: {'; '.join(causes)}", fix,
                                    evidence))
    steps = s.get("steps") or {}
    forward_differs = bool(problems)  # parameters drifting apart then follows from it
    for step, st in sorted(steps.items()):
        for rank, params in st["params"].items():
            if forward_differs or any(p.evidence.get("step") for p in problems):
                break
            problems.append(Problem(
                FAIL, RECIPE, f"{plural(len(params), 'parameter tensor')} differ between rank 0 "
                f"and {ranks([rank])} after step {step} ({names(params)}), though DDP averaged "
                "the gradients: the optimizer or code after backward is rank-dependent "
                "(a per-rank learning rate, gradients changed on one rank, parameters changed "
                "outside autograd)", "build the optimizer and change parameters identically on "
                "every rank", {**evidence, "step": step}))
    st1 = steps.get(1) or {}
    for rank, bufs in (st1.get("buffers") or {}).items():
        if problems:
            break
        problems.append(Problem(
            WARN, RECIPE, f"{plural(len(bufs), 'buffer')} differ{'s' if len(bufs) == 1 else ''} "
            "between rank 0 and "
            f"{ranks([rank])} after a step on the same batch ({names(bufs)}): a rank-dependent "
            "update; DDP broadcasts rank 0's buffers before every forward, so the other ranks' "
            "updates are lost", "update buffers from the data only (or all-reduce them yourself "
            "if every rank's update matters)", {**evidence, "buffers": bufs}))
    st2 = steps.get(2) or {}
    bn_note = ""
    if st2.get("buffers") and st2.get("bn_stats_only"):
        bn_note = ("; BatchNorm running statistics differ after the per-rank step, as they should "
                   "(each rank saw its own data)")
    compared = f"{ranks(others)} match{'es' if len(others) == 1 else ''} rank 0"
    return report_problems(
        TITLE, problems, f"{compared}: same outputs on the same batch, same parameters after "
        f"{len(steps)} DDP step{'s' if len(steps) != 1 else ''}, same buffers after the "
        f"same-batch step{bn_note}", **evidence)
