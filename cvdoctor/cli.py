"""The `cvdoctor` command line. stdout carries only the report; progress and logs go to stderr.

Check commands are built from their declarations (`cvdoctor.commands`); `explain` and `checks`
are written here. Nothing heavy is imported at module level: `cvdoctor explain` must stay fast
and torch-free.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

import click

from cvdoctor import __version__, exitcodes
from cvdoctor.commands import Command, Option, all_commands, load
from cvdoctor.errors import TargetError, UsageError
from cvdoctor.watchdog import Stalled, time_limit


def _stderr(msg: str) -> None:
    click.echo(msg, err=True)


class Progress:
    """Progress lines on stderr, only when someone is watching (a TTY) or asked with -v.

    A transient message (a progress bar's new state) redraws one line in place on a terminal;
    elsewhere (a log, -v into a pipe) each state is a line of its own.
    """

    def __init__(self, enabled: bool, tty: bool | None = None):
        self.enabled = enabled
        self.tty = sys.stderr.isatty() if tty is None else tty
        self._open = False  # a transient line is on screen

    def __call__(self, msg: str, *, transient: bool = False) -> None:
        if not self.enabled:
            return
        if transient and self.tty:
            sys.stderr.write(f"\r\x1b[2Kcvdoctor: {msg}")
            sys.stderr.flush()
            self._open = True
            return
        if self._open:
            sys.stderr.write("\r\x1b[2K")
            self._open = False
        _stderr(f"cvdoctor: {msg}")


def _emit_report(report, *, as_json: bool, verbose: bool, strict: bool) -> int:
    from cvdoctor.redact import redact, redact_text
    from cvdoctor.render import render_text, use_color

    if as_json:
        click.echo(json.dumps(redact(report.to_dict()), indent=2, default=str))
    else:
        text = render_text(report, color=use_color(sys.stdout), verbose=verbose)
        click.echo(redact_text(text), nl=False)
    if any(f.status == "fail" for f in report.findings):
        return exitcodes.CHECK_FAILED
    if strict and any(f.status == "warn" for f in report.findings):
        return exitcodes.CHECK_FAILED
    if any(f.is_bug for f in report.findings):
        return exitcodes.CRASHED
    if any(f.status == "error" for f in report.findings):  # the user's code stopped a check
        return exitcodes.CHECK_FAILED
    return exitcodes.OK


# --- check commands, built from their declarations -------------------------------------------

COMMON_OPTIONS = (
    click.Option(["--select"], multiple=True, metavar="IDS",
                 help="Only these checks (ids or globs, comma-separated or repeated)."),
    click.Option(["--ignore"], multiple=True, metavar="IDS", help="Skip these checks."),
    click.Option(["--json", "as_json"], is_flag=True, help="Print one JSON object instead of text."),
    click.Option(["-v", "--verbose"], is_flag=True,
                 help="Show evidence, progress and the time each fact took."),
    click.Option(["--strict"], is_flag=True, help="Exit 1 on warnings too."),
    click.Option(["--facts", "facts_file"], hidden=True,
                 type=click.Path(exists=True, dir_okay=False, path_type=Path),
                 help="Recorded facts (JSON) that replace gathered ones: the test seam."),
)
_COMMON_NAMES = ("select", "ignore", "as_json", "verbose", "strict", "facts_file")


def click_option(option: Option) -> click.Option:
    kwargs: dict[str, Any] = {"help": option.help, "hidden": option.hidden,
                              "multiple": option.multiple}
    if option.metavar:
        kwargs["metavar"] = option.metavar
    if option.kind == "bool":
        kwargs.update(is_flag=True, default=bool(option.default))
    else:
        kind = {"str": str, "path": click.Path(exists=option.exists, path_type=Path)
                }.get(option.kind)
        if option.kind == "int":
            kind = click.IntRange(min=None if option.min is None else int(option.min),
                                  min_open=option.min_open)
        elif option.kind == "float":
            kind = click.FloatRange(min=option.min, min_open=option.min_open)
        elif option.kind == "choice":
            kind = click.Choice(list(option.choices))
        kwargs["type"] = kind
        if option.default is not None and not option.multiple:
            kwargs["default"] = option.default
    return click.Option([option.cli_flag, option.name], **kwargs)


def _read_facts(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        facts = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise click.UsageError(f"--facts {path}: not readable JSON ({exc})")
    if not isinstance(facts, dict):
        raise click.UsageError(f"--facts {path}: must hold a JSON object of facts by name")
    return facts


def _usage_message(exc: UsageError, target: Any) -> str:
    if isinstance(exc, TargetError) and target:
        shown = " ".join(target) if isinstance(target, (tuple, list)) else str(target)
        # Loader messages that already start with the target need not repeat it.
        return f"cvdoctor: cannot load {shown}: {str(exc).removeprefix(f'{shown}: ')}"
    return f"cvdoctor: {exc}"


def run_declared(command: Command, **kwargs: Any) -> None:
    """The body of every declared check command."""
    from cvdoctor import api
    from cvdoctor.registry import SelectionError

    select, ignore, as_json, verbose, strict, facts_file = (kwargs.pop(n) for n in _COMMON_NAMES)
    target = kwargs.pop("target", None)
    values = {o.name: kwargs.pop(o.name) for o in command.options if o.cli}
    recorded = _read_facts(facts_file)
    progress = Progress(verbose or sys.stderr.isatty())
    # The user's code may print: keep stdout for the report alone.
    with contextlib.redirect_stdout(sys.stderr):
        try:
            if target:
                progress(f"loading {' '.join(target) if command.target.many else target} ...")
            with time_limit(_check_timeout_s(), "loading the target"):
                ctx = api.make_context(command, target, values, recorded=recorded,
                                       progress=progress)
        except UsageError as exc:
            _stderr(_usage_message(exc, target))
            sys.exit(exitcodes.USAGE)
        except Stalled as exc:  # a model file that loops at import, a build_model() that hangs
            _stderr(f"cvdoctor: cannot load {' '.join(target) if command.target.many else target}"
                    f": {exc}")
            sys.exit(exitcodes.USAGE)
        try:
            report = api.run_context(command.name, ctx, select=select, ignore=ignore,
                                     progress=progress, check_timeout_s=_check_timeout_s())
        except SelectionError as exc:
            raise click.UsageError(str(exc))
    sys.exit(_emit_report(report, as_json=as_json, verbose=verbose, strict=strict))


CHECK_TIMEOUT_S = 600.0  # per check and for loading a target; CVDOCTOR_CHECK_TIMEOUT overrides


def _check_timeout_s() -> float:
    """How long one check (or loading the target) may run the user's code before it is stopped:
    a forward that never returns becomes a finding instead of a hang."""
    try:
        return max(1.0, float(os.environ.get("CVDOCTOR_CHECK_TIMEOUT", CHECK_TIMEOUT_S)))
    except ValueError:
        return CHECK_TIMEOUT_S


def build_command(command: Command) -> click.Command:
    params: list[click.Parameter] = []
    if command.target is not None:
        params.append(click.Argument(["target"], metavar=command.target.metavar,
                                     nargs=-1 if command.target.many else 1, required=True))
    params += [click_option(o) for o in command.options if o.cli]
    params += list(COMMON_OPTIONS)

    def callback(**kwargs: Any) -> None:
        run_declared(command, **kwargs)

    return click.Command(command.name, params=params, callback=callback, help=command.help,
                         short_help=command.summary)


class _OneLine(click.ClickException):
    """A click error (a missing argument, a bad option value) as one line on stderr, like every
    other usage error of cvdoctor's, instead of click's usage block followed by `Error: ...`."""

    def __init__(self, exc: click.ClickException):
        super().__init__(exc.format_message())
        self.exit_code = exc.exit_code
        ctx = getattr(exc, "ctx", None)
        self.where = ctx.command_path if ctx is not None else "cvdoctor"

    def show(self, file=None) -> None:
        message = self.message.rstrip(".")
        _stderr(f"{self.where}: {message} (see {self.where} --help)")


class _Group(click.Group):
    """Turns an unexpected exception anywhere in a command into exit code 3 with a short note,
    a click usage error into one line, builds the declared commands, and imports a command that
    has its own click code only when it is asked for."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except _OneLine:
            raise
        except click.ClickException as exc:
            raise _OneLine(exc) from None

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(all_commands()))

    def get_command(self, ctx, name):
        if name not in self.commands and name in all_commands():
            declared = all_commands()[name]
            self.add_command(load(declared.click_command) if declared.click_command
                             else build_command(declared), name)
        return super().get_command(ctx, name)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            # `cvdoctor explain ... | head`: the reader left; that is not a crash.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(exitcodes.OK)
        except _OneLine:
            raise
        except click.ClickException as exc:
            raise _OneLine(exc) from None
        except (click.exceptions.Exit, click.exceptions.Abort, SystemExit, KeyboardInterrupt):
            raise
        except UsageError as exc:  # bad input found late (a command's own validation)
            _stderr(f"cvdoctor: {exc}")
            ctx.exit(exitcodes.USAGE)
        except Exception:  # noqa: BLE001
            _stderr("cvdoctor crashed (this is a bug in cvdoctor, not in your setup):")
            _stderr(traceback.format_exc() if os.environ.get("CVDOCTOR_DEBUG")
                    else traceback.format_exc(limit=-3))
            ctx.exit(exitcodes.CRASHED)


