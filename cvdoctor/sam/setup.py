"""A SAM set-up as the user builds it: the file imported (as `cvdoctor model` imports model
files), and what it defines: the `Sam` model, the `SamPredictor`, `get_image()`,
`get_prompts()`, and for mask-decoder fine-tuning a `training_step` with its batch, which make it
an ordinary ModelSpec for the usual model checks.

The file is imported only when its checkpoint is there and fits its model type (both read
without loading anything); otherwise importing it would raise the very error model.sam_checkpoint
explains, and the checks that need the imported set-up skip.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from cvdoctor.sam.target import SamTarget


@dataclass
class SamSetup:
    imported: bool = False
    not_imported: str | None = None  # why the file was not imported
    sam_name: str | None = None
    sam: Any = None
    predictor: Any = None
    get_image: Callable | None = None
    get_prompts: Callable | None = None
    spec: Any = None  # a ModelSpec when the file defines training_step
    names: list[str] = field(default_factory=list)


def find_instances(ns: dict[str, Any]) -> tuple[str | None, Any, Any]:
    from segment_anything import SamPredictor
    from segment_anything.modeling import Sam

    sam_name, sam, predictor = None, None, None
    for name, value in ns.items():
        if name.startswith("_"):
            continue
        if isinstance(value, Sam) and sam is None:
            sam_name, sam = name, value
        elif isinstance(value, SamPredictor) and predictor is None:
            predictor = value
    if sam is None and predictor is not None:
        sam = predictor.model
    if isinstance(ns.get("model"), Sam):
        sam_name, sam = "model", ns["model"]
    return sam_name, sam, predictor


def load_file(target: SamTarget, values: dict[str, Any], blocked: str | None) -> SamSetup:
    """Import the file unless `blocked` says why not (a missing or mismatched checkpoint)."""
    from cvdoctor.errors import TargetError
    from cvdoctor.model.loader import LoadOptions, _import_file, _spec_from_namespace

    setup = SamSetup()
    if blocked:
        setup.not_imported = blocked
        return setup
    ns = _import_file(Path(target.path))
    setup.imported = True
    setup.names = sorted(k for k in ns if not k.startswith("_"))
    setup.sam_name, setup.sam, setup.predictor = find_instances(ns)
    if setup.sam is None:
        raise TargetError(f"{target.text}: imports segment_anything but builds no SAM model at "
                          "module level (sam = sam_model_registry[model_type](checkpoint=...))")
    setup.get_image = ns.get("get_image") if callable(ns.get("get_image")) else None
    setup.get_prompts = ns.get("get_prompts") if callable(ns.get("get_prompts")) else None
    if callable(ns.get("training_step")):
        options = LoadOptions(batch_size=values.get("batch_size"),
                              model_name=values.get("model_name") or
                              (setup.sam_name if not callable(ns.get("build_model")) else None),
                              hints={})
        setup.spec = _spec_from_namespace(ns, options, target.text)
    return setup
