"""The engine's contracts, enforced: checks import no checks, the check index matches the registry,
needs= name real facts in an acyclic graph, commands derive their CLI, API and pytest options from
one declaration, facts that break name themselves, the front door documents every check, exit codes
end to end, and redaction."""
from __future__ import annotations

import ast
import inspect
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cvdoctor import api, exitcodes
from cvdoctor.cli import cli
from cvdoctor.commands import all_commands
from cvdoctor.factgraph import Context, fact, fact_spec, load_fact_modules
from cvdoctor.finding import passed
from cvdoctor.registry import all_checks, check_index, register, unregister
from cvdoctor import runner

ROOT = Path(__file__).resolve().parents[1]
CHECKS = ROOT / "checks"
FACT_PACKAGES = ["cvdoctor.facts", "cvdoctor.model.facts"]


def _check_commands() -> list:
    return [c for c in all_commands().values() if c.click_command is None]


# --- structure ---------------------------------------------------------------------------------

def test_no_check_imports_a_check():
    offenders = []
    for path in sorted(CHECKS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom):
                names = [("." * node.level) + (node.module or "")]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if name.startswith(".") or name.startswith("cvdoctor.checks") \
                        or name == "checks" or name.startswith("checks."):
                    offenders.append(f"{path.name}: {name}")
    assert not offenders, f"checks import checks (move shared code to cvdoctor/): {offenders}"


def test_the_check_index_read_from_source_matches_the_registry():
    specs = {s.id: s for s in all_checks()}
    index = {e.id: e for e in check_index()}
    assert set(index) == set(specs)
    for check_id, entry in index.items():
        assert entry.command == specs[check_id].command, check_id
        assert entry.module == specs[check_id].func.__module__, check_id


def test_every_check_runs_under_a_declared_command():
    commands = {c.name for c in _check_commands()}
    assert {s.command for s in all_checks()} <= commands


def test_needs_name_registered_facts_in_an_acyclic_graph():
    load_fact_modules(FACT_PACKAGES + _all_fact_packages())
    for spec in all_checks():
        for name in spec.needs:
            assert fact_spec(name) is not None, f"{spec.id} needs unknown fact {name!r}"
    ctx = Context()
    ctx.closure(sorted({n for s in all_checks() for n in s.needs}))  # raises on a cycle


def _all_fact_packages() -> list[str]:
    """The fact packages of every context class in cvdoctor (all its modules imported, probes
    aside: they are scripts)."""
    import importlib
    import pkgutil

    import cvdoctor

    for mod in pkgutil.walk_packages(cvdoctor.__path__, "cvdoctor."):
        if ".probes." not in mod.name:
            importlib.import_module(mod.name)

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    return sorted({p for cls in subclasses(Context) for p in cls.fact_packages})


def test_every_check_documents_itself():
    for spec in all_checks():
        assert spec.doc, f"{spec.id} has no docstring"
        assert spec.summary, spec.id


# --- commands as data --------------------------------------------------------------------------

@pytest.mark.parametrize("command", _check_commands(), ids=lambda c: c.name)
def test_api_and_cli_derive_from_the_declaration(command):
    func = getattr(api, f"check_{command.name}")
    params = list(inspect.signature(func).parameters)
    expected = [p.name for p in sorted(command.api_params, key=lambda p: not p.positional)] or \
        (["target"] if command.target else [])
    expected += [o.name for o in command.options if o.api]
    expected += [name for name, _ in api.COMMON_PARAMS]
    assert params == expected
    for o in command.options:
        if o.api:
            assert o.name in func.__doc__
    click_cmd = cli.get_command(None, command.name)
    flags = {opt for p in click_cmd.params for opt in getattr(p, "opts", [])}
    for o in command.options:
        assert (o.cli_flag in flags) == o.cli, o.name
    assert {"--select", "--ignore", "--json", "--strict", "--facts"} <= flags
    import cvdoctor

    assert getattr(cvdoctor, f"check_{command.name}") is func


def test_pytest_options_derive_from_the_declarations(pytester):
    from pytest_cvdoctor.plugin import _plugin_options

    result = pytester.runpytest("--help")
    assert result.ret == 0, result.stderr.str()  # no two options clash
    out = result.stdout.str()
    for command in _check_commands():
        if command.plugin_items:
            assert f"--cvdoctor-{command.name}=" in out, command.name
    flags = {entry.key: entry.flag for entry in _plugin_options()}
    for command in _check_commands():
        for o in command.options:
            if o.plugin:
                flag = flags.get(o.name) or flags[f"{command.name}.{o.name}"]
                assert flag in out, o.name


