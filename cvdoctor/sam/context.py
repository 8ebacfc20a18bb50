"""The `cvdoctor model` context of a SAM set-up.

The checks registered for "sam" targets always run. The usual model checks run too when the file
fine-tunes (it defines `training_step`): the spec is then the file's own model, batch, step and
optimizer. An inference set-up has no loss to check, so they are not part of its run.
"""
from __future__ import annotations

import os
from typing import Any, Callable

from cvdoctor.model.context import ModelContext, ModelSpec
from cvdoctor.sam.checkpoint import analyze, blocks_import
from cvdoctor.sam.setup import SamSetup, load_file
from cvdoctor.sam.target import SamTarget, parse_target

FAMILY = "sam"
VARIANT_BY_WIDTH = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}
SAM_ANSWERS = {"model.checkpoint"}  # usual checks a SAM check answers for SAM set-ups


class SamContext(ModelContext):
    fact_packages = ModelContext.fact_packages + ("cvdoctor.sam.facts",)
    family = FAMILY
    target_kind = FAMILY

    def __init__(self, target: SamTarget, setup: SamSetup, checkpoint_info: dict[str, Any],
                 values: dict[str, Any], *, recorded: dict[str, Any] | None = None,
                 progress: Callable[[str], None] | None = None):
        hints = {k: v for k, v in values.items() if v is not None}
        hints["family"] = FAMILY
        if setup.spec is not None:
            spec = setup.spec
            spec.hints = {**spec.hints, **hints}
        else:
            spec = ModelSpec(model=setup.sam, inputs=None, name=target.text, batch_source="none",
                             loss_source="none", hints=hints)
        device = values.get("device") or ("cpu" if setup.sam is None else None)
        super().__init__(spec, device=device, budget_s=values.get("budget"), progress=progress,
                         recorded=recorded, label=target.text)
        self.sam_target = target
        self.setup = setup
        self.checkpoint_info = checkpoint_info
        self.cwd = os.getcwd()
        self.model_type = target.model_type or _variant_of(setup.sam) or \
            ((checkpoint_info.get("variant") or {}).get("variant"))
        self._tiny = None
        self._real = None

    def applies(self, check) -> bool | str:
        """SAM checks run; the usual model checks run on a fine-tuning set-up only, except the
        generic checkpoint fit, which model.sam_checkpoint answers for SAM's registry."""
        if FAMILY in (check.targets or ()):
            return True
        if check.id in SAM_ANSWERS:
            return False
        if not check.targets and self.setup.spec is not None:
            return self.opted_in(check)  # opt-in checks (--ddp, amp) only when asked for
        return self.not_for_this_target(check)

    # --- what the checks run SAM's code on ---------------------------------------------------
    def run_real_encoder(self) -> bool:
        """The full-size encoder runs under --deep, or when the model sits on a CUDA device."""
        return bool(self.option("deep", False)) or self.device.type == "cuda"

    def real_sam(self):
        if self.setup.sam is not None:
            return self.setup.sam
        if self._real is None and self.model_type:
            from segment_anything import sam_model_registry

            ck = self.sam_target.checkpoint if (self.checkpoint_info.get("exists") and
                                                not blocks_import(self.checkpoint_info)) else None
            self._real = sam_model_registry[self.model_type](checkpoint=ck).to(self.device).eval()
        return self._real

    def predictor_for_checks(self):
        """(predictor, which): the user's predictor on the real model under --deep or on a GPU,
        else one on a tiny SAM built from segment-anything's modules (same code paths)."""
        from segment_anything import SamPredictor

        if self.run_real_encoder():
            if self.setup.predictor is not None:
                return self.setup.predictor, "the set-up's SamPredictor"
            sam = self.real_sam()
            if sam is not None:
                return SamPredictor(sam), f"SAM {self.model_type}"
        if self._tiny is None:
            from cvdoctor.sam.tiny import tiny_sam

            self._tiny = SamPredictor(tiny_sam())
        return self._tiny, "a tiny SAM (same predictor code; --deep runs the real one)"

    @staticmethod
    def mask_input_side(predictor) -> int:
        from cvdoctor.sam.tiny import mask_input_side

        return mask_input_side(predictor.model)


def _variant_of(sam) -> str | None:
    try:
        width = sam.image_encoder.patch_embed.proj.out_channels
    except AttributeError:
        return None
    return VARIANT_BY_WIDTH.get(width)


def sam_context(target: str, values: dict[str, Any], *,
                recorded: dict[str, Any] | None = None,
                progress: Callable[[str], None] | None = None) -> SamContext:
    parsed = parse_target(target, values.get("checkpoint"))
    info = analyze(parsed.checkpoint, parsed.model_type)
    if parsed.checkpoint_source:
        info["source"] = parsed.checkpoint_source
    if parsed.kind == "file":
        if progress:
            progress(f"importing {target} ...")
        setup = load_file(parsed, values, blocks_import(info))
    else:
        setup = SamSetup(not_imported="a model type, not a set-up file")
    return SamContext(parsed, setup, info, values, recorded=recorded, progress=progress)
