"""pytest plugin entry point (pytest11). At import time: pytest and the standard library only.

It loads in every pytest run of every project that installs cvdoctor, so everything that costs
(cvdoctor's API, torch, the recipe catalog) is imported inside a fixture or hook, when a test
asks for it or a test has already failed. `-p no:cvdoctor` turns the plugin off.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_cvdoctor import assertions, requirements

_GROUP = "cvdoctor: environment and model checks (cvdoctor explain <recipe> tells the fix)"
_HEADER_WIDTH = 118


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("cvdoctor", _GROUP)
    group.addoption("--cvdoctor-env", action="store_true", default=None,
                    help="Add a one-screen cvdoctor environment summary to the report header.")
    parser.addini("cvdoctor_env", type="bool", default=False,
                  help="Like --cvdoctor-env.")
    group.addoption("--cvdoctor-model", action="append", default=None, metavar="TARGET",
                    help="Add one test item per model check for TARGET: a model file, "
                         "package.module:attr or a zoo spec like torchvision:resnet18 "
                         "(repeatable).")
    parser.addini("cvdoctor_model", type="linelist", default=[],
                  help="Model targets for generated check items, one per line "
                       "(like --cvdoctor-model).")
    group.addoption("--cvdoctor-budget", default=None, metavar="SECONDS",
                    help="Time budget per model run for the slow checks (model.overfit_batch): "
                         "used by --cvdoctor-model items, the cvdoctor fixture and the "
                         "assert_* helpers. Running out is a warning, never a failure.")
    parser.addini("cvdoctor_budget", default="", help="Like --cvdoctor-budget.")
    group.addoption("--cvdoctor-input-shape", default=None, metavar="C,H,W",
                    help="Input shape for --cvdoctor-model targets that give no batch (a zoo "
                         "spec defaults to the model's own size, e.g. 224 px).")
    parser.addini("cvdoctor_input_shape", default="", help="Like --cvdoctor-input-shape.")
    group.addoption("--cvdoctor-num-classes", default=None, type=int, metavar="N",
                    help="Number of classes for --cvdoctor-model targets (zoo heads, synthesized "
                         "labels).")
    parser.addini("cvdoctor_num_classes", default="", help="Like --cvdoctor-num-classes.")
    group.addoption("--cvdoctor-strict", action="store_true", default=None,
                    help="Unmet cvdoctor_requires markers fail instead of skipping; warnings "
                         "of model checks fail too.")
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


def _budget(config: pytest.Config) -> float | None:
    raw = _setting(config, "cvdoctor_budget")
    if raw in (None, ""):
        return None
    try:
        budget = float(raw)
    except (TypeError, ValueError):
        raise pytest.UsageError(f"--cvdoctor-budget / cvdoctor_budget: {raw!r} is not a "
                                "number of seconds") from None
    if budget <= 0:
        raise pytest.UsageError(f"--cvdoctor-budget / cvdoctor_budget must be positive, "
                                f"got {raw!r}")
    return budget


class CvdoctorSession:
    """Per-run settings and caches (in config.stash, so nested pytester runs stay apart)."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.show_env = bool(_setting(config, "cvdoctor_env"))
        # Relative model files: from the invocation directory on the command line, from the
        # rootdir (where the ini file is) in the ini key.
        cli_models = config.getoption("cvdoctor_model")
        self.models = [(t, Path(config.invocation_params.dir)) for t in cli_models or ()] or \
            [(t, Path(config.rootpath)) for t in config.getini("cvdoctor_model")]
        self.input_shape = _setting(config, "cvdoctor_input_shape") or None
        num_classes = _setting(config, "cvdoctor_num_classes")
        try:
            self.num_classes = int(num_classes) if num_classes not in (None, "") else None
        except ValueError:
            raise pytest.UsageError(f"cvdoctor_num_classes: {num_classes!r} is not an integer") \
                from None
        self.budget = _budget(config)
        self.strict = bool(_setting(config, "cvdoctor_strict"))
        self.explain = bool(_setting(config, "cvdoctor_explain"))
        self.requirement_cache: dict[str, Any] = {}
        self._env_report: Any = None

    def env_report(self) -> Any:
        """The environment report, computed once per process on first use."""
        if self._env_report is None:
            from cvdoctor import check_env

            self._env_report = check_env()
        return self._env_report