# --- facts that break, facts not declared ------------------------------------------------------

@pytest.fixture
def scratch():
    ids = []

    def add(check_id, func, needs=(), recipes=()):
        register(check_id, title=f"title of {check_id}", needs=needs, recipes=recipes)(func)
        ids.append(check_id)

    yield add
    for i in ids:
        unregister(i)


@fact("zz_broken")
def _broken_fact(ctx):
    raise OSError("the disk went away")


@fact("zz_fine")
def _fine_fact(ctx):
    return {"value": 42}


def test_a_fact_that_raises_names_itself_in_its_readers_findings(scratch):
    scratch("zz.reader", lambda ctx: passed("t", str(ctx.fact("zz_broken"))), needs=["zz_broken"])
    scratch("zz.other", lambda ctx: passed("t", str(ctx.fact("zz_fine")["value"])),
            needs=["zz_fine"])
    report = runner.run("zz", Context())
    broken = report["zz.reader"]
    assert broken.status == "error" and "zz_broken" in broken.message
    assert "the disk went away" in broken.message and broken.evidence["fact"] == "zz_broken"
    assert report["zz.other"].status == "pass" and report["zz.other"].message == "42"
    assert report.facts["zz_broken"]["ok"] is False and report.facts["zz_fine"]["ok"] is True


def test_reading_an_undeclared_fact_is_a_bug_report(scratch):
    scratch("zz.sneaky", lambda ctx: passed("t", str(ctx.fact("zz_fine"))))
    f = runner.run("zz", Context())["zz.sneaky"]
    assert f.status == "error" and "does not declare it" in f.message


def test_parallel_context_gathers_each_fact_once_across_threads():
    calls = []

    @fact("zz_slow")
    def slow(ctx):
        import time

        calls.append(1)
        time.sleep(0.05)
        return 1

    @fact("zz_a", needs=["zz_slow"])
    def a(ctx):
        return ctx.fact("zz_slow") + 1

    @fact("zz_b", needs=["zz_slow"])
    def b(ctx):
        return ctx.fact("zz_slow") + 2

    class Parallel(Context):
        parallel = True

    ctx = Parallel()
    ctx.prepare(["zz_a", "zz_b"])
    assert (ctx.fact("zz_a"), ctx.fact("zz_b")) == (2, 3) and len(calls) == 1


def test_recorded_facts_replace_gathering():
    ctx = Context(recorded={"zz_broken": {"recorded": True}})
    assert ctx.fact("zz_broken") == {"recorded": True}
    assert ctx.fact_timings()["zz_broken"]["recorded"] is True


# --- the front door: cvdoctor checks, cvdoctor explain CHECK_ID --------------------------------

def test_checks_lists_every_check_with_what_it_measures():
    result = CliRunner().invoke(cli, ["checks", "--json"])
    assert result.exit_code == 0, result.output
    listed = {c["id"]: c for c in json.loads(result.stdout)["checks"]}
    assert set(listed) == {s.id for s in all_checks()}
    for spec in all_checks():
        assert listed[spec.id]["measures"] and listed[spec.id]["recipes"] == list(spec.recipes)
    text = CliRunner().invoke(cli, ["checks", "env"])
    assert text.exit_code == 0 and "env.shm" in text.stdout and "model.data" not in text.stdout
    assert CliRunner().invoke(cli, ["checks", "nonsense"]).exit_code == exitcodes.USAGE


def test_explain_a_check_id_prints_its_documentation():
    result = CliRunner().invoke(cli, ["explain", "env.shm"])
    assert result.exit_code == 0, result.output
    assert "Shared memory" in result.stdout and "shm-docker-ipc" in result.stdout
    assert "cvdoctor env" in result.stdout
    as_json = json.loads(CliRunner().invoke(cli, ["explain", "env.shm", "--json"]).stdout)
    assert as_json["id"] == "env.shm" and as_json["recipes"] == ["shm-docker-ipc"]
    miss = CliRunner().invoke(cli, ["explain", "env.shmm"])
    assert miss.exit_code == exitcodes.USAGE and "env.shm" in miss.stderr


def test_explain_output_names_no_internal_path():
    for spec in all_checks("env"):
        out = CliRunner().invoke(cli, ["explain", spec.id]).stdout
        assert "../shared" not in out and "reference/" not in out


# --- exit codes end to end ---------------------------------------------------------------------

HEALTHY_PLATFORM = {"platform": {"system": "Linux", "release": "6.1", "machine": "x86_64",
                                 "python": "3.11.7", "python_implementation": "CPython"}}


