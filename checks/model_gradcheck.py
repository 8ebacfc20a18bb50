"""model.gradcheck: do the model's custom autograd Functions compute the right gradients?

A hand-written `backward()` that is wrong trains anyway, just toward the wrong place, and nothing
else reports it. The shared pass lists the torch.autograd.Function classes in the loss's graph;
each is checked against finite differences, directional derivatives in float64, on the arguments
it gets inside the model (cvdoctor.model.gradcheck: how, and what passes by design).
"""
from __future__ import annotations

from cvdoctor.finding import Finding, failed, passed, skipped
from cvdoctor.model.gradcheck import check_functions
from cvdoctor.model.tensors import batch_size
from cvdoctor.registry import register
from cvdoctor.text import plural

TITLE = "Custom autograd functions"
RECIPES = ["custom-function-gradient"]


@register("model.gradcheck", order=62, title=TITLE, recipes=RECIPES, needs=["base"])
def check(ctx) -> Finding:
    """Finds the custom torch.autograd.Function classes whose backward the loss runs and
    compares each backward with finite differences of its forward on the arguments it gets
    inside the model (float64, the first 2 samples; each input the model differentiates, each
    output the loss uses), along 4 random direction pairs: u . (f(x + eps v) - f(x - eps v)) /
    2 eps against v . (J^T u) from one backward. No Jacobian is built: memory and time stay
    linear in the activation, capped at 2M values (then one sample cropped to 32 x 32) and 20 s
    a Function. Fails when a backward disagrees with finite differences on the recorded inputs
    and again on inputs moved slightly (a kink hit by chance passes), naming the output, the
    input and the largest relative difference. Passes, and says so, two surrogates by design: a
    forward that is flat (piecewise constant: round, sign, a quantizer, also with a scale) with
    a backward that passes a gradient anyway (a straight-through estimator), and a forward that
    passes its input through with a backward that is one constant c times the derivative
    (gradient reversal c < 0, gradient scaling, c = 0 blocks): a wrong constant in such a layer
    therefore cannot be caught, while a constant factor off in any other forward (x ** 2
    without its 2) fails. Skips when the model uses no custom Function, and names those it
    could not check (the forward fails in float64 or returns float32, raises on moved inputs,
    is random under a fixed seed, too large, too slow, not called again)."""
    base = ctx.fact("base")
    if not base.custom_functions:
        if not base.ok:
            return skipped(TITLE, "the shared forward/backward failed (see model.forward): no "
                           "graph to look for custom autograd functions in")
        return skipped(TITLE, "the model uses no custom torch.autograd.Function (nothing to "
                       "gradcheck)")
    inputs, _ = ctx.batch()
    results = check_functions(ctx, base.custom_functions, batch_size(inputs))
    evidence = {"functions": {r.name: {"status": r.status, "detail": r.detail,
                                       "input_shapes": [list(s) for s in r.inputs],
                                       "scale": r.scale, "worst": r.worst}
                              for r in results}}
    bad = [r for r in results if r.status == "mismatch"]
    good = [r for r in results if r.status in ("ok", "surrogate", "scaled")]
    unchecked = [r for r in results if r.status in ("not-called", "not-checked")]
    note = "; not checked: " + "; ".join(f"`{r.name}` ({r.detail})" for r in unchecked) \
        if unchecked else ""
    if bad:
        first = bad[0]
        return failed(
            TITLE, f"{_names(bad)} {'returns' if len(bad) == 1 else 'return'} gradients that "
            f"disagree with finite differences (float64, on its own inputs from the model): "
            f"{first.detail}{note}",
            f"Fix `{first.name}.backward()` (one gradient per forward input, the chain rule with "
            "grad_output, the saved tensors it needs); torch.autograd.gradcheck on small "
            "double inputs verifies it.", "custom-function-gradient", **evidence)
    if not good:
        return skipped(TITLE, "no custom autograd Function could be checked" + note, **evidence)
    return passed(TITLE, "; ".join(_verdicts(good)) + note, **evidence)


def _verdicts(results) -> list[str]:
    out = []
    ok = [r for r in results if r.status == "ok"]
    if ok:
        out.append(f"{_names(ok)} {'matches' if len(ok) == 1 else 'match'} finite differences "
                   "(float64, directional derivatives)")
    surrogate = [r for r in results if r.status == "surrogate"]
    if surrogate:
        out.append(f"{_names(surrogate)} {'is a' if len(surrogate) == 1 else 'are'} "
                   f"straight-through estimator{'' if len(surrogate) == 1 else 's'} by design: "
                   "the forward is flat (piecewise constant: round, sign, a quantizer, possibly "
                   "times a scale) and the backward passes a surrogate gradient instead")
    for r in results:
        if r.status == "scaled":
            kind = ("gradient reversal" if r.scale < 0 else "gradient blocked" if r.scale == 0
                    else "gradient scaling")
            out.append(f"`{r.name}`: backward = {r.scale:g} × its forward's derivative, the "
                       f"input passed through ({kind} by design)")
    return out


def _names(results) -> str:
    return (f"{plural(len(results), 'custom autograd Function')} "
            f"({', '.join(f'`{r.name}`' for r in results)})")
