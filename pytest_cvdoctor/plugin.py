"""pytest plugin entry point (pytest11). At import time: pytest and the standard library only.

It loads in every pytest run of every project that installs cvdoctor, so everything that costs
(cvdoctor's API, torch, the recipe catalog) is imported inside a fixture or hook, when a test
asks for it or a test has already failed. `-p no:cvdoctor` turns the plugin off.

Its options come from the command declarations (`cvdoctor.commands`, standard library only): a
command that takes targets adds ``--cvdoctor-<command> TARGET`` (one test item per check), and
options marked for pytest (the model checks' budget, input shape, class count) add
``--cvdoctor-<option>`` and an ini key of the same name.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_cvdoctor import assertions, requirements
from pytest_cvdoctor._state import (ACTIVE, SESSION, SKIP_AT_ITEM, CvdoctorSession, relative_to,
                                    session as _session)

_GROUP = "cvdoctor: environment and model checks (cvdoctor explain <recipe> tells the fix)"
_HEADER_WIDTH = 118


def _commands():
    from cvdoctor.commands import all_commands  # declarations only: standard library

    return [c for c in all_commands().values() if c.click_command is None]


class PluginOption:
    """An option of a command exposed to pytest: ``--cvdoctor-<flag>`` and ini ``cvdoctor_<name>``,
    shared by every command that declares an option of that name (they mean the same). A flag
    that would clash with a command's item option (``--cvdoctor-model`` for `cvdoctor ckpt
    --model`) is qualified by its command: ``--cvdoctor-ckpt-model``, ini ``cvdoctor_ckpt_model``."""

    def __init__(self, command, option, qualified: bool):
        self.command, self.option = command, option
        base = option.cli_flag.lstrip("-")
        self.flag = f"--cvdoctor-{command.name}-{base}" if qualified else f"--cvdoctor-{base}"
        self.ini = (f"cvdoctor_{command.name}_{option.name}" if qualified
                    else option.ini_name)
        self.key = f"{command.name}.{option.name}" if qualified else option.name


def _plugin_options() -> list[PluginOption]:
    """The options exposed to pytest, once per option name."""
    item_flags = {f"--cvdoctor-{c.name}" for c in _commands() if c.plugin_items}
    seen: dict[str, PluginOption] = {}
    for command in _commands():
        for option in command.options:
            if not option.plugin:
                continue
            plain = PluginOption(command, option, qualified=False)
            entry = plain if plain.flag not in item_flags else \
                PluginOption(command, option, qualified=True)
            seen.setdefault(entry.key, entry)
    return list(seen.values())


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("cvdoctor", _GROUP)
    group.addoption("--cvdoctor-env", action="store_true", default=None,
                    help="Add a one-screen cvdoctor environment summary to the report header.")
    parser.addini("cvdoctor_env", type="bool", default=False, help="Like --cvdoctor-env.")
    for command in _commands():
        if command.plugin_items and command.target is not None:
            group.addoption(f"--cvdoctor-{command.name}", action="append", default=None,
                            dest=f"cvdoctor_{command.name}", metavar=command.target.metavar,
                            help=f"Add one test item per `cvdoctor {command.name}` check for "
                                 f"{command.target.metavar}: {command.target.help} (repeatable).")
            parser.addini(f"cvdoctor_{command.name}", type="linelist", default=[],
                          help=f"Targets for generated `cvdoctor {command.name}` items, one per "
                               f"line (like --cvdoctor-{command.name}).")
    for entry in _plugin_options():
        used_by = (f" Used by the --cvdoctor-{entry.command.name} items, the cvdoctor fixture "
                   "and the assert_* helpers.")
        if entry.option.kind == "bool":
            group.addoption(entry.flag, action="store_true", default=None, dest=entry.ini,
                            help=entry.option.help + used_by)
            parser.addini(entry.ini, type="bool", default=False, help=f"Like {entry.flag}.")
            continue
        metavar = entry.option.metavar or ("|".join(entry.option.choices)
                                           if entry.option.kind == "choice" else None)
        group.addoption(entry.flag, default=None, dest=entry.ini, metavar=metavar,
                        help=entry.option.help + used_by)
        parser.addini(entry.ini, default="", help=f"Like {entry.flag}.")
    group.addoption("--cvdoctor-strict", action="store_true", default=None,
                    help="Unmet cvdoctor_requires markers fail instead of skipping; warnings "
                         "of cvdoctor checks fail too.")
    parser.addini("cvdoctor_strict", type="bool", default=False, help="Like --cvdoctor-strict.")
    group.addoption("--no-cvdoctor-explain", dest="cvdoctor_explain", action="store_false",
                    default=None,
                    help="Do not add a 'cvdoctor' section explaining failures that match a "
                         "known problem.")
    parser.addini("cvdoctor_explain", type="bool", default=True,
                  help="Explain failures that match a cvdoctor recipe (default true).")


def _setting(config: pytest.Config, name: str) -> Any:
    value = config.getoption(name)
    return config.getini(name) if value is None else value


def _option_value(config: pytest.Config, entry: PluginOption) -> Any:
    """The option's value from the command line or the ini file, checked like the CLI does."""
    option = entry.option
    raw = _setting(config, entry.ini)
    if option.kind == "bool":
        return bool(raw) or None
    if raw in (None, ""):
        return None
    where = f"{entry.flag} / {entry.ini}"
    if option.kind in ("int", "float"):
        kind = int if option.kind == "int" else float
        try:
            value = kind(raw)
        except (TypeError, ValueError):
            what = "an integer" if kind is int else "a number"
            raise pytest.UsageError(f"{where}: {raw!r} is not {what}"
                                    + (" of seconds" if option.metavar == "SECONDS" else "")) \
                from None
        if option.min is not None and (value < option.min or
                                       (option.min_open and value == option.min)):
            bound = "positive" if option.min == 0 and option.min_open else \
                f"at least {option.min:g}"
            raise pytest.UsageError(f"{where} must be {bound}, got {raw!r}")
        return value
    return raw


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "cvdoctor_requires(gpu=False, min_shm=None, packages=(), checkpoints=()): skip the test "
        "with the measured reason and a cvdoctor recipe when this machine lacks what it needs "
        "(a usable GPU, a /dev/shm of at least min_shm, importable packages, checkpoint files); "
        "--cvdoctor-strict fails instead.")
    targets: dict[str, list] = {}
    for command in _commands():
        if not command.plugin_items:
            continue
        config.addinivalue_line(
            "markers", f"cvdoctor_{command.name}: a check item generated by "
                       f"--cvdoctor-{command.name}.")
        # Relative paths: from the invocation directory on the command line, from the rootdir
        # (where the ini file is) in the ini key.
        cli = config.getoption(f"cvdoctor_{command.name}")
        targets[command.name] = [(t, Path(config.invocation_params.dir)) for t in cli or ()] or \
            [(t, Path(config.rootpath)) for t in config.getini(f"cvdoctor_{command.name}")]
    values = {entry.key: _option_value(config, entry) for entry in _plugin_options()}
    config.stash[SESSION] = CvdoctorSession(
        config, show_env=bool(_setting(config, "cvdoctor_env")), targets=targets, values=values,
        strict=bool(_setting(config, "cvdoctor_strict")),
        explain=bool(_setting(config, "cvdoctor_explain")))


@pytest.fixture(autouse=True)
def _cvdoctor_active_session(request: pytest.FixtureRequest):
    """This run's settings for the module-level assert_* helpers, for the test's duration."""
    token = ACTIVE.set(request.config.stash.get(SESSION, None))
    yield
    ACTIVE.reset(token)


# --- report header --------------------------------------------------------------------------
def env_summary(report: Any) -> list[str]:
    """One line per env check (mark, id, measured message, recipe), under the summary line."""
    from cvdoctor.redact import redact_text
    from cvdoctor.render import MARKS, finding_lines, summary_line

    width = max((len(f.check) for f in report.findings), default=0)
    lines = [summary_line(report).rstrip()]
    previous = None
    for f in report.findings:
        shown_id = f.check if f.check != previous else ""  # as in the text report
        previous = f.check
        lines += ["  " + line for line in finding_lines(
            f, label=shown_id.ljust(width), sep=" ", one_line_width=_HEADER_WIDTH - 2,
            marks=MARKS)]
    return [redact_text(line) for line in lines]


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    state = config.stash.get(SESSION, None)
    if state is None or not state.show_env or hasattr(config, "workerinput"):
        return None  # xdist workers print no header; the controller does it once
    try:
        return env_summary(state.env_report())
    except Exception as exc:  # noqa: BLE001 - the header must never stop a test run
        return [f"cvdoctor env: could not run ({type(exc).__name__}: {exc})"]


# --- fixtures -------------------------------------------------------------------------------
class CvdoctorHelper:
    """The `cvdoctor` fixture: cvdoctor's checks with this run's settings.

    check_model(model, batch, loss_fn=..., optimizer=..., select=[...]) -> Report
    check_env(**kwargs) -> Report (no arguments: the session's report, computed once)
    check_<command>(...) for every other command, with this run's --cvdoctor-* values
    assert_healthy(report)  fails listing each failing finding, its fix and its recipe
    """

    def __init__(self, state: CvdoctorSession):
        self._state = state

    def _api(self, name: str):
        import inspect

        import cvdoctor

        func = getattr(cvdoctor, f"check_{name}")
        accepted = inspect.signature(func).parameters

        def call(*args: Any, **kwargs: Any) -> Any:
            for key, value in self._state.values.items():
                if key in accepted and kwargs.get(key) is None and value is not None:
                    kwargs[key] = value
            return func(*args, **kwargs)

        call.__doc__ = func.__doc__
        return call

    def check_model(self, model: Any, batch: Any = None, **kwargs: Any) -> Any:
        return self._api("model")(model, batch, **kwargs)

    def check_env(self, **kwargs: Any) -> Any:
        if not kwargs:
            return self._state.env_report()
        return self._api("env")(**kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("check_"):
            return self._api(name.removeprefix("check_"))
        raise AttributeError(name)

    @property
    def env(self) -> Any:
        return self._state.env_report()

    def assert_healthy(self, report: Any, *, strict: bool | None = None) -> Any:
        __tracebackhide__ = True
        return assertions._assert_healthy(
            report, self._state.strict if strict is None else strict, stacklevel=4)

    def __repr__(self) -> str:
        return (f"<cvdoctor pytest helper budget={self._state.budget} "
                f"strict={self._state.strict}>")


@pytest.fixture(scope="session")
def cvdoctor_env(pytestconfig: pytest.Config) -> Any:
    """cvdoctor's environment report (`cvdoctor env`), computed once per session on first use:
    `cvdoctor_env["env.shm"].status`, `cvdoctor_env.ok`, `str(cvdoctor_env)`."""
    return _session(pytestconfig).env_report()


@pytest.fixture(scope="session")
def cvdoctor(pytestconfig: pytest.Config) -> CvdoctorHelper:
    """cvdoctor's model and environment checks with this run's --cvdoctor-budget and
    --cvdoctor-strict: `cvdoctor.assert_healthy(cvdoctor.check_model(model, batch))`."""
    return CvdoctorHelper(_session(pytestconfig))


# --- the cvdoctor_requires marker -----------------------------------------------------------
@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    marks = list(item.iter_markers("cvdoctor_requires"))
    if not marks:
        return
    state = _session(item.config)
    unmet: list[requirements.Unmet] = []
    for mark in marks:
        if mark.args:
            pytest.fail(f"cvdoctor_requires takes keyword arguments only "
                        f"({', '.join(requirements.KNOWN_KEYS)}), got {mark.args!r}",
                        pytrace=False)
        try:
            found = requirements.evaluate(
                dict(mark.kwargs), Path(item.config.rootpath),
                gpu=lambda: requirements.check_gpu(state.requirement_cache))
        except ValueError as exc:
            pytest.fail(str(exc), pytrace=False)
        unmet.extend(u for u in found if u not in unmet)
    if not unmet:
        return
    reason = "cvdoctor_requires: " + "; ".join(str(u) for u in unmet)
    item.stash[SKIP_AT_ITEM] = True
    if state.strict:
        pytest.fail(reason + " [--cvdoctor-strict]", pytrace=False)
    pytest.skip(reason)


# --- generated check items ------------------------------------------------------------------
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    # tryfirst: added before -k/-m/--deselect filter the list, so those select these items too.
    state = config.stash.get(SESSION, None)
    if state is None or not any(state.targets.values()):
        return
    from pytest_cvdoctor.items import CommandTarget

    for command, targets in state.targets.items():
        seen: set[str] = set()
        for target, base in targets:
            if target in seen:
                continue
            seen.add(target)
            collector = CommandTarget.for_session(session, command, target,
                                                  relative_to(target, base), state)
            # genitems sends the usual collection hooks, so "collected N items" counts these.
            items.extend(session.genitems(collector))


# --- failure explanations -------------------------------------------------------------------
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    outcome = yield
    if call.excinfo is None or call.when not in ("setup", "call"):
        return  # passing tests pay nothing
    report = outcome.get_result()
    if report.skipped and item.stash.get(SKIP_AT_ITEM, False) \
            and isinstance(report.longrepr, tuple):
        # Point the skip at the test, as pytest does for skipif, not at this plugin.
        path, line = item.reportinfo()[:2]
        report.longrepr = (str(path), None if line is None else line + 1, report.longrepr[2])
    if not report.failed:
        return
    state = item.config.stash.get(SESSION, None)
    if state is None or not state.explain:
        return
    try:
        from pytest_cvdoctor.explain import explain_exception

        text = explain_exception(call.excinfo.value)
    except Exception:  # noqa: BLE001 - an explanation must never hide the real failure
        return
    if text:
        report.sections.append(("cvdoctor", text))
