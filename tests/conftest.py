"""Fixtures shared by the test modules (helpers for fixture models live in modelzoo.py)."""
from __future__ import annotations

import pytest


@pytest.fixture
def one_thread():
    """One intra-op thread: on a 2-core CPU shared with other jobs, two threads run tiny models
    many times slower (the verdicts do not depend on it, the test time does)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- every finding a check can emit has a fixture that triggers it ------------------------------
# Every (check, status, recipe) any test makes cvdoctor emit (in this process, in xdist workers
# and in subprocesses, through CVDOCTOR_FINDINGS_LOG) is recorded; at the end of a full run the
# records are compared with what each check declares (tests/finding_coverage.py).

def pytest_configure(config):
    import os
    import tempfile

    if hasattr(config, "workerinput"):
        return  # workers inherit the controller's folder through the environment
    from cvdoctor.runner import FINDINGS_LOG_ENV

    if not os.environ.get(FINDINGS_LOG_ENV):
        os.environ[FINDINGS_LOG_ENV] = tempfile.mkdtemp(prefix="cvdoctor-findings-")
    config._cvdoctor_findings_log = os.environ[FINDINGS_LOG_ENV]


def pytest_sessionfinish(session, exitstatus):
    import finding_coverage

    config = session.config
    folder = getattr(config, "_cvdoctor_findings_log", None)
    if folder is None or exitstatus != 0 or not finding_coverage.full_run(config):
        return
    missing = finding_coverage.missing(folder)
    if missing:
        config._cvdoctor_coverage_report = missing
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    missing = getattr(config, "_cvdoctor_coverage_report", None)
    if missing:
        terminalreporter.section("cvdoctor finding coverage", red=True)
        terminalreporter.line("No test made these checks emit these findings (add a fixture "
                              "that triggers each, or, if this machine cannot, an exemption "
                              "with the reason in tests/finding_coverage.py):")
        for line in missing:
            terminalreporter.line(f"  {line}")
