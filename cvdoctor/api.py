"""Python API: one function per declared command, ``check_<name>(...)``, returning a Report.

The functions are made from the command declarations (`cvdoctor.commands`), so the API, the
command line and the pytest plugin take the same options; each has a real signature
(``inspect.signature(cvdoctor.check_model)``) and a docstring listing its parameters.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable

from cvdoctor.commands import Command, all_commands, load
from cvdoctor.report import Report

COMMON_PARAMS = (
    ("select", "only these checks: ids or globs (\"model.data\", \"env.*\")"),
    ("ignore", "skip these checks"),
    ("recorded", "facts by name that replace gathered ones (recorded machines, tests)"),
    ("progress", "a callable that receives progress messages"),
)


def convert_values(command: Command, values: dict[str, Any]) -> dict[str, Any]:
    """Apply each option's converter (e.g. "3,32,32" -> (3, 32, 32)) to the values given."""
    out = dict(values)
    for option in command.options:
        if option.convert and out.get(option.name) is not None:
            out[option.name] = load(option.convert)(out[option.name])
    return out


def make_context(command: Command, target: Any, values: dict[str, Any], *,
                 recorded: dict[str, Any] | None = None,
                 progress: Callable[[str], None] | None = None) -> Any:
    """The context of one run of `command` from command-line style input (a target string or
    paths, option values); raises cvdoctor.errors.UsageError for input that cannot be used."""
    return load(command.context)(target, convert_values(command, values), recorded=recorded,
                                 progress=progress)


def run_context(command: str, ctx: Any, *, select: Iterable[str] | None = None,
                ignore: Iterable[str] | None = None, target: Any = None,
                progress: Callable[[str], None] | None = None,
                check_timeout_s: float | None = None) -> Report:
    """Run `command`'s checks on a context (the CLI, the API and the plugin all end here)."""
    from cvdoctor import runner

    label = target if target is not None else getattr(ctx, "label", None)
    return runner.run(command, ctx, select=select, ignore=ignore, target=label,
                      progress=progress, check_timeout_s=check_timeout_s)


def _run_api(command: Command, args: dict[str, Any]) -> Report:
    common = {name: args.pop(name) for name, _ in COMMON_PARAMS}
    values = convert_values(command, {o.name: args.pop(o.name) for o in command.options
                                      if o.api})
    if command.api_context:
        ctx = load(command.api_context)({**args, **values}, recorded=common["recorded"],
                                        progress=common["progress"])
    else:
        target = args.pop("target", None)
        ctx = load(command.context)(target, values, recorded=common["recorded"],
                                    progress=common["progress"])
    return run_context(command.name, ctx, select=common["select"], ignore=common["ignore"],
                       progress=common["progress"])


def _signature(command: Command) -> inspect.Signature:
    P = inspect.Parameter
    params = []
    if command.api_params:
        for p in command.api_params:
            params.append(P(p.name, P.POSITIONAL_OR_KEYWORD if p.positional else P.KEYWORD_ONLY,
                            default=P.empty if p.required else p.default))
    elif command.target is not None:
        params.append(P("target", P.POSITIONAL_OR_KEYWORD))
    params.sort(key=lambda p: p.kind)  # positional ones first
    for o in command.options:
        if o.api:
            params.append(P(o.name, P.KEYWORD_ONLY, default=o.default))
    params += [P(name, P.KEYWORD_ONLY, default=None) for name, _ in COMMON_PARAMS]
    return inspect.Signature(params, return_annotation=Report)


def _docstring(command: Command) -> str:
    lines = [command.api_doc or command.help, "", "Parameters:"]
    for p in command.api_params:
        lines.append(f"    {p.name}: {p.help}")
    if not command.api_params and command.target is not None:
        lines.append(f"    target: {command.target.help}")
    for o in command.options:
        if o.api:
            lines.append(f"    {o.name}: {o.help}")
    lines += [f"    {name}: {text}" for name, text in COMMON_PARAMS]
    lines += ["", f"Returns a Report (the same checks as `cvdoctor {command.name}`)."]
    return "\n".join(lines)


def api_function(command: Command) -> Callable[..., Report]:
    """`check_<name>` for a declared command."""
    signature = _signature(command)

    def check(*args: Any, **kwargs: Any) -> Report:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return _run_api(command, dict(bound.arguments))

    check.__name__ = check.__qualname__ = f"check_{command.name}"
    check.__module__ = __name__
    check.__doc__ = _docstring(command)
    check.__signature__ = signature  # type: ignore[attr-defined]
    return check


API_FUNCTIONS = {f"check_{c.name}": api_function(c) for c in all_commands().values()
                 if c.click_command is None}
globals().update(API_FUNCTIONS)
__all__ = ["run_context", "make_context", "convert_values", *API_FUNCTIONS]