def test_exit_code_matrix_end_to_end(tmp_path):
    facts = tmp_path / "facts.json"
    facts.write_text(json.dumps(HEALTHY_PLATFORM))
    run = CliRunner().invoke
    ok = run(cli, ["env", "--select", "env.platform", "--facts", str(facts)])
    assert ok.exit_code == exitcodes.OK, ok.output
    aarch64 = dict(HEALTHY_PLATFORM["platform"], machine="aarch64")
    facts.write_text(json.dumps({"platform": aarch64}))
    warned = run(cli, ["env", "--select", "env.platform", "--facts", str(facts), "--strict"])
    assert warned.exit_code == exitcodes.CHECK_FAILED, warned.output
    assert run(cli, ["env", "--select", "env.nope"]).exit_code == exitcodes.USAGE
    assert run(cli, ["model", str(tmp_path / "missing.py")]).exit_code == exitcodes.USAGE
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert run(cli, ["env", "--facts", str(bad)]).exit_code == exitcodes.USAGE
    def boom(ctx):
        raise RuntimeError("a bug inside a check")

    register("env.zz_boom", title="boom", needs=["platform"])(boom)
    try:
        broke = run(cli, ["env", "--select", "env.zz_boom", "--facts", str(facts)])
        assert broke.exit_code == exitcodes.CRASHED
        assert "a bug inside a check" in broke.stdout
    finally:
        unregister("env.zz_boom")


def test_a_failing_check_exits_1(tmp_path):
    facts = tmp_path / "facts.json"
    platform = dict(HEALTHY_PLATFORM["platform"], container="docker")
    facts.write_text(json.dumps({"platform": platform, "shm": {
        "path": "/dev/shm", "exists": False, "system": "Linux", "probe": None,
        "estimate": {"need_bytes": 2**28, "workers": 2, "prefetch_factor": 2,
                     "assumption": "test"}}}))
    result = CliRunner().invoke(cli, ["env", "--select", "env.shm", "--facts", str(facts)])
    assert result.exit_code == exitcodes.CHECK_FAILED, result.output


# --- redaction --------------------------------------------------------------------------------

@pytest.mark.parametrize("text,secret,shown", [
    ("/home/alice/project/model.pt", "/home/alice", "~/project/model.pt"),
    ("token hf_abcdefghijklmnopqrstuvwxyz0123 set", "hf_abcdefghijklmnopqrstuvwxyz0123",
     "<token>"),
    ("ghp_ABCDEFGHIJKLMNOPQRST in the log", "ghp_ABCDEFGHIJKLMNOPQRST", "<token>"),
    ("key sk-abcdefghijklmnopqrstuv12", "sk-abcdefghijklmnopqrstuv12", "<token>"),
    ("GPU-8f4c3c2e-1b2a-4c5d-9e8f-0a1b2c3d4e5f is busy",
     "8f4c3c2e-1b2a-4c5d-9e8f-0a1b2c3d4e5f", "GPU-<uuid>"),
    ("MIG-8f4c3c2e-1b2a-4c5d-9e8f-0a1b2c3d4e5f", "8f4c3c2e-1b2a-4c5d-9e8f-0a1b2c3d4e5f",
     "GPU-<uuid>"),
    ("run by alice on gpubox01", "alice", "<user>"),
    ("run by alice on gpubox01", "gpubox01", "<host>"),
])
def test_redaction_table(text, secret, shown):
    from cvdoctor.redact import redact, redact_text

    pairs = [("/home/alice", "~"), ("alice", "<user>"), ("gpubox01", "<host>")]
    out = redact_text(text, pairs)
    assert secret not in out and shown in out
    nested = redact({"a": [text, {"b": text}], "n": 3}, pairs)
    assert secret not in json.dumps(nested) and nested["n"] == 3


def test_redaction_keeps_ordinary_words():
    from cvdoctor.redact import redact_text

    pairs = [("bob", "<user>")]
    assert redact_text("bobsled and bob's model by bob", pairs) == \
        "bobsled and <user>'s model by <user>"


# --- one root cause, one failure ---------------------------------------------------------------