def _group_help() -> str:
    lines = ["A doctor for PyTorch computer-vision work.", "", "\b"]
    for command in all_commands().values():
        usage = f"cvdoctor {command.name}" + (f" {command.target.metavar}" if command.target
                                              else "")
        lines.append(f"{usage.ljust(27)}{command.summary}")
    lines += [f"{'cvdoctor checks [COMMAND]'.ljust(27)}list every check and what it measures",
              f"{'cvdoctor explain ID|TEXT'.ljust(27)}a fix recipe or a check's documentation, "
              "or match an error message",
              "", "Exit codes: 0 nothing failed, 1 a check failed (--strict: or warned),",
              "2 usage error or target not loadable, 3 cvdoctor itself crashed."]
    return "\n".join(lines)


@click.group(cls=_Group, help=_group_help(),
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cvdoctor")
def cli() -> None:
    pass


# --- checks and explain ------------------------------------------------------------------------

def _check_doc(spec) -> dict[str, Any]:
    return {"id": spec.id, "command": spec.command, "title": spec.title,
            "measures": spec.summary, "doc": spec.doc, "recipes": list(spec.recipes),
            "error_recipes": spec.error_recipes, "needs": list(spec.needs)}


@cli.command()
@click.argument("command", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def checks(command, as_json):
    """List every check: id, title, what it measures, the recipes it can emit.

    \b
    cvdoctor checks             every command's checks
    cvdoctor checks model       the model checks only
    cvdoctor explain CHECK_ID   one check's full documentation
    """
    from cvdoctor.registry import all_checks

    names = [c.name for c in all_commands().values() if c.click_command is None]
    if command is not None and command not in names:
        raise click.UsageError(f"no command {command!r} runs checks (known: {', '.join(names)})")
    specs = [s for name in ([command] if command else names) for s in all_checks(name)]
    if as_json:
        click.echo(json.dumps({"checks": [_check_doc(s) for s in specs]}, indent=2))
        return
    width = max((len(s.id) for s in specs), default=0)
    for s in specs:
        click.echo(f"{s.id.ljust(width)}  {s.title}: {s.summary}")
        recipes = ", ".join(s.recipes) + (" + recipes matched from the error text"
                                          if s.error_recipes else "")
        click.echo(f"{' ' * width}  recipes: {recipes or 'none'}")


def _explain_check(check_id: str, as_json: bool) -> None:
    from cvdoctor.registry import get_check

    spec = get_check(check_id)
    if as_json:
        click.echo(json.dumps(_check_doc(spec), indent=2))
        return
    click.echo(f"{spec.title}  [{spec.id}, check of `cvdoctor {spec.command}`]\n")
    click.echo(spec.doc + "\n")
    import textwrap

    if spec.recipes:
        click.echo(textwrap.fill(
            "Recipes it can emit (cvdoctor explain <recipe>): " + ", ".join(spec.recipes)
            + ("; and the recipe matched from an error it catches" if spec.error_recipes
               else ""), width=100, break_on_hyphens=False))
    if spec.needs:
        click.echo(textwrap.fill("Facts it reads: " + ", ".join(spec.needs), width=100))
    click.echo(f"Run it alone: cvdoctor {spec.command} ... --select {spec.id}")


@cli.command()
@click.argument("recipe_or_text", required=False)
@click.option("--list", "list_", is_flag=True, help="List every recipe.")
@click.option("--file", "file_", type=click.Path(allow_dash=True),
              help="Match the error text in this file (a log, a traceback).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def explain(recipe_or_text, list_, file_, as_json):
    """Show a recipe or a check's documentation by id, or find the recipe for an error message.

    \b
    cvdoctor explain shm-docker-ipc          print that recipe
    cvdoctor explain model.gradients         what that check measures, when it warns or fails
    cvdoctor explain --list                  list all recipes
    cvdoctor explain "RuntimeError: ..."     match an error message
    cvdoctor explain --file train.log        match a log or traceback
    python train.py 2>&1 | cvdoctor explain -
    """
    import re

    from cvdoctor.catalog import load_catalog, match_text

    catalog = load_catalog()
    if list_:
        if as_json:
            click.echo(json.dumps({"recipes": [
                {"id": r.id, "title": r.title, "category": r.category} for r in catalog.values()]},
                indent=2))
        else:
            width = max((len(r) for r in catalog), default=0)
            for r in sorted(catalog.values(), key=lambda r: (r.category, r.id)):
                click.echo(f"{r.id.ljust(width)}  [{r.category}] {r.title}")
        sys.exit(exitcodes.OK)
    if file_ is not None:
        text = _read_log(file_)
    elif recipe_or_text == "-":
        text = sys.stdin.read()
    elif recipe_or_text is None:
        raise click.UsageError("give a recipe id, a check id, an error message, '-' for stdin, "
                               "--file or --list")
    elif recipe_or_text.strip() in catalog:
        recipe = catalog[recipe_or_text.strip()]
        if as_json:
            click.echo(json.dumps({"id": recipe.id, "title": recipe.title,
                                   "category": recipe.category, "patterns": recipe.patterns,
                                   "fix": getattr(recipe, "fix", ""), "body": recipe.body},
                                  indent=2))
        else:
            click.echo(f"{recipe.title}  [{recipe.id}, {recipe.category}]\n")
            click.echo(recipe.body, nl=False)
        sys.exit(exitcodes.OK)
    else:
        word = recipe_or_text.strip()
        # Only a word shaped like a check id (env.shm) is looked up among the checks: indexing
        # them reads every check file, which an error message must not wait for.
        if len(word) < 80 and re.fullmatch(r"[a-z0-9_]+(?:\.[a-z0-9_]+)+", word):
            from cvdoctor.registry import indexed_ids

            if word in indexed_ids():
                _explain_check(word, as_json)
                sys.exit(exitcodes.OK)
        text = recipe_or_text
    matches = match_text(text, catalog)
    if as_json:
        click.echo(json.dumps({"matches": [m.to_dict() for m in matches]}, indent=2))
        sys.exit(exitcodes.OK if matches else exitcodes.CHECK_FAILED)
    if not matches:
        word = text.strip()
        looks_like_id = " " not in word and word.islower() and ("-" in word or "." in word)
        if looks_like_id:
            import difflib

            from cvdoctor.registry import indexed_ids

            close = difflib.get_close_matches(word, [*catalog, *indexed_ids()], n=3)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            _stderr(f"cvdoctor: no recipe or check with id {word!r}.{hint} "
                    "See 'cvdoctor explain --list' and 'cvdoctor checks'.")
            sys.exit(exitcodes.USAGE)
        click.echo("No recipe matches this text. cvdoctor knows the errors listed by "
                   "'cvdoctor explain --list'; this one is not among them.")
        sys.exit(exitcodes.CHECK_FAILED)
    best = matches[0].score
    top = [m for m in matches if m.score >= best]
    for m in top:
        recipe = catalog[m.recipe]
        click.echo(f"Matched: {m.line}")
        click.echo(f"Recipe:  {recipe.id} [{recipe.category}] (score {m.score})")
        # The answer first: what the message itself says, and the fix for that case; the
        # recipe (every case, the background) follows.
        if m.said:
            click.echo(f"Facts:   {m.said}")
        click.echo(f"Fix:     {m.fix or recipe.fix}\n")
        click.echo(f"{recipe.title}\n")
        click.echo(recipe.body, nl=False)
        click.echo("")
    others = [m for m in matches if m.score < best]
    if others:
        click.echo("Also related: " + ", ".join(f"{m.recipe} ({m.score})" for m in others))
    sys.exit(exitcodes.OK)


def _read_log(path: str) -> str:
    """The text of a log for `explain --file`: stdin for '-', never a FIFO or a device (opening
    a FIFO blocks until a writer comes; reading /dev/zero never ends)."""
    if path == "-":
        return sys.stdin.read()
    from cvdoctor.files import special_kind

    try:
        kind = special_kind(os.stat(path).st_mode)
        if kind:
            raise click.BadParameter(f"{path} is {kind}, not a log file (pipe it to "
                                     "`cvdoctor explain -` instead)", param_hint="'--file'")
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError as exc:
        raise click.BadParameter(f"{path}: {exc.strerror or exc}", param_hint="'--file'") from None


def main() -> None:
    """Console entry point. SIGTERM unwinds like Ctrl-C (probes and workers are stopped on the
    way out instead of being left behind) and exits 128 + 15, as the signal would have."""
    import faulthandler

    # The user's code may crash the interpreter (a segfault in an extension the model file
    # imports): Python's fault handler at least prints where, instead of a silent exit 139.
    faulthandler.enable()
    terminated: list[int] = []

    def on_terminate(signum, frame):
        terminated.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_terminate)
    try:
        cli(prog_name="cvdoctor")
    except SystemExit:
        if terminated:
            sys.exit(128 + terminated[0])
        raise


if __name__ == "__main__":
    main()
