"""What model checks read: the user's model and batch (never touched) and the tools to work on
copies of them. Computed facts (the shared forward/backward pass, the loss, what reaches the first
convolution, a module trace) live in `cvdoctor.model.facts` and are read with ``ctx.fact(...)``.

Guarantees every model check relies on and must keep:
- the user's model, optimizer, batch and global RNG state are untouched: all work happens on
  deep copies (`ctx.copy_model()`, `ctx.batch()`), inside `rng_guard()`;
- one forward/backward pass (the "base" fact) is shared by every check that can use it.
"""
from __future__ import annotations

import copy
import inspect
import random
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
from torch import nn

from cvdoctor.errors import TargetError
from cvdoctor.factgraph import Context
from cvdoctor.model.tensors import map_tensors


@dataclass
class ModelSpec:
    """What the user handed over. Nothing here is ever modified by cvdoctor."""

    model: nn.Module
    inputs: Any  # a tensor, or a tuple/list (model(*inputs)) or dict (model(**inputs)) of them
    targets: Any = None
    loss_fn: Callable | None = None
    training_step: Callable | None = None  # (model, (inputs, targets)) -> scalar loss
    optimizer: torch.optim.Optimizer | None = None  # an instance bound to `model`'s parameters
    optimizer_factory: Callable | None = None  # params -> optimizer
    num_classes: int | None = None
    input_shape: tuple[int, ...] | None = None
    name: str = "model"
    batch_source: str = "given"  # given | get_batch | batch | loader | synthesized
    loss_source: str = "given"  # given | default | training_step
    # What the model file (or the command line) says about how it is trained, by name
    # (cvdoctor.model.loader.FILE_HINTS): read by the checks that need them.
    hints: dict[str, Any] = field(default_factory=dict)
    compiled: bool = False  # the model was handed over torch.compile'd; `model` is the original

    def __post_init__(self) -> None:
        # torch.compile wraps the module in an OptimizedModule that shares its parameters. The
        # checks read the module itself: the same parameters (the optimizer's by identity),
        # names without the "_orig_mod." prefix, and no recompiling of every hooked copy
        # (a small CNN took 32 s instead of 3 s through the wrapper).
        inner = getattr(self.model, "_orig_mod", None)
        if isinstance(inner, nn.Module) and type(self.model).__name__ == "OptimizedModule":
            self.model, self.compiled = inner, True