def test_a_consequence_is_shown_under_its_cause(scratch):
    from cvdoctor.finding import failed
    from cvdoctor.render import render_text

    scratch("zz.cause", lambda ctx: failed("Labels", "labels 1..10 for 10 outputs", "y - 1",
                                           "target-out-of-bounds"),
            recipes=["target-out-of-bounds"])
    register("zz.later", title="Forward", order=2000, recipes=["target-out-of-bounds"])(
        lambda ctx: failed("Forward", "IndexError: Target 10 is out of bounds", "see",
                           "target-out-of-bounds"))
    register("zz.other", title="Other", order=3000, recipes=["softmax-twice"])(
        lambda ctx: failed("Other", "something else", "fix it", "softmax-twice"))
    try:
        report = runner.run("zz", Context())
    finally:
        unregister("zz.later")
        unregister("zz.other")
    later = report["zz.later"]
    assert later.status == "fail" and later.caused_by == "zz.cause"
    assert report["zz.cause"].caused_by is None and report["zz.other"].caused_by is None
    assert report.to_dict()["findings"][1]["caused_by"] == "zz.cause"
    assert "caused_by" not in report.to_dict()["findings"][0]
    lines = render_text(report).splitlines()
    assert "2 failed, 1 more follows from those" in lines[0]
    cause_at = next(i for i, ln in enumerate(lines) if "zz.cause" in ln and "✗" in ln)
    under = next(i for i, ln in enumerate(lines) if ln.startswith("  ↳ zz.later"))
    other_at = next(i for i, ln in enumerate(lines) if "zz.other" in ln)
    assert cause_at < under < other_at and "follows from zz.cause" in lines[under]
    assert sum("cvdoctor explain target-out-of-bounds" in ln for ln in lines) == 1
    from cvdoctor.cli import _emit_report

    assert _emit_report(report, as_json=True, verbose=False, strict=False) == \
        exitcodes.CHECK_FAILED


# --- a context decides which checks apply to its target -----------------------------------------

def test_checks_for_other_kinds_of_target_are_left_out_or_skipped(scratch):
    register("zz.ordinary", title="Ordinary")(lambda ctx: passed("t", "ran"))
    register("zz.yolo_only", title="YOLO only", targets=["yolo"])(lambda ctx: passed("t", "ran"))
    try:
        plain = runner.run("zz", Context())
        assert plain.check_ids() == ["zz.ordinary"]  # not listed on an ordinary target

        class Yolo(Context):
            target_kind = "yolo"

        yolo = runner.run("zz", Yolo())
        assert yolo.check_ids() == ["zz.yolo_only"]

        class Explains(Context):
            def applies(self, check):
                return True if check.id == "zz.yolo_only" else "not a classification set-up"

        explained = runner.run("zz", Explains())
        assert explained["zz.ordinary"].status == "skip"
        assert explained["zz.ordinary"].message == "not a classification set-up"
        asked = runner.run("zz", Context(), select=["zz.yolo_only"])
        assert asked["zz.yolo_only"].status == "skip"
        assert "does not apply" in asked["zz.yolo_only"].message
    finally:
        unregister("zz.ordinary")
        unregister("zz.yolo_only")


def test_an_opt_in_check_runs_only_when_its_option_is_set():
    register("zz.plain", title="Plain")(lambda ctx: passed("t", "ran"))
    register("zz.ddp_only", title="DDP", opt_in="ddp")(lambda ctx: passed("t", "ran on ddp"))
    from cvdoctor.factgraph import Options

    try:
        assert runner.run("zz", Context()).check_ids() == ["zz.plain"]
        asked = runner.run("zz", Context(Options({"ddp": 2})))
        assert asked["zz.ddp_only"].message == "ran on ddp"
        named = runner.run("zz", Context(), select=["zz.ddp_only"])["zz.ddp_only"]
        assert named.status == "skip" and "ddp" in named.message
        assert "cvdoctor explain zz.ddp_only" in named.message
    finally:
        unregister("zz.plain")
        unregister("zz.ddp_only")


def test_sys_exit_inside_a_check_or_a_fact_is_a_finding_not_the_end_of_the_run():
    """The user's code (a forward, a loader) may call sys.exit(); the report must survive it."""
    import sys as _sys

    from cvdoctor.registry import CheckSpec

    def exits(ctx):
        _sys.exit(0)

    spec = CheckSpec(id="x.exits", func=exits, title="Exits", recipes=(), needs=())
    (finding,) = runner.run_check(spec, object())
    assert finding.status == "error" and "sys.exit(0)" in finding.message

    @fact("test_fact_that_exits")
    def _exits(ctx):
        _sys.exit(4)

    ctx = Context(options=None)
    with pytest.raises(Exception) as info:  # a FactError for its readers, not a SystemExit
        ctx.fact("test_fact_that_exits")
    assert not isinstance(info.value, SystemExit) and "SystemExit" in str(info.value)
