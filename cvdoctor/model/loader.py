"""Turn what the user points `cvdoctor model` at into a ModelSpec.

A target is a Python file (`path/to/train.py`), a module attribute (`package.module:attr`) or a
zoo spec (`torchvision:resnet18`, `timm:vit_tiny_patch16_224`). From a file or module the names
below are looked up in order, first found wins. Anything that stops us from building the spec is
a TargetError whose message tells the user what to change; the command exits 2 with it.
"""
from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import os
import sys
import traceback
import types
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

MODEL_FACTORIES = ("build_model", "get_model", "create_model")
MODEL_ATTRS = ("model",)
BATCH_FUNCS = ("get_batch",)
BATCH_ATTRS = ("batch",)
LOADER_ATTRS = ("train_loader", "dataloader")
LOADER_FUNCS = ("get_dataloader", "train_dataloader")
LOSS_ATTRS = ("loss_fn", "criterion")
TRAINING_STEP = "training_step"
OPTIMIZER_FACTORIES = ("build_optimizer", "make_optimizer")
OPTIMIZER_ATTR = "optimizer"
ZOOS = ("torchvision", "timm")

from cvdoctor.errors import TargetError  # noqa: E402  (re-exported: loaders raise it)
from cvdoctor.files import special_kind  # noqa: E402
DEFAULT_BATCH_SIZE = 8
TORCHVISION_DEFAULT_SIZE = 224


# Module-level names in a model file that say how the model is trained, and the type each must
# have (a value of another type is ignored). They reach the checks as `ModelSpec.hints`; a
# command-line option of the same name overrides the file.
FILE_HINTS: dict[str, type | tuple[type, ...]] = {
    "num_classes": int,
    "input_shape": (tuple, list),
    "frozen": (list, tuple, str),  # names/globs of parameters that must not move (model.frozen)
    "amp": str,  # autocast dtype training uses: "bfloat16" / "float16" (model.amp)
    "autocast_dtype": object,  # the same as a torch.dtype (torch.float16)
    "grad_scaler": (bool, object),  # True/False, or the torch.amp.GradScaler training uses
    "checkpoint": str,  # a weights file the model is meant to load (model.checkpoint checks it)
    "weights": str,
    "ddp": int,  # trained with DDP on N processes; get_batch() is one rank's batch (model.ddp*)
    "ddp_timeout": (int, float),  # seconds: every collective, and a rank without progress
}


@dataclass
class LoadOptions:
    input_shape: tuple[int, int, int] | None = None
    num_classes: int | None = None
    batch_size: int | None = None
    model_name: str | None = None  # --model NAME: another attribute or factory
    hints: dict[str, Any] = field(default_factory=dict)  # command-line values of FILE_HINTS


def parse_input_shape(text: str | tuple | list | None) -> tuple[int, int, int] | None:
    """'3,32,32' or '3x32x32' (or (3, 32, 32)) -> (3, 32, 32)."""
    if text is None:
        return None
    if isinstance(text, (tuple, list)):
        parts = list(text)
    else:
        parts = [p for p in str(text).replace("x", ",").replace("X", ",").replace(" ", "")
                 .split(",") if p]
    try:
        shape = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise TargetError(f"--input-shape must be C,H,W with positive integers, got {text!r}")
    return shape  # type: ignore[return-value]


def load_target(target: str, options: LoadOptions | None = None):
    """Build the ModelSpec for `target`, or raise TargetError."""
    options = options or LoadOptions()
    zoo, sep, name = target.partition(":")
    if sep and zoo in ZOOS:
        return _load_zoo(zoo, name, options, target)
    path = Path(target)
    if target.endswith(".py") or path.exists() or os.sep in target:
        if not path.exists():
            raise TargetError(f"{target}: no such file")
        if path.is_dir():
            raise TargetError(f"{target} is a directory; point at the Python file that builds "
                              "the model")
        kind = special_kind(path.stat().st_mode)
        if kind:
            raise TargetError(f"{target} is {kind}, not a Python file")
        namespace = _import_file(path)
        return _spec_from_namespace(namespace, options, target)
    module_name, _, attr = target.partition(":")
    namespace = _import_module(module_name, target)
    if attr:
        options = LoadOptions(options.input_shape, options.num_classes, options.batch_size,
                              options.model_name or attr, options.hints)
    return _spec_from_namespace(namespace, options, target)


