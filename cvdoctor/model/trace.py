"""The one module tracer: hooks on every module of a (copied) model while a forward runs.

It always knows the innermost module running (to name the culprit of an exception), and on
request records, per module in the order they finish:
- `io`: the first input and output tensor (detached copies), to find where samples mix or where
  two runs start to differ;
- `stats`: whether the outputs require grad, hold NaN/inf, or are all zero;
- `spy`: batch_norm / dropout calls that run in training mode (a TorchFunctionMode), to name
  modules that normalize with batch statistics or drop out in eval mode.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from cvdoctor.model.tensors import first_tensor, iter_tensors

ROOT = "<root>"
_BATCH_NORM = {F.batch_norm}
_DROPOUT = {F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout,
            F.feature_alpha_dropout}


@dataclass
class OutputStats:
    requires_grad: bool = False
    nonfinite: bool = False
    all_zero: bool = True


class _CallSpy(TorchFunctionMode):
    def __init__(self, tracer: "Tracer"):
        super().__init__()
        self.tracer = tracer

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _BATCH_NORM or func in _DROPOUT:
            try:
                bound = inspect.signature(func).bind(*args, **kwargs)
                bound.apply_defaults()
                training = bool(bound.arguments.get("training"))
                p = float(bound.arguments.get("p", 0.0) or 0.0)
            except (TypeError, ValueError):
                training, p = False, 0.0
            where = self.tracer.innermost() or ROOT
            t = self.tracer
            if training and func in _BATCH_NORM and where not in t.batch_stats:
                t.batch_stats.append(where)
            if training and func in _DROPOUT and p > 0 and where not in [d[0] for d in t.dropout]:
                t.dropout.append((where, p))
        return func(*args, **kwargs)


@dataclass
class Tracer:
    """``with Tracer(model, io=True) as tr: model(x)``; then ``tr.order``, ``tr.io[name]``."""

    model: nn.Module
    io: bool = False
    stats: bool = False
    spy: bool = False
    order: list[str] = field(default_factory=list)
    inputs_outputs: dict[str, tuple[torch.Tensor | None, torch.Tensor | None]] = \
        field(default_factory=dict)
    outputs: dict[str, OutputStats] = field(default_factory=dict)
    batch_stats: list[str] = field(default_factory=list)  # modules normalizing on the batch
    dropout: list[tuple[str, float]] = field(default_factory=list)  # modules dropping out
    # The innermost module that finished last, with its output's first tensor: after the forward,
    # the module that produced what forward returned when `last[1]` is that tensor.
    last: tuple[str, torch.Tensor] | None = None
    _stack: list[str] = field(default_factory=list)
    _handles: list[Any] = field(default_factory=list)
    _mode: Any = None

    def __enter__(self) -> "Tracer":
        for name, module in self.model.named_modules():
            name = name or ROOT
            self._handles.append(module.register_forward_pre_hook(self._pre(name)))
            self._handles.append(module.register_forward_hook(self._post(name)))
        if self.spy:
            self._mode = _CallSpy(self)
            self._mode.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._mode is not None:
            self._mode.__exit__(None, None, None)
            self._mode = None
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def innermost(self) -> str | None:
        """The module that was running when the forward stopped (or is running now)."""
        return self._stack[-1] if self._stack else None

    def _pre(self, name: str):
        def hook(_module, _args):
            self._stack.append(name)
        return hook

    def _post(self, name: str):
        def hook(_module, args, output):
            if self._stack:
                self._stack.pop()
            if name != ROOT:
                y = first_tensor(output)
                # a parent that returns its child's tensor unchanged keeps the child's name (an
                # in-place ReLU returns its input object too, but it is no ancestor of the layer)
                if y is not None and (self.last is None or y is not self.last[1]
                                      or not self.last[0].startswith(name + ".")):
                    self.last = (name, y)
            first = name not in self.outputs and name not in self.inputs_outputs \
                and name not in self.order
            if first:
                self.order.append(name)
            if self.io and name not in self.inputs_outputs:
                x, y = first_tensor(args), first_tensor(output)
                self.inputs_outputs[name] = (x.detach().clone() if x is not None else None,
                                             y.detach().clone() if y is not None else None)
            if self.stats:
                self._record_stats(name, output)
        return hook

    def _record_stats(self, name: str, output: Any) -> None:
        ts = list(iter_tensors(output))
        st = self.outputs.get(name)
        if st is None:
            st = self.outputs[name] = OutputStats(all_zero=bool(ts))
        st.requires_grad |= any(t.requires_grad for t in ts)
        floats = [t.detach() for t in ts if t.is_floating_point() or t.is_complex()]
        st.nonfinite |= any(not torch.isfinite(t).all() for t in floats)
        st.all_zero &= bool(floats) and all(not t.any() for t in floats)
