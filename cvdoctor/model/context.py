"""What model checks read: the user's model and batch (never touched) and facts computed on copies.

Guarantees every model check relies on and must keep:
- the user's model, optimizer, batch and global RNG state are untouched: all work happens on
  deep copies (`ctx.copy_model()`), inside `rng_guard()`;
- one forward/backward pass (`ctx.base`) is shared by every check that can use it.
"""
from __future__ import annotations

import copy
import random
import time
import traceback
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Iterator

import torch
from torch import nn


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


def call_model(model: nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def to_device(obj: Any, device: torch.device | str) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


def first_tensor(obj: Any) -> torch.Tensor | None:
    if isinstance(obj, torch.Tensor):
        return obj
    values = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (tuple, list)) else ()
    for v in values:
        t = first_tensor(v)
        if t is not None:
            return t
    return None


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


class _ModuleTracker:
    """Forward pre/post hooks that remember the innermost module running (to name the culprit)."""

    def __init__(self, model: nn.Module):
        self.stack: list[str] = []
        self.failed_in: str | None = None
        self.handles = []
        for name, module in model.named_modules():
            self.handles.append(module.register_forward_pre_hook(self._pre(name or "<root>")))
            self.handles.append(module.register_forward_hook(self._post()))

    def _pre(self, name: str):
        def hook(_module, _inputs):
            self.stack.append(name)
        return hook

    def _post(self):
        def hook(_module, _inputs, _output):
            if self.stack:
                self.stack.pop()
        return hook

    def innermost(self) -> str | None:
        return self.stack[-1] if self.stack else None

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def error_info(exc: BaseException, module: str | None = None) -> ErrorInfo:
    return ErrorInfo(type(exc).__name__, str(exc).strip(), module,
                     "".join(traceback.format_exception(type(exc), exc, exc.__traceback__,
                                                        limit=-6)))


@dataclass
class BasePass:
    """One forward + loss + backward on a copy in train mode (the user's mode is not assumed)."""

    model: nn.Module | None = None  # the copy, after backward (grads populated)
    outputs: Any = None  # detached
    loss: float | None = None
    forward_error: ErrorInfo | None = None
    loss_error: ErrorInfo | None = None
    backward_error: ErrorInfo | None = None
    warnings: list[str] = field(default_factory=list)  # PyTorch warnings during forward + loss
    grads: dict[str, torch.Tensor | None] = field(default_factory=dict)  # trainable params only
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.forward_error or self.loss_error or self.backward_error)


class ModelContext:
    def __init__(self, spec: ModelSpec, *, device: str | torch.device | None = None,
                 budget_s: float | None = None, progress: Callable[[str], None] | None = None,
                 seed: int = 0):
        self.spec = spec
        self.device = torch.device(device) if device is not None else _model_device(spec.model)
        self.budget_s = budget_s
        self.started = time.perf_counter()
        self.progress = progress or (lambda _msg: None)
        self.seed = seed

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
            t = to_device(obj, self.device)
            if isinstance(t, torch.Tensor):
                return t.clone()
            return t
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

    # --- the shared pass --------------------------------------------------------------------
    @cached_property
    def base(self) -> BasePass:
        result = BasePass()
        start = time.perf_counter()
        with rng_guard(self.seed):
            try:
                model = copy.deepcopy(self.spec.model)
            except Exception as exc:  # noqa: BLE001 - an un-copyable model is the user's problem
                result.forward_error = error_info(exc, DEEPCOPY_FAILED)
                return result
            try:
                model = model.to(self.device).train(True)
                inputs, targets = self.batch()
            except Exception as exc:  # noqa: BLE001 - e.g. meta tensors, a batch on another device
                result.forward_error = error_info(exc, TO_DEVICE_FAILED)
                return result
            result.model = model
            tracker = _ModuleTracker(model)
            outputs = None
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    if self.spec.training_step is not None:
                        loss = self.spec.training_step(model, (inputs, targets))
                    else:
                        try:
                            outputs = call_model(model, inputs)
                        except Exception as exc:  # noqa: BLE001
                            result.forward_error = error_info(exc, tracker.innermost())
                            return result
                        result.outputs = _detach(outputs)
                        tracker.remove()
                        loss = self.loss_fn()(outputs, targets)
                except Exception as exc:  # noqa: BLE001
                    err = error_info(exc, tracker.innermost())
                    if outputs is None and self.spec.training_step is not None:
                        result.forward_error = err
                    else:
                        result.loss_error = err
                    return result
                finally:
                    tracker.remove()
                    result.warnings = [f"{w.category.__name__}: {w.message}" for w in caught]
            try:
                if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                    raise TypeError(f"the loss must be a scalar tensor, got "
                                    f"{type(loss).__name__}{tuple(getattr(loss, 'shape', ()))}")
                result.loss = float(loss.detach())
                loss.backward()
            except Exception as exc:  # noqa: BLE001
                result.backward_error = error_info(exc)
                return result
            finally:
                result.seconds = time.perf_counter() - start
            result.grads = {n: (p.grad.detach().clone() if p.grad is not None else None)
                            for n, p in model.named_parameters() if p.requires_grad}
        return result

    def prepare(self, needs: list[str]) -> None:
        """Nothing to start in parallel: the base pass is computed on first use."""


def _detach(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach()
    if isinstance(obj, dict):
        return {k: _detach(v) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(_detach(v) for v in obj)
    return obj


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def _ctor_kwargs(cls: type, defaults: dict) -> dict:
    """Only the keyword arguments the optimizer's constructor accepts (defaults may hold more)."""
    import inspect

    try:
        accepted = set(inspect.signature(cls.__init__).parameters)
    except (TypeError, ValueError):
        return defaults
    return {k: v for k, v in defaults.items() if k in accepted}