# --- importing the user's code --------------------------------------------------------------
@contextmanager
def _on_sys_path(folder: Path) -> Iterator[None]:
    """Users import sibling modules from their model file, at import time and lazily inside
    build_model() or training_step(): the folder stays on the path for the rest of the run."""
    entry = str(folder.resolve())
    if entry not in sys.path:
        sys.path.insert(0, entry)
    yield


def _user_frames(exc: BaseException, limit: int = 4) -> str:
    """The last frames of a traceback: where the user's code raised, without our own frames."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = str(Path(__file__).resolve().parent.parent) + os.sep  # the cvdoctor package
    frames = [f for f in frames if not str(Path(f.filename).resolve()).startswith(ours)][-limit:]
    lines = "".join(traceback.format_list(frames)).rstrip()
    last = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return f"{lines}\n{last}" if lines else last


def _import_file(path: Path) -> dict[str, Any]:
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TargetError(f"{path}: cannot read it ({exc})") from None
    try:
        code = compile(source, str(path), "exec")
    except SyntaxError as exc:
        where = f"{exc.filename or path}, line {exc.lineno}"
        text = f": `{exc.text.strip()}`" if exc.text and exc.text.strip() else ""
        raise TargetError(f"{path} has a syntax error ({where}): {exc.msg}{text}") from None
    module_name = f"cvdoctor_target_{abs(hash(str(path.resolve())))}"
    module = types.ModuleType(module_name)
    module.__file__ = str(path.resolve())
    sys.modules[module_name] = module  # dataclasses and pickling look the module up by name
    try:
        with _on_sys_path(path.parent):
            exec(code, module.__dict__)  # noqa: S102 - the user's own model file
    except SyntaxError as exc:  # a sibling module the file imports
        raise TargetError(f"importing {path} failed: a syntax error in {exc.filename}, "
                          f"line {exc.lineno}: {exc.msg}") from None
    except BaseException as exc:  # noqa: BLE001 - SystemExit from a script's main guard too
        sys.modules.pop(module_name, None)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise TargetError(f"importing {path} raised {type(exc).__name__}:\n"
                          f"{_user_frames(exc)}") from None
    return module.__dict__


def _import_module(module_name: str, target: str) -> dict[str, Any]:
    if not module_name or not all(p.isidentifier() for p in module_name.split(".")):
        raise TargetError(f"{target}: not a file, a 'package.module:attr' or a zoo spec "
                          f"({', '.join(z + ':NAME' for z in ZOOS)})")
    try:
        with _on_sys_path(Path.cwd()):
            module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise TargetError(f"{target}: no such file, and no module named {exc.name!r} on the "
                              "Python path") from None
        raise TargetError(f"importing {module_name} raised {type(exc).__name__}:\n"
                          f"{_user_frames(exc)}") from None
    except SyntaxError as exc:
        raise TargetError(f"{module_name} has a syntax error ({exc.filename}, line {exc.lineno})"
                          f": {exc.msg}") from None
    except Exception as exc:  # noqa: BLE001
        raise TargetError(f"importing {module_name} raised {type(exc).__name__}:\n"
                          f"{_user_frames(exc)}") from None
    return vars(module)


def _call_user(func: Callable, what: str, *args, **kwargs) -> Any:
    try:
        return func(*args, **kwargs)
    except SystemExit as exc:
        raise TargetError(f"{what} called sys.exit({exc.code!r})") from None
    except Exception as exc:  # noqa: BLE001
        raise TargetError(f"{what} raised {type(exc).__name__}:\n{_user_frames(exc)}") from None


def _accepts(func: Callable, name: str) -> bool:
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


# --- the lookups ----------------------------------------------------------------------------
def _find_model(ns: dict[str, Any], options: LoadOptions, target: str):
    from torch import nn

    def build(name: str):
        obj = ns[name]
        if isinstance(obj, nn.Module):
            return obj, name
        if callable(obj):
            kwargs = {}
            if options.num_classes is not None and _accepts(obj, "num_classes"):
                kwargs["num_classes"] = options.num_classes
            model = _call_user(obj, f"{name}()", **kwargs)
            if not isinstance(model, nn.Module):
                raise TargetError(f"{name}() returned {type(model).__name__}, not a torch "
                                  "nn.Module")
            return model, f"{name}()"
        raise TargetError(f"{target}: {name} is a {type(obj).__name__}, not an nn.Module or a "
                          "function that builds one")

    if options.model_name:
        if options.model_name not in ns:
            close = difflib.get_close_matches(options.model_name, [k for k in ns if
                                                                   not k.startswith("_")], n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise TargetError(f"{target}: no attribute {options.model_name!r}{hint}")
        return build(options.model_name)
    for name in MODEL_FACTORIES:
        if callable(ns.get(name)):
            return build(name)
    for name in MODEL_ATTRS:
        if isinstance(ns.get(name), nn.Module):
            return build(name)
    modules = [k for k, v in ns.items() if isinstance(v, nn.Module) and not k.startswith("_")]
    hint = (f" It defines nn.Module instance(s) {', '.join(modules)}: pick one with --model NAME."
            if modules else "")
    looked = ", ".join([f"{n}()" for n in MODEL_FACTORIES] + list(MODEL_ATTRS))
    raise TargetError(f"{target}: nothing that looks like a model. Looked for {looked} "
                      f"(an nn.Module) and found none.{hint}")


def _as_batch(obj: Any, source: str) -> tuple[Any, Any]:
    if isinstance(obj, (tuple, list)) and len(obj) >= 2:
        return obj[0], obj[1]
    if isinstance(obj, dict):
        for xk, yk in (("inputs", "targets"), ("image", "label"), ("images", "labels"),
                       ("x", "y")):
            if xk in obj and yk in obj:
                return obj[xk], obj[yk]
    raise TargetError(f"{source} must give (inputs, targets), got {type(obj).__name__}"
                      + (f" of length {len(obj)}" if isinstance(obj, (tuple, list)) else ""))


def _first_batch(loader: Any, source: str) -> tuple[Any, Any]:
    try:
        iterator = iter(loader)
    except TypeError:
        raise TargetError(f"{source} is a {type(loader).__name__}, not an iterable of "
                          "batches") from None
    try:
        batch = _call_user(next, f"the first batch of {source}", iterator)
    except TargetError as exc:
        if "StopIteration" in str(exc):
            raise TargetError(f"{source} is empty: it yielded no batch") from None
        raise
    return _as_batch(batch, f"the first batch of {source}")


def _find_batch(ns: dict[str, Any]):
    for name in BATCH_FUNCS:
        if callable(ns.get(name)):
            return (*_as_batch(_call_user(ns[name], f"{name}()"), f"{name}()"), name)
    for name in BATCH_ATTRS:
        if name in ns and not callable(ns[name]) and not isinstance(ns[name], types.ModuleType):
            return (*_as_batch(ns[name], name), "batch")
    for name in LOADER_ATTRS:
        if name in ns and ns[name] is not None and not callable(ns[name]):
            return (*_first_batch(ns[name], name), "loader")
    for name in LOADER_FUNCS:
        if callable(ns.get(name)):
            return (*_first_batch(_call_user(ns[name], f"{name}()"), f"{name}()"), "loader")
    return None


def _limit_batch(inputs: Any, targets: Any, batch_size: int | None):
    """--batch-size B keeps the first B samples of a provided batch (tensors only)."""
    import torch

    if not batch_size or not isinstance(inputs, torch.Tensor) or inputs.dim() == 0:
        return inputs, targets
    if inputs.shape[0] <= batch_size:
        return inputs, targets
    if isinstance(targets, torch.Tensor) and targets.dim() and targets.shape[0] == inputs.shape[0]:
        targets = targets[:batch_size]
    return inputs[:batch_size], targets


def _inferred_num_classes(model) -> int | None:
    """Output size of the last Linear (or 1x1-conv head) by registration order: a guess for
    synthesizing labels only, never reported as the user's num_classes."""
    from torch import nn

    last = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last = module.out_features
        elif isinstance(module, nn.Conv2d):
            last = module.out_channels
    return last


