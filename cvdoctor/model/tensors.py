"""The one walker over nested batches and outputs: a tensor, or dicts / lists / tuples of them
(the shapes a DataLoader batch or a model output takes)."""
from __future__ import annotations

from typing import Any, Callable, Iterator

import torch


def iter_tensors(obj: Any) -> Iterator[torch.Tensor]:
    """Every tensor in `obj`, depth first, in order."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from iter_tensors(v)
    elif isinstance(obj, (tuple, list)):
        for v in obj:
            yield from iter_tensors(v)


def map_tensors(obj: Any, fn: Callable[[torch.Tensor], Any]) -> Any:
    """`obj` rebuilt with `fn` applied to every tensor (containers keep their type)."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: map_tensors(v, fn) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        items = [map_tensors(v, fn) for v in obj]
        if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
            return type(obj)(*items)
        return type(obj)(items)
    return obj


def first_tensor(obj: Any) -> torch.Tensor | None:
    return next(iter_tensors(obj), None)


def to_device(obj: Any, device: torch.device | str) -> Any:
    return map_tensors(obj, lambda t: t.to(device))


def detach(obj: Any) -> Any:
    return map_tensors(obj, lambda t: t.detach())


def batch_size(inputs: Any) -> int | None:
    """The size of the first axis of the first tensor: the batch, by convention."""
    t = first_tensor(inputs)
    return int(t.shape[0]) if t is not None and t.dim() > 0 else None
