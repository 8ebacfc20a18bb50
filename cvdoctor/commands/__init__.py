"""Commands as data: each check command is declared once, in a module of this package.

A declaration (`Command`) names the command, its target argument, its options and the function
that builds its context. Everything else derives from it: the click command (`cvdoctor.cli`),
the Python API entry point (`cvdoctor.check_<name>`, `cvdoctor.api`), the pytest plugin's options
and generated test items (`pytest_cvdoctor`), and `cvdoctor checks <name>`. Checks join a command
by registering under it (`@register("<name>.something", ...)`).

Standard library only: the pytest plugin reads these declarations while pytest starts.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

KINDS = ("str", "int", "float", "bool", "path", "choice")


@dataclass(frozen=True)
class Option:
    """One option of a command, on the command line, in the API and (optionally) in pytest."""

    name: str  # the Python keyword: num_classes
    help: str
    kind: str = "str"  # one of KINDS; "bool" is a flag
    flag: str | None = None  # the CLI flag; default "--" + name with dashes
    metavar: str | None = None
    choices: tuple[str, ...] = ()
    min: float | None = None  # lower bound for int/float
    min_open: bool = False  # the bound itself is not allowed
    multiple: bool = False  # repeatable on the CLI, a list in the API
    default: Any = None
    cli: bool = True
    api: bool = True
    plugin: bool = False  # also --cvdoctor-<flag> / ini cvdoctor_<name> in pytest
    hidden: bool = False
    convert: str | None = None  # "module:function" turning the raw value into what is used
    exists: bool = False  # a "path" the command line insists exists (a typo is a usage error)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"option {self.name}: kind must be one of {KINDS}")

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def plugin_flag(self) -> str:
        return "--cvdoctor-" + self.cli_flag.lstrip("-")

    @property
    def ini_name(self) -> str:
        return "cvdoctor_" + self.name


@dataclass(frozen=True)
class Param:
    """A Python-API-only input (the model object, the batch, ...), before the options."""

    name: str
    help: str
    default: Any = None
    required: bool = False
    positional: bool = False  # may be passed by position (check_model(model, batch))


@dataclass(frozen=True)
class Target:
    """The command's positional argument."""

    metavar: str  # TARGET, FILE, PATH
    help: str
    many: bool = False  # FILE... (a tuple of targets)


@dataclass(frozen=True)
class Command:
    name: str  # `cvdoctor <name>`; checks register as "<name>.<check>"
    summary: str  # one line for `cvdoctor --help`
    help: str  # the command's help text
    context: str  # "module:function" (target, values, recorded=, progress=) -> Context
    target: Target | None = None
    options: tuple[Option, ...] = ()
    # The Python API (`cvdoctor.check_<name>`): its own inputs and context builder when they
    # differ from the command line's (the model API takes a model object, not a file).
    api_params: tuple[Param, ...] = ()
    api_context: str | None = None  # "module:function" (values, recorded=, progress=) -> Context
    api_doc: str = ""
    plugin_items: bool = False  # --cvdoctor-<name> TARGET adds one pytest item per check
    # A command that is not a run of checks (`cvdoctor run`): the click command to use.
    click_command: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def option(self, name: str) -> Option:
        return next(o for o in self.options if o.name == name)


def load(path: str) -> Any:
    """The object at "package.module:attr"."""
    module, _, attr = path.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@lru_cache(maxsize=1)
def all_commands() -> dict[str, Command]:
    """Every declared command, by name, in the order of their modules."""
    out: dict[str, Command] = {}
    for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{mod.name}")
        command = getattr(module, "COMMAND", None)
        if isinstance(command, Command):
            if command.name in out:
                raise ValueError(f"command {command.name!r} is declared twice")
            out[command.name] = command
    return out


def get_command(name: str) -> Command:
    return all_commands()[name]
