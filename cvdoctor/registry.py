"""Check registry: stable dotted ids, registered once by decorator, each with its command.

A check module can be named anything: which modules register checks of which command is read
from their source (the ``register(...)`` calls, parsed with `ast`, never imported), so a run
imports only its own command's modules (``cvdoctor env`` never pays for the model checks' torch
import) and file names carry no meaning.
"""
from __future__ import annotations

import ast
import fnmatch
import importlib
import importlib.util
import inspect
import pkgutil
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Iterable

_ID_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_.")
CHECKS_PACKAGE = "cvdoctor.checks"


@dataclass(frozen=True)
class CheckSpec:
    id: str
    func: Callable
    title: str
    recipes: tuple[str, ...]  # every recipe id this check may emit (consistency-tested)
    needs: tuple[str, ...]  # every fact the check reads (the runner holds it to this)
    order: int = 1000  # place in the report: causes before consequences, then by id
    command: str = ""
    # The check turns the user's own exception into a finding through the error matcher, so it
    # may also emit any recipe that has error patterns (resolved when it does, not at import).
    error_recipes: bool = False
    # The kinds of target the check is for (a context's `target_kind`, e.g. "yolo"); empty: the
    # command's ordinary targets. A context decides with `applies()`.
    targets: tuple[str, ...] = ()
    # The option(s) (or model-file hints) that ask for this check ("ddp"; any of several): without
    # one the check is left out of the report; `cvdoctor checks` still lists it.
    opt_in: str | tuple[str, ...] | None = None

    @property
    def opt_in_names(self) -> tuple[str, ...]:
        return (self.opt_in,) if isinstance(self.opt_in, str) else tuple(self.opt_in or ())

    @property
    def doc(self) -> str:
        """What the check measures and when it warns or fails: its docstring, else its
        module's."""
        return inspect.cleandoc(self.func.__doc__ or inspect.getmodule(self.func).__doc__ or "")

    @property
    def summary(self) -> str:
        return self.doc.split("\n\n", 1)[0].replace("\n", " ").strip()


class DuplicateCheckError(ValueError):
    pass


_REGISTRY: dict[str, CheckSpec] = {}


def register(check_id: str, *, title: str, recipes: Iterable[str] = (), needs: Iterable[str] = (),
             order: int = 1000, command: str | None = None, error_recipes: bool = False,
             targets: Iterable[str] = (), opt_in: str | Iterable[str] | None = None):
    """Decorator: ``@register("env.shm", title=..., recipes=[...], needs=["shm"], order=50)``.

    `command` defaults to the id's first part (``env.shm`` runs under ``cvdoctor env``).
    """
    if "." not in check_id or not set(check_id) <= _ID_CHARS:
        raise ValueError(f"check id must be dotted lower-case, got {check_id!r}")

    def wrap(func: Callable) -> Callable:
        if check_id in _REGISTRY:
            raise DuplicateCheckError(f"check id {check_id!r} is registered twice")
        _REGISTRY[check_id] = CheckSpec(check_id, func, title, tuple(recipes), tuple(needs), order,
                                        command or check_id.split(".", 1)[0], error_recipes,
                                        tuple(targets),
                                        opt_in if isinstance(opt_in, (str, type(None)))
                                        else tuple(opt_in))
        return func

    return wrap


def unregister(check_id: str) -> None:
    """For tests that register throw-away checks."""
    _REGISTRY.pop(check_id, None)


# --- which module registers what, read from source ----------------------------------------

@dataclass(frozen=True)
class IndexEntry:
    id: str
    command: str
    module: str


def _registrations(source: str) -> list[tuple[str, str | None]]:
    out = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else \
            func.attr if isinstance(func, ast.Attribute) else None
        if name != "register" or not node.args:
            continue
        first = node.args[0]
        if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
            continue
        command = next((kw.value.value for kw in node.keywords if kw.arg == "command"
                        and isinstance(kw.value, ast.Constant)), None)
        out.append((first.value, command))
    return out


@lru_cache(maxsize=1)
def check_index() -> tuple[IndexEntry, ...]:
    """Every ``register("id", ...)`` in the check modules, without importing them."""
    pkg = importlib.import_module(CHECKS_PACKAGE)
    entries = []
    for mod in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if mod.ispkg:
            continue
        name = f"{CHECKS_PACKAGE}.{mod.name}"
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin:
            continue
        with open(spec.origin, encoding="utf-8") as fh:
            source = fh.read()
        for check_id, command in _registrations(source):
            entries.append(IndexEntry(check_id, command or check_id.split(".", 1)[0], name))
    return tuple(entries)


def load_checks(command: str | None = None, check_id: str | None = None) -> None:
    """Import the modules that register checks of `command` (or the one that registers
    `check_id`; everything when both are None) so their decorators run."""
    for entry in check_index():
        if (command is None or entry.command == command) and \
                (check_id is None or entry.id == check_id):
            importlib.import_module(entry.module)


load_builtin_checks = load_checks


def all_checks(command: str | None = None) -> list[CheckSpec]:
    load_checks(command)
    specs = sorted(_REGISTRY.values(), key=lambda s: (s.order, s.id))
    return [s for s in specs if command is None or s.command == command]


def get_check(check_id: str) -> CheckSpec | None:
    """The registered check `check_id`, importing only its module."""
    if check_id not in _REGISTRY:
        load_checks(check_id=check_id)
    return _REGISTRY.get(check_id)


def indexed_ids() -> list[str]:
    return sorted(e.id for e in check_index())


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
