"""Parameters an architecture's own forward leaves without a gradient, by its design.

SAM's mask decoder (segment-anything, and the decoders that keep its layout and attribute
names, such as MobileSAM's, SAM-HQ's and SAM 2's) computes one mask per mask token and an IoU score per mask, then returns a
slice: `multimask_output=False` keeps mask token 0, `True` keeps tokens 1..3. The hypernetwork
MLPs of the tokens it drops sit in the graph and get exactly zero gradient, on every step and by
construction. A fine-tune whose loss reads the masks only leaves the IoU head without a gradient
too. Calling that "dead" or "detached" would fail the standard SAM fine-tune; the gradient check
names these parameters in its note instead.

Recognized by structure, not by class: a module with an `output_hypernetworks_mlps` ModuleList
(one MLP per mask token) and an `iou_prediction_head`.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from cvdoctor.model.modules import no_gradient


def idle_by_design(model: nn.Module, grads: Mapping[str, torch.Tensor | None]) -> dict[str, str]:
    """Trainable parameter name -> why the architecture leaves it without a gradient here.

    Only parameters whose gradient is None or all zero in `grads`, and only when the same
    decoder shows the design at work: some of its mask-token MLPs got a gradient (the loss reads
    the masks), the others got none."""
    reasons: dict[str, str] = {}
    for prefix, module in model.named_modules():
        mlps = getattr(module, "output_hypernetworks_mlps", None)
        iou = getattr(module, "iou_prediction_head", None)
        if not isinstance(mlps, nn.ModuleList) or len(mlps) < 2 or not isinstance(iou, nn.Module):
            continue
        at = f"{prefix}." if prefix else ""

        def trainable(sub: str) -> list[str]:
            return [f"{at}{sub}.{n}" for n, p in module.get_submodule(sub).named_parameters()
                    if p.requires_grad and f"{at}{sub}.{n}" in grads]

        tokens = [trainable(f"output_hypernetworks_mlps.{i}") for i in range(len(mlps))]
        live = [i for i, names in enumerate(tokens) if names and not all(no_gradient(grads[n])
                                                                         for n in names)]
        if not live:
            continue
        where = f"SAM mask decoder `{prefix or '<root>'}`"
        mode = ("multimask_output=False returns mask token 0 only" if live == [0] else
                f"the masks returned come from mask token{'s' if len(live) > 1 else ''} "
                f"{', '.join(map(str, live))} only")
        idle = {i: [n for n in names if no_gradient(grads[n])]
                for i, names in enumerate(tokens) if i not in live}
        dropped = [i for i, names in idle.items() if names]
        for i in dropped:
            for n in idle[i]:
                many = len(dropped) > 1
                reasons[n] = (f"{where}: {mode}, so the MLP{'s' if many else ''} of mask "
                              f"token{'s' if many else ''} {', '.join(map(str, dropped))} "
                              f"{'are' if many else 'is'} computed and sliced away")
        head = trainable("iou_prediction_head")
        if head and all(no_gradient(grads[n]) for n in head):
            for n in head:
                reasons[n] = (f"{where}: the loss does not read the predicted IoU scores "
                              f"(iou_predictions), so its IoU head gets none")
    return reasons