def _spec_from_namespace(ns: dict[str, Any], options: LoadOptions, target: str):
    import torch

    from cvdoctor.model.context import ModelSpec
    from cvdoctor.model.synth import synthesize_batch

    model, model_source = _find_model(ns, options, target)
    optimizer = ns.get(OPTIMIZER_ATTR)
    optimizer_factory = next((ns[n] for n in OPTIMIZER_FACTORIES if callable(ns.get(n))), None)
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        if optimizer_factory is None and callable(optimizer):
            optimizer_factory = optimizer
        optimizer = None
    if optimizer_factory is not None:
        optimizer = None  # a factory builds exactly what the user trains with
    if optimizer is not None and not options.model_name:
        model = _model_bound_to(optimizer, model, ns)

    num_classes = options.num_classes if options.num_classes is not None else _hint(
        ns, "num_classes", int)
    input_shape = options.input_shape or _hint(ns, "input_shape", (tuple, list))
    if input_shape is not None:
        try:
            input_shape = tuple(int(v) for v in input_shape)
        except (TypeError, ValueError):
            raise TargetError(f"{target}: input_shape must be (C, H, W), got "
                              f"{input_shape!r}") from None
        if len(input_shape) != 3:
            raise TargetError(f"{target}: input_shape must be (C, H, W), got {input_shape}")

    found = _find_batch(ns)
    if found is not None:
        inputs, targets, batch_source = found
        inputs, targets = _limit_batch(inputs, targets, options.batch_size)
    else:
        if input_shape is None:
            looked = ", ".join([f"{n}()" for n in BATCH_FUNCS] + list(BATCH_ATTRS)
                               + list(LOADER_ATTRS) + [f"{n}()" for n in LOADER_FUNCS])
            raise TargetError(f"{target}: no batch to check the model on. Looked for {looked}; "
                              "or give input_shape = (C, H, W) in the file or --input-shape C,H,W "
                              "to synthesize one")
        classes = num_classes or _inferred_num_classes(model) or 10
        inputs, targets = synthesize_batch(input_shape, classes,
                                           options.batch_size or DEFAULT_BATCH_SIZE)
        batch_source = "synthesized"

    training_step = ns.get(TRAINING_STEP) if callable(ns.get(TRAINING_STEP)) else None
    loss_fn = next((ns[n] for n in LOSS_ATTRS if callable(ns.get(n))), None)
    loss_source = "training_step" if training_step else ("given" if loss_fn else "default")
    hints = {name: value for name in FILE_HINTS
             if (value := _hint(ns, name, FILE_HINTS[name])) is not None}
    hints.update(options.hints)
    hints.update({k: v for k, v in (("num_classes", num_classes), ("input_shape", input_shape))
                  if v is not None})
    return ModelSpec(model=model, inputs=inputs, targets=targets, loss_fn=loss_fn,
                     training_step=training_step, optimizer=optimizer,
                     optimizer_factory=optimizer_factory, num_classes=num_classes,
                     input_shape=input_shape, name=f"{target} ({model_source})",
                     batch_source=batch_source, loss_source=loss_source, hints=hints)


