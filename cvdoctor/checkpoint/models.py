"""The model side of the fit check: the keys, shapes and dtypes of a model's state dict.

Zoo targets (``torchvision:resnet18``, ``timm:...``, ``segment_anything:vit_b|vit_l|vit_h``) are
built on the ``meta`` device: shapes without memory or time, even for SAM vit_h. Files and
``package.module:attr`` targets go through `cvdoctor model`'s loader (the user's code builds
the model). An ``nn.Module`` passed through the Python API is read as it is, never modified.
Imports torch; only `cvdoctor ckpt --model` and the model command use it.
"""
from __future__ import annotations

from typing import Any

from cvdoctor.errors import TargetError

SAM_VARIANTS = ("vit_b", "vit_l", "vit_h")
META_ZOOS = ("torchvision", "timm", "segment_anything")


def state_specs(model: Any) -> dict[str, Any]:
    """Keys, shapes and dtypes of `model.state_dict()`, and which keys are parameters."""
    state = model.state_dict()
    return {"tensors": {k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")}
                        for k, v in state.items() if hasattr(v, "shape")},
            "params": [name for name, _ in model.named_parameters()],
            "class": f"{type(model).__module__}.{type(model).__qualname__}"}


def build_meta(target: str, num_classes: int | None = None):
    """A zoo model on the meta device (no memory, no weights, no download)."""
    import torch

    zoo, _, name = target.partition(":")
    with torch.device("meta"):
        if zoo == "segment_anything":
            if name not in SAM_VARIANTS:
                raise TargetError(f"{target}: segment_anything has vit_b, vit_l and vit_h")
            try:
                from segment_anything import sam_model_registry
            except ImportError as exc:
                raise TargetError(f"{target}: segment_anything is not importable ({exc}); "
                                  "pip install segment-anything") from None
            return sam_model_registry[name]()
        from cvdoctor.model.loader import LoadOptions, _timm_model, _torchvision_model

        options = LoadOptions(num_classes=num_classes)
        if zoo == "torchvision":
            return _torchvision_model(name, options, target)[0]
        return _timm_model(name, options, target)[0]


def model_specs(model: Any, num_classes: int | None = None) -> dict[str, Any]:
    """Specs for a TARGET string or an nn.Module; TargetError when it cannot be built."""
    if not isinstance(model, str):
        if not hasattr(model, "state_dict"):
            raise TargetError(f"model= must be a TARGET string or an nn.Module, not "
                              f"{type(model).__name__}")
        out = state_specs(model)
        out.update(target=None, label=type(model).__name__, kind="object")
        return out
    zoo, sep, name = model.partition(":")
    if sep and zoo in META_ZOOS:
        if not name:
            raise TargetError(f"{model}: give a model name, e.g. {zoo}:"
                              f"{'vit_b' if zoo == 'segment_anything' else 'resnet18'}")
        built = build_meta(model, num_classes)
        out = state_specs(built)
        out.update(target=model, label=model, kind="zoo")
        return out
    from cvdoctor.model.loader import LoadOptions, load_target

    spec = load_target(model, LoadOptions(num_classes=num_classes))
    out = state_specs(spec.model)
    out.update(target=model, label=model, kind="file")
    return out
