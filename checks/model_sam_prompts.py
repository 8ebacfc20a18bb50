"""model.sam_prompts: the prompts handed to SamPredictor.predict have SAM's shapes and ranges."""
from __future__ import annotations

from cvdoctor.finding import Problem, report_problems, skipped
from cvdoctor.registry import register
from cvdoctor.sam.prompts import RECIPE, problems as prompt_problems

TITLE = "SAM prompts (predict)"
REAL_MASK_SIDE = 256


@register("model.sam_prompts", targets=["sam"], order=16, title=TITLE, recipes=[RECIPE],
          needs=["sam_prompts"])
def check(ctx):
    """Reads the prompts of `get_prompts()` (the keyword arguments you pass to
    `SamPredictor.predict`) and the literal prompts of `predict(...)` calls in the file, checks
    them against SAM's contract and runs `predict` with them on the image from `get_image()`.

    Fails when predict raises or would (point_coords not an (N, 2) NumPy array, point_labels
    missing or not (N,), a box that is not one [x1, y1, x2, y2] array, a mask_input that is not
    1x256x256). Warns when the prompts point at nothing (points outside the image or normalized to
    0-1, (row, col) order, all points background, a box with x2 <= x1, no prompt at all) or when a
    single point is asked for one mask only: the guide's "SAM predictions are empty masks"."""
    facts = ctx.fact("sam_prompts")
    if facts.get("error"):
        return report_problems(TITLE, [Problem("fail", RECIPE, facts["error"],
                                               "Return the keyword arguments of predict() as "
                                               "a dict from get_prompts().", {})], "")
    sources = facts.get("sources") or []
    if not sources:
        if facts.get("not_imported"):
            return skipped(TITLE, f"the set-up was not imported: {facts['not_imported']} (see "
                           "model.sam_checkpoint)")
        return skipped(TITLE, "no get_prompts() and no literal prompts in predict(...) calls")
    hw = tuple(facts["image_hw"]) if facts.get("image_hw") else None
    problems: list[Problem] = []
    described = []
    for entry in sources:
        found = prompt_problems(entry["prompts"], hw, REAL_MASK_SIDE)
        for p in found:
            p.message = f"{entry['from']}: {p.message}"
        run = entry.get("run") or {}
        if run and not run.get("ok") and not any(p.status == "fail" for p in found):
            found.append(Problem("fail", RECIPE, f"{entry['from']}: predict raised "
                                 f"{run.get('error')}", "Give prompts in SAM's shapes: "
                                 "point_coords (N, 2), point_labels (N,), box (4,).", run))
        problems += found
        described.append(_describe(entry, hw))
    image = f" on the {hw[1]}x{hw[0]} image" if hw else " (no get_image(): ranges unchecked)"
    return report_problems(TITLE, problems, "; ".join(described) + image,
                           prompts=[e["describe"] for e in sources])


def _describe(entry: dict, hw) -> str:
    d = entry["describe"]
    parts = []
    pc = d.get("point_coords")
    if pc:
        n = pc["shape"][0] if pc.get("shape") else "?"
        parts.append(f"{n} point{'s' if n != 1 else ''}")
    if d.get("box"):
        parts.append(f"box {d['box']['values']}")
    if d.get("mask_input"):
        parts.append("a mask_input")
    mm = d.get("multimask_output", True)
    run = entry.get("run") or {}
    masks = f", predict -> masks {run['masks']}" if run.get("ok") else ""
    return f"{entry['from']}: {', '.join(parts) or 'no prompt'}, multimask_output={mm}{masks}"