_SESSION = pytest.StashKey[CvdoctorSession]()
# Set on an item whose skip should be reported at the item, not where pytest.skip was called.
SKIP_AT_ITEM = pytest.StashKey[bool]()
_PREVIOUS_DEFAULTS = pytest.StashKey[dict]()


def _session(config: pytest.Config) -> CvdoctorSession:
    return config.stash[_SESSION]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "cvdoctor_requires(gpu=False, min_shm=None, packages=(), checkpoints=()): skip the test "
        "with the measured reason and a cvdoctor recipe when this machine lacks what it needs "
        "(a usable GPU, a /dev/shm of at least min_shm, importable packages, checkpoint files); "
        "--cvdoctor-strict fails instead.")
    config.addinivalue_line(
        "markers", "cvdoctor_model: a model check item generated by --cvdoctor-model.")
    state = CvdoctorSession(config)
    config.stash[_SESSION] = state
    config.stash[_PREVIOUS_DEFAULTS] = dict(assertions.session_defaults)
    assertions.session_defaults.update(budget=state.budget, strict=state.strict)


def pytest_unconfigure(config: pytest.Config) -> None:
    previous = config.stash.get(_PREVIOUS_DEFAULTS, None)
    if previous is not None:
        assertions.session_defaults.clear()
        assertions.session_defaults.update(previous)


# --- report header --------------------------------------------------------------------------
def _fit(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 3].rstrip() + "..."


def env_summary(report: Any) -> list[str]:
    """One line per env check (mark, id, measured message, recipe), under the summary line."""
    from cvdoctor.redact import redact_text
    from cvdoctor.render import MARKS, summary_line

    width = max((len(f.check) for f in report.findings), default=0)
    lines = [summary_line(report).rstrip()]
    previous = None
    for f in report.findings:
        more = f" [cvdoctor explain {f.recipe}]" if f.recipe and f.is_problem else ""
        room = _HEADER_WIDTH - width - 4 - len(more)
        shown_id = f.check if f.check != previous else ""  # as in the text report
        previous = f.check
        lines.append(f"  {MARKS[f.status]} {shown_id.ljust(width)} {_fit(f.message, room)}{more}")
    return [redact_text(line) for line in lines]


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    state = config.stash.get(_SESSION, None)
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
    assert_healthy(report)  fails listing each failing finding, its fix and its recipe
    """

    def __init__(self, state: CvdoctorSession):
        self._state = state

    def check_model(self, model: Any, batch: Any = None, **kwargs: Any) -> Any:
        from cvdoctor import check_model

        if kwargs.get("budget") is None:
            kwargs["budget"] = self._state.budget
        return check_model(model, batch, **kwargs)

    def check_env(self, **kwargs: Any) -> Any:
        if not kwargs:
            return self._state.env_report()
        from cvdoctor import check_env

        return check_env(**kwargs)

    @property
    def env(self) -> Any:
        return self._state.env_report()

    def assert_healthy(self, report: Any, *, strict: bool | None = None) -> Any:
        __tracebackhide__ = True
        return assertions._assert_healthy(
            report, self._state.strict if strict is None else strict, stacklevel=4)

    def __repr__(self) -> str:
        return f"<cvdoctor pytest helper budget={self._state.budget} strict={self._state.strict}>"


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


# --- zero-code model items ------------------------------------------------------------------
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    # tryfirst: added before -k/-m/--deselect filter the list, so those select these items too.
    state = config.stash.get(_SESSION, None)
    if state is None or not state.models:
        return
    from pytest_cvdoctor.modelitems import ModelTarget, model_check_ids

    check_ids = model_check_ids()
    seen: set[str] = set()
    for target, base in state.models:
        if target in seen:
            continue
        seen.add(target)
        collector = ModelTarget.for_session(
            session, target, base, check_ids=check_ids, budget=state.budget, strict=state.strict,
            input_shape=state.input_shape, num_classes=state.num_classes)
        # genitems sends the usual collection hooks, so "collected N items" counts these too.
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
    state = item.config.stash.get(_SESSION, None)
    if state is None or not state.explain:
        return
    try:
        from pytest_cvdoctor.explain import explain_exception

        text = explain_exception(call.excinfo.value)
    except Exception:  # noqa: BLE001 - an explanation must never hide the real failure
        return
    if text:
        report.sections.append(("cvdoctor", text))
