"""The plugin's per-run state: the settings of one pytest run and what it computed once.

Kept in `config.stash` (nested pytester runs stay apart) and, for the duration of each test, in a
context variable, so the module-level `assert_*` helpers called from a user's test see this run's
--cvdoctor-budget and --cvdoctor-strict. Standard library and pytest only.
"""
from __future__ import annotations

import contextvars
import os
from pathlib import Path
from typing import Any

import pytest


class CvdoctorSession:
    """Per-run settings and caches."""

    def __init__(self, config: pytest.Config, *, show_env: bool, targets: dict[str, list],
                 values: dict[str, Any], strict: bool, explain: bool):
        self.config = config
        self.show_env = show_env
        # command name -> [(target, base directory for relative paths)]
        self.targets = targets
        self.values = values  # plugin option values by option name (budget, num_classes, ...)
        self.strict = strict
        self.explain = explain
        self.requirement_cache: dict[str, Any] = {}
        self._env_report: Any = None

    @property
    def budget(self) -> float | None:
        return self.values.get("budget")

    def env_report(self) -> Any:
        """The environment report, computed once per process on first use."""
        if self._env_report is None:
            from cvdoctor import check_env

            self._env_report = check_env()
        return self._env_report


SESSION = pytest.StashKey[CvdoctorSession]()
# Set on an item whose skip should be reported at the item, not where pytest.skip was called.
SKIP_AT_ITEM = pytest.StashKey[bool]()
# The running test's session, for the module-level assertion helpers.
ACTIVE: contextvars.ContextVar[CvdoctorSession | None] = contextvars.ContextVar(
    "cvdoctor_active_session", default=None)


def session(config: pytest.Config) -> CvdoctorSession:
    return config.stash[SESSION]


def relative_to(target: str, base: Path) -> str:
    """A relative file target made absolute against `base`; other targets as they are."""
    if ":" in target and "/" not in target and os.sep not in target:
        return target  # package.module:attr or a zoo spec
    path = Path(target).expanduser()
    return str(path if path.is_absolute() else base / path)