def call_model(model: nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


@contextmanager
def rng_guard(seed: int | None = 0) -> Iterator[None]:
    """Restore python, numpy, torch (and CUDA) RNG states afterwards; seed inside if asked."""
    py_state = random.getstate()
    torch_state = torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        import numpy as np

        np_state = np.random.get_state()
    except ImportError:  # numpy is optional for torch
        np, np_state = None, None
    try:
        if seed is not None:
            torch.manual_seed(seed)
            random.seed(seed)
        yield
    finally:
        random.setstate(py_state)
        torch.set_rng_state(torch_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)
        if np is not None:
            np.random.set_state(np_state)


# ErrorInfo.module values for failures before the user's forward ran.
DEEPCOPY_FAILED = "<deepcopy>"
TO_DEVICE_FAILED = "<to-device>"


@dataclass
class ErrorInfo:
    """An exception from the user's code, with where it happened."""

    type: str
    message: str
    module: str | None  # dotted name of the innermost module running when it was raised
    traceback: str

    @property
    def text(self) -> str:
        return f"{self.type}: {self.message}"


def error_info(exc: BaseException, module: str | None = None) -> ErrorInfo:
    return ErrorInfo(type(exc).__name__, str(exc).strip(), module,
                     "".join(traceback.format_exception(type(exc), exc, exc.__traceback__,
                                                        limit=-6)))


class ModelContext(Context):
    fact_packages = ("cvdoctor.model.facts", "cvdoctor.facts", "cvdoctor.ddp.facts")
    parallel = False  # forward passes on the user's model: on demand, in this thread

    def __init__(self, spec: ModelSpec, *, device: str | torch.device | None = None,
                 budget_s: float | None = None, progress: Callable[[str], None] | None = None,
                 seed: int = 0, recorded: dict[str, Any] | None = None, label: str | None = None):
        super().__init__(options=None, recorded=recorded)
        self.spec = spec
        self.device = torch.device(device) if device is not None else _model_device(spec.model)
        self.budget_s = budget_s
        self.started = time.perf_counter()
        self.progress = progress or (lambda _msg: None)
        self.seed = seed
        self.label = label or spec.name

    def option(self, name: str, default: Any = None) -> Any:
        value = self.spec.hints.get(name)
        return default if value is None else value

    # --- time -------------------------------------------------------------------------------
    def time_left(self) -> float | None:
        if self.budget_s is None:
            return None
        return self.budget_s - (time.perf_counter() - self.started)

    # --- copies -----------------------------------------------------------------------------
    def copy_model(self, train: bool = True) -> nn.Module:
        """A deep copy on ctx.device; train mode unless asked otherwise."""
        model = copy.deepcopy(self.spec.model).to(self.device)
        model.train(train)
        return model

    def batch(self) -> tuple[Any, Any]:
        """Inputs and targets on ctx.device (copies: `.to()` of an already-there tensor is the
        same tensor, so clone to keep in-place ops of the user's model off the user's batch)."""
        def clone(obj):
            return map_tensors(obj, lambda t: t.to(self.device).clone())
        return clone(self.spec.inputs), clone(self.spec.targets)

    def loss_fn(self) -> Callable:
        return self.spec.loss_fn if self.spec.loss_fn is not None else nn.CrossEntropyLoss()

    def compute_loss(self, model: nn.Module, inputs: Any, targets: Any) -> tuple[Any, torch.Tensor]:
        """(outputs or None, loss) with the user's training_step or loss_fn(model(x), y)."""
        if self.spec.training_step is not None:
            return None, self.spec.training_step(model, (inputs, targets))
        outputs = call_model(model, inputs)
        return outputs, self.loss_fn()(outputs, targets)

    def build_optimizer(self, model_copy: nn.Module, **overrides: Any) -> torch.optim.Optimizer:
        """An optimizer for `model_copy` with the user's class, hyper-parameters and param groups.

        `overrides` replace hyper-parameters in every group (e.g. lr=..., weight_decay=0) for
        differential re-runs. User optimizer params that are not in the model are dropped.
        """
        user_opt = self.spec.optimizer
        if user_opt is not None:
            by_id = {id(p): n for n, p in self.spec.model.named_parameters()}
            copy_params = dict(model_copy.named_parameters())
            groups = []
            for group in user_opt.param_groups:
                params = [copy_params[by_id[id(p)]] for p in group["params"] if id(p) in by_id]
                if not params:
                    continue
                hyper = {k: v for k, v in group.items() if k != "params"}
                hyper.update(overrides)
                groups.append({"params": params, **hyper})
            defaults = dict(user_opt.defaults)
            defaults.update(overrides)
            return type(user_opt)(groups or [{"params": []}], **_ctor_kwargs(type(user_opt), defaults))
        if self.spec.optimizer_factory is not None:
            opt = self.spec.optimizer_factory(model_copy.parameters())
            for group in opt.param_groups:
                group.update(overrides)
            return opt
        kwargs = {"lr": 1e-3}
        kwargs.update(overrides)
        return torch.optim.Adam(model_copy.parameters(), **kwargs)


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def _ctor_kwargs(cls: type, defaults: dict) -> dict:
    """Only the keyword arguments the optimizer's constructor accepts (defaults may hold more)."""
    try:
        accepted = set(inspect.signature(cls.__init__).parameters)
    except (TypeError, ValueError):
        return defaults
    return {k: v for k, v in defaults.items() if k in accepted}


# --- building the context (cvdoctor/commands/model.py names these) -----------------------------

def _check_device(device: str | None) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        raise TargetError("--device cuda: torch sees no CUDA device here (see `cvdoctor env`)")


def context_for_target(target: str, values: dict[str, Any], *,
                       recorded: dict[str, Any] | None = None,
                       progress: Callable[[str], None] | None = None) -> ModelContext:
    """`cvdoctor model TARGET`: load the file / module / zoo spec into a ModelSpec."""
    from cvdoctor.model.families import family_context
    from cvdoctor.model.loader import LoadOptions, load_target

    _check_device(values.get("device"))
    special = family_context(target, values, recorded=recorded, progress=progress)
    if special is not None:  # YOLO and SAM set-ups have contexts of their own
        return special
    options = LoadOptions(input_shape=values.get("input_shape"),
                          num_classes=values.get("num_classes"),
                          batch_size=values.get("batch_size"),
                          model_name=values.get("model_name"),
                          hints=_cli_hints(values))
    spec = load_target(target, options)
    return ModelContext(spec, device=values.get("device"), budget_s=values.get("budget"),
                        progress=progress, recorded=recorded, label=target)


def _cli_hints(values: dict[str, Any]) -> dict[str, Any]:
    """Command-line options that override what the model file says (FILE_HINTS)."""
    from cvdoctor.model.loader import FILE_HINTS

    return {k: v for k, v in values.items() if k in FILE_HINTS and v not in (None, (), [])}


def context_for_objects(values: dict[str, Any], *, recorded: dict[str, Any] | None = None,
                        progress: Callable[[str], None] | None = None) -> ModelContext:
    """`cvdoctor.check_model(model, batch, ...)`: the objects themselves."""
    from cvdoctor.model.loader import FILE_HINTS
    from cvdoctor.model.synth import synthesize_batch

    model, batch = values["model"], values.get("batch")
    input_shape, num_classes = values.get("input_shape"), values.get("num_classes")
    source = "given"
    if batch is None:
        if input_shape is None:
            raise ValueError("check_model needs a batch (inputs, targets) or "
                             "input_shape=(C, H, W)")
        batch = synthesize_batch(input_shape, num_classes or 10)
        source = "synthesized"
    inputs, targets = batch
    training_step, loss_fn = values.get("training_step"), values.get("loss_fn")
    spec = ModelSpec(model=model, inputs=inputs, targets=targets, loss_fn=loss_fn,
                     training_step=training_step, optimizer=values.get("optimizer"),
                     optimizer_factory=values.get("optimizer_factory"), num_classes=num_classes,
                     input_shape=tuple(input_shape) if input_shape else None,
                     name=values.get("name") or type(model).__name__, batch_source=source,
                     loss_source="training_step" if training_step else
                     ("given" if loss_fn is not None else "default"),
                     hints={k: v for k, v in values.items() if k in FILE_HINTS and v is not None})
    return ModelContext(spec, device=values.get("device"), budget_s=values.get("budget"),
                        progress=progress, recorded=recorded)
