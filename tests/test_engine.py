"""The engine: registry, runner isolation, selection, report, renderers, exit codes."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cvdoctor import exitcodes
from cvdoctor.cli import _emit_report, cli
from cvdoctor.finding import Finding, failed, passed, skipped, warned, worst_status
from cvdoctor.registry import (DuplicateCheckError, SelectionError, register, select_checks,
                               unregister, all_checks)
from cvdoctor.render import render_json, render_text
from cvdoctor.report import Report
from cvdoctor import runner


@pytest.fixture
def scratch_checks():
    ids = []

    def add(check_id, func, recipes=()):
        register(check_id, title=f"title of {check_id}", recipes=recipes)(func)
        ids.append(check_id)

    yield add
    for i in ids:
        unregister(i)


def test_finding_rules():
    with pytest.raises(ValueError, match="needs a recipe"):
        Finding("fail", "t", "m")
    with pytest.raises(ValueError, match="unknown status"):
        Finding("broken", "t", "m")
    with pytest.raises(ValueError, match="say why"):
        Finding("skip", "t", "")
    assert worst_status([passed("a", "b"), warned("a", "b", "f", "r")]) == "warn"
    assert worst_status([failed("a", "b", "f", "r"), Finding("error", "t", "m")]) == "fail"
    assert worst_status([skipped("a", "no gpu")]) == "pass"


def test_duplicate_id_rejected(scratch_checks):
    scratch_checks("zz.dup", lambda ctx: passed("t", "m"))
    with pytest.raises(DuplicateCheckError):
        register("zz.dup", title="again")(lambda ctx: None)


def test_bad_id_rejected():
    with pytest.raises(ValueError):
        register("NoDots", title="x")


def test_raising_check_becomes_error_and_others_still_run(scratch_checks):
    def boom(ctx):
        raise ZeroDivisionError("division by zero")

    scratch_checks("zz.boom", boom)
    scratch_checks("zz.fine", lambda ctx: passed("fine", "all good"))
    report = runner.run("zz", ctx=None)
    assert [f.check for f in report.findings] == ["zz.boom", "zz.fine"]
    assert report["zz.boom"].status == "error"
    assert "ZeroDivisionError" in report["zz.boom"].message
    assert "traceback" in report["zz.boom"].evidence
    assert report["zz.fine"].status == "pass"
    assert not report.ok and report.status == "error"


def test_check_may_not_emit_undeclared_recipe(scratch_checks):
    scratch_checks("zz.sneaky", lambda ctx: warned("t", "m", "fix", "not-declared"),
                   recipes=["declared"])
    report = runner.run("zz", ctx=None)
    assert report["zz.sneaky"].status == "error"
    assert "not-declared" in report["zz.sneaky"].message


def test_check_returning_nothing_is_a_bug(scratch_checks):
    scratch_checks("zz.empty", lambda ctx: [])
    assert runner.run("zz", ctx=None)["zz.empty"].status == "error"


def test_selection_by_id_glob_and_ignore(scratch_checks):
    for name in ("zz.a", "zz.b", "zz.cc"):
        scratch_checks(name, lambda ctx: passed("t", "m"))
    specs = [s for s in all_checks("zz")]
    ids = lambda sel, ign=None: [s.id for s in select_checks(specs, sel, ign)]  # noqa: E731
    assert ids(["zz.a"]) == ["zz.a"]
    assert ids(["zz.a,zz.b"]) == ["zz.a", "zz.b"]
    assert ids(["zz.c*"]) == ["zz.cc"]
    assert ids(["zz"], ["zz.b"]) == ["zz.a", "zz.cc"]
    with pytest.raises(SelectionError, match="no check matches"):
        ids(["zz.nope"])


def _report(*findings):
    for i, f in enumerate(findings):
        f.check = f.check or f"env.c{i}"
    return Report(command="env", target=None, findings=list(findings), duration_s=0.5)


def test_json_shape():
    r = _report(passed("Shared memory", "8.0 GiB free"),
                failed("GPU arch", "no kernel", "reinstall", "gpu-arch-unsupported", arch="sm_70"))
    data = json.loads(render_json(r))
    assert list(data)[0] == "schema_version" and data["schema_version"] == 1
    assert data["tool"] == "cvdoctor" and data["command"] == "env" and data["status"] == "fail"
    assert set(data) >= {"version", "target", "duration_s", "findings"}
    f = data["findings"][1]
    assert set(f) == {"check", "status", "title", "message", "fix", "recipe", "evidence",
                      "duration_s"}
    assert f["evidence"] == {"arch": "sm_70"} and f["recipe"] == "gpu-arch-unsupported"


def test_text_render_marks_fix_and_explain():
    r = _report(passed("Platform", "Linux x86_64"),
                warned("GPU", "no GPU found", "install a CUDA build", "no-gpu"),
                failed("Shm", "64 MiB", "use --ipc=host", "shm-docker-ipc"),
                skipped("Memory", "no GPU to measure"),
                Finding("error", "Broke", "the check itself broke: KeyError"))
    text = render_text(r, color=False)
    lines = text.splitlines()
    assert lines[0].startswith("cvdoctor env: 5 checks, 1 failed, 1 broke, 1 warned, 1 skipped")
    assert any(l.startswith("✓ env.c0") for l in lines)
    assert any(l.startswith("! env.c1") for l in lines)
    assert any(l.startswith("✗ env.c2") for l in lines)
    assert any(l.startswith("– env.c3") for l in lines)
    assert "fix: use --ipc=host" in text and "cvdoctor explain shm-docker-ipc" in text
    assert "\x1b[" not in text
    assert "\x1b[31m" in render_text(r, color=True)


def test_verbose_shows_evidence():
    r = _report(failed("Shm", "64 MiB", "fix", "shm-docker-ipc", size_bytes=67108864))
    assert "size_bytes: 67108864" in render_text(r, verbose=True)
    assert "size_bytes" not in render_text(r, verbose=False)


@pytest.mark.parametrize("statuses,strict,code", [
    (["pass"], False, exitcodes.OK),
    (["pass", "warn"], False, exitcodes.OK),
    (["pass", "warn"], True, exitcodes.CHECK_FAILED),
    (["fail", "warn"], False, exitcodes.CHECK_FAILED),
    (["error"], False, exitcodes.CRASHED),
    (["fail", "error"], False, exitcodes.CHECK_FAILED),
])
def test_exit_codes(statuses, strict, code, capsys):
    fs = [Finding(s, "t", "m", fix="f" if s in ("warn", "fail") else "",
                  recipe="r" if s in ("warn", "fail") else None) for s in statuses]
    assert _emit_report(_report(*fs), as_json=True, verbose=False, strict=strict) == code


def test_report_api():
    r = _report(passed("a", "b"), failed("c", "d", "e", "r"))
    assert r["env.c1"].status == "fail" and r.failures == [r["env.c1"]] and not r.ok
    with pytest.raises(KeyError, match="env.c0"):
        r["env.missing"]
    assert "✗ env.c1" in str(r)


def test_usage_error_exit_code():
    result = CliRunner().invoke(cli, ["env", "--select", "env.definitely_not_a_check"])
    assert result.exit_code == exitcodes.USAGE
    assert "no check matches" in result.output


def test_crash_exit_code(monkeypatch):
    import cvdoctor.api

    def explode(*_a, **_kw):
        raise RuntimeError("internal bug")

    monkeypatch.setattr(cvdoctor.api, "run_context", explode)
    result = CliRunner().invoke(cli, ["env"])
    assert result.exit_code == exitcodes.CRASHED
    assert "cvdoctor crashed" in result.stderr and "internal bug" in result.stderr
    assert result.stdout == ""


def test_env_run_does_not_import_torch_in_the_main_process():
    """Speed: all torch work for `cvdoctor env` happens in probe subprocesses."""
    import subprocess
    import sys

    code = ("import sys\nfrom cvdoctor.registry import all_checks\nall_checks('env')\n"
            "assert 'torch' not in sys.modules, 'loading env checks imported torch'\n"
            "sys.stderr.write('NO_TORCH_OK')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "NO_TORCH_OK" in proc.stderr, proc.stderr


def test_a_check_with_several_findings_shows_its_id_once():
    a = warned("CPUs", "2 usable CPUs", "fix", "resources-few-cpus")
    b = passed("Memory", "21 GiB available")
    a.check = b.check = "env.resources"
    lines = render_text(_report(a, b)).splitlines()
    assert sum("env.resources" in line for line in lines) == 1
    assert any(line.startswith("✓ ") and "Memory: 21 GiB" in line for line in lines)


def test_report_repr_is_short():
    r = _report(passed("a", "b"), failed("c", "d", "e", "r"))
    assert repr(r) == "<Report env: fail (env.c1)>"


def test_summary_counts_checks_and_says_when_findings_differ():
    one = _report(failed("Shm", "64 MiB", "fix", "shm-docker-ipc"))
    assert render_text(one).splitlines()[0].startswith("cvdoctor env: 1 check, 1 failed")
    a = warned("CPUs", "2", "fix", "resources-few-cpus")
    b = warned("Disk", "1 GiB", "fix", "resources-low-disk")
    a.check = b.check = "env.resources"
    head = render_text(_report(a, b)).splitlines()[0]
    assert head.startswith("cvdoctor env: 1 check (2 findings), 2 warned"), head


def test_checks_run_and_report_in_their_declared_order(scratch_checks):
    register("zz.late", title="t", order=20)(lambda ctx: passed("t", "m"))
    register("zz.early", title="t", order=10)(lambda ctx: passed("t", "m"))
    scratch_checks("zz.default", lambda ctx: passed("t", "m"))
    try:
        assert [f.check for f in runner.run("zz", ctx=None).findings] == \
            ["zz.early", "zz.late", "zz.default"]
    finally:
        unregister("zz.late")
        unregister("zz.early")


def test_model_report_reads_cause_first():
    ids = [s.id for s in all_checks("model")]
    assert ids.index("model.data") < ids.index("model.forward") < ids.index("model.gradients") \
        < ids.index("model.overfit_batch")