def _hint(ns: dict[str, Any], name: str, kind: type | tuple[type, ...]):
    """The file's value for a FILE_HINTS name when it has the declared type, else None."""
    value = ns.get(name)
    if value is None or callable(value) or isinstance(value, types.ModuleType):
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        return None
    if not isinstance(value, kinds):
        return None
    return tuple(value) if isinstance(value, list) and tuple in kinds else value


def _model_bound_to(optimizer, model, ns: dict[str, Any]):
    """An optimizer instance is bound to one model object. When the factory built a fresh model
    that the optimizer knows nothing of, the module-level model it was built on is the one the
    user trains: use that one (otherwise every parameter looks missing from the optimizer)."""
    from torch import nn

    held = {id(p) for g in optimizer.param_groups for p in g["params"]}
    if any(id(p) in held for p in model.parameters()):
        return model
    for name in MODEL_ATTRS:
        candidate = ns.get(name)
        if isinstance(candidate, nn.Module) and any(id(p) in held for p in candidate.parameters()):
            return candidate
    return model


# --- zoo specs ------------------------------------------------------------------------------
def _load_zoo(zoo: str, name: str, options: LoadOptions, target: str):
    from cvdoctor.model.context import ModelSpec
    from cvdoctor.model.synth import synthesize_batch

    if not name:
        raise TargetError(f"{target}: give a model name, e.g. {zoo}:resnet18")
    if zoo == "torchvision":
        model, default_shape = _torchvision_model(name, options, target)
    else:
        model, default_shape = _timm_model(name, options, target)
    input_shape = options.input_shape or default_shape
    num_classes = options.num_classes or _inferred_num_classes(model) or 1000
    inputs, targets = synthesize_batch(input_shape, num_classes,
                                       options.batch_size or DEFAULT_BATCH_SIZE)
    return ModelSpec(model=model, inputs=inputs, targets=targets, num_classes=num_classes,
                     input_shape=tuple(input_shape), name=target, batch_source="synthesized",
                     loss_source="default", hints=dict(options.hints))


