"""Check registry: stable dotted ids, registered once by decorator."""
from __future__ import annotations

import fnmatch
import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable, Iterable

_ID_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_.")


@dataclass(frozen=True)
class CheckSpec:
    id: str
    func: Callable
    title: str
    recipes: tuple[str, ...]  # every recipe id this check may emit (consistency-tested)
    needs: tuple[str, ...]  # fact names the check reads; lets a run gather only those
    order: int = 1000  # place in the report: causes before consequences, then by id

    @property
    def command(self) -> str:
        return self.id.split(".", 1)[0]


class DuplicateCheckError(ValueError):
    pass


_REGISTRY: dict[str, CheckSpec] = {}


def register(check_id: str, *, title: str, recipes: Iterable[str] = (), needs: Iterable[str] = (),
             order: int = 1000):
    """Decorator: ``@register("env.shm", title=..., recipes=[...], needs=["shm"], order=50)``."""
    if "." not in check_id or not set(check_id) <= _ID_CHARS:
        raise ValueError(f"check id must be dotted lower-case, got {check_id!r}")

    def wrap(func: Callable) -> Callable:
        if check_id in _REGISTRY:
            raise DuplicateCheckError(f"check id {check_id!r} is registered twice")
        _REGISTRY[check_id] = CheckSpec(check_id, func, title, tuple(recipes), tuple(needs), order)
        return func

    return wrap


def unregister(check_id: str) -> None:
    """For tests that register throw-away checks."""
    _REGISTRY.pop(check_id, None)


def load_builtin_checks(command: str | None = None) -> None:
    """Import the modules of ``cvdoctor.checks`` so their decorators run.

    Modules are named after their command (``env_shm.py``, ``model_gradients.py``) and only that
    command's modules are imported: ``cvdoctor env`` must not pay for the model checks' torch
    import in the main process.
    """
    import cvdoctor.checks as pkg

    for mod in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if mod.name.startswith("_"):
            continue
        if command is None or mod.name.startswith(f"{command}_"):
            importlib.import_module(f"{pkg.__name__}.{mod.name}")


def all_checks(command: str | None = None) -> list[CheckSpec]:
    load_builtin_checks(command)
    specs = sorted(_REGISTRY.values(), key=lambda s: (s.order, s.id))
    return [s for s in specs if command is None or s.command == command]


class SelectionError(ValueError):
    pass


def _matches(check_id: str, pattern: str) -> bool:
    # "env" and "env.*" both mean every env check; globs work on the full id.
    return fnmatch.fnmatchcase(check_id, pattern) or check_id.startswith(pattern + ".")


def select_checks(specs: list[CheckSpec], select: Iterable[str] | None = None,
                  ignore: Iterable[str] | None = None) -> list[CheckSpec]:
    select = [p for p in _split(select)]
    ignore = [p for p in _split(ignore)]
    for pattern in select + ignore:
        if not any(_matches(s.id, pattern) for s in specs):
            known = ", ".join(s.id for s in specs)
            raise SelectionError(f"no check matches {pattern!r} (known: {known})")
    chosen = [s for s in specs if not select or any(_matches(s.id, p) for p in select)]
    return [s for s in chosen if not any(_matches(s.id, p) for p in ignore)]


def _split(patterns: Iterable[str] | None) -> list[str]:
    out: list[str] = []
    for p in patterns or ():
        out.extend(x.strip() for x in p.split(",") if x.strip())
    return out