def _torchvision_model(name: str, options: LoadOptions, target: str):
    try:
        import torchvision.models as tvm
    except ImportError as exc:
        raise TargetError(f"{target}: torchvision is not importable ({exc}); "
                          "pip install torchvision") from None
    known = tvm.list_models(module=tvm)  # classification models only
    if name not in known:
        others = tvm.list_models()
        if name in others:
            raise TargetError(f"{target}: only torchvision classification models are supported "
                              "as zoo specs; for detection or segmentation write a file with "
                              "build_model(), get_batch() and training_step(model, batch)")
        close = difflib.get_close_matches(name, known, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise TargetError(f"{target}: torchvision has no classification model {name!r}.{hint}")
    kwargs: dict[str, Any] = {"weights": None}
    if options.num_classes is not None:
        kwargs["num_classes"] = options.num_classes
    if name.startswith("inception") or name == "googlenet":
        kwargs["aux_logits"] = False  # their training-mode outputs are tuples otherwise
        kwargs["init_weights"] = True
    model = _call_user(tvm.get_model, f"torchvision.models.get_model({name!r})", name, **kwargs)
    size = TORCHVISION_DEFAULT_SIZE
    try:  # the model's own evaluation crop (299 for inception_v3), metadata only, no download
        weights = tvm.get_model_weights(name)
        crop = list(weights)[0].transforms().crop_size
        size = int(crop[0])
    except Exception:  # noqa: BLE001 - metadata is a nicety, 224 is the classification default
        pass
    channels = options.input_shape[0] if options.input_shape else 3
    return model, (channels, size, size)


def _timm_model(name: str, options: LoadOptions, target: str):
    try:
        import timm
    except ImportError as exc:
        raise TargetError(f"{target}: timm is not importable ({exc}); pip install timm") from None
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise TargetError(f"{target}: timm has no model {name!r}.{hint}")
    kwargs: dict[str, Any] = {"pretrained": False}
    if options.num_classes is not None:
        kwargs["num_classes"] = options.num_classes
    if options.input_shape is not None:
        kwargs["in_chans"] = options.input_shape[0]
        sized = dict(kwargs, img_size=options.input_shape[1:])
        try:  # ViTs fix their patch grid at construction: build them for the requested size
            model = timm.create_model(name, **sized)
        except TypeError:
            model = None
        if model is not None:
            return model, options.input_shape
    model = _call_user(timm.create_model, f"timm.create_model({name!r})", name, **kwargs)
    try:
        from timm.data import resolve_data_config

        shape = tuple(resolve_data_config({}, model=model)["input_size"])
    except Exception:  # noqa: BLE001
        shape = tuple(model.pretrained_cfg.get("input_size", (3, 224, 224)))
    return model, options.input_shape or shape
