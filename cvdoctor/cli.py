"""The `cvdoctor` command line. stdout carries only the report; progress and logs go to stderr."""
from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

import click

from cvdoctor import __version__, exitcodes


def _stderr(msg: str) -> None:
    click.echo(msg, err=True)


class Progress:
    """Progress lines on stderr, only when someone is watching (a TTY) or asked with -v."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def __call__(self, msg: str) -> None:
        if self.enabled:
            _stderr(f"cvdoctor: {msg}")


def _emit_report(report, *, as_json: bool, verbose: bool, strict: bool) -> int:
    from cvdoctor.redact import redact
    from cvdoctor.render import render_text, use_color

    if as_json:
        click.echo(json.dumps(redact(report.to_dict()), indent=2, default=str))
    else:
        from cvdoctor.redact import redact_text

        text = render_text(report, color=use_color(sys.stdout), verbose=verbose)
        click.echo(redact_text(text), nl=False)
    if any(f.status == "fail" for f in report.findings):
        return exitcodes.CHECK_FAILED
    if strict and any(f.status == "warn" for f in report.findings):
        return exitcodes.CHECK_FAILED
    if any(f.status == "error" for f in report.findings):
        return exitcodes.CRASHED
    return exitcodes.OK


_common = [
    click.option("--select", multiple=True, metavar="IDS",
                 help="Only these checks (ids or globs, comma-separated or repeated)."),
    click.option("--ignore", multiple=True, metavar="IDS", help="Skip these checks."),
    click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text."),
    click.option("-v", "--verbose", is_flag=True, help="Show evidence and progress."),
    click.option("--strict", is_flag=True, help="Exit 1 on warnings too."),
]


def common_options(func):
    for opt in reversed(_common):
        func = opt(func)
    return func


class _Group(click.Group):
    """Turns an unexpected exception anywhere in a command into exit code 3 with a short note,
    and imports commands that live in their own module only when they are asked for (so
    `cvdoctor explain` never pays for them, and no module imports this one back)."""

    lazy_commands = {"model": ("cvdoctor.cli_model", "model")}

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_commands))

    def get_command(self, ctx, name):
        if name in self.lazy_commands and name not in self.commands:
            import importlib

            module, attr = self.lazy_commands[name]
            self.add_command(getattr(importlib.import_module(module), attr), name)
        return super().get_command(ctx, name)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            # `cvdoctor explain ... | head`: the reader left; that is not a crash.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(exitcodes.OK)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort, SystemExit,
                KeyboardInterrupt):
            raise
        except Exception:  # noqa: BLE001
            _stderr("cvdoctor crashed (this is a bug in cvdoctor, not in your setup):")
            _stderr(traceback.format_exc() if os.environ.get("CVDOCTOR_DEBUG")
                    else traceback.format_exc(limit=-3))
            ctx.exit(exitcodes.CRASHED)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cvdoctor")
def cli() -> None:
    """A doctor for PyTorch computer-vision work.

    \b
    cvdoctor env               check this machine: torch build, GPU, shared memory, packages...
    cvdoctor model FILE        check a model before training: loss at init, gradients, overfit...
    cvdoctor explain ID|TEXT   show a fix recipe, or match an error message to one

    Exit codes: 0 nothing failed, 1 a check failed (--strict: or warned),
    2 usage error or target not loadable, 3 cvdoctor itself crashed.
    """


@cli.command()
@common_options
@click.option("--deep", is_flag=True, help="Run slow probes too (DataLoader workers on shared "
              "memory, full checkpoint hashes, importing every optional package).")
@click.option("--require-gpu", is_flag=True, help="No usable GPU is a failure, not a warning.")
@click.option("--checkpoints", "checkpoint_dirs", multiple=True, type=click.Path(path_type=Path),
              metavar="DIR", help="Also look for checkpoints here (repeatable).")
@click.option("--facts", "facts_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              hidden=True, help="Recorded facts (JSON) that replace gathered ones: the test seam.")
def env(select, ignore, as_json, verbose, strict, deep, require_gpu, checkpoint_dirs, facts_file):
    """Check the environment: platform, torch build, CUDA and GPU arch, shared memory, packages,
    checkpoints, resources."""
    from cvdoctor.api import check_env
    from cvdoctor.registry import SelectionError

    recorded = None
    if facts_file is not None:
        try:
            recorded = json.loads(facts_file.read_text())
        except (OSError, ValueError) as exc:
            raise click.UsageError(f"--facts {facts_file}: not readable JSON ({exc})")
    progress = Progress(verbose or sys.stderr.isatty())
    try:
        report = check_env(select=select, ignore=ignore, deep=deep, require_gpu=require_gpu,
                           checkpoint_dirs=list(checkpoint_dirs), recorded=recorded,
                           progress=progress)
    except SelectionError as exc:
        raise click.UsageError(str(exc))
    sys.exit(_emit_report(report, as_json=as_json, verbose=verbose, strict=strict))


@cli.command()
@click.argument("recipe_or_text", required=False)
@click.option("--list", "list_", is_flag=True, help="List every recipe.")
@click.option("--file", "file_", type=click.File("r", errors="replace"),
              help="Match the error text in this file (a log, a traceback).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def explain(recipe_or_text, list_, file_, as_json):
    """Show a recipe by id, or find the recipe for an error message.

    \b
    cvdoctor explain shm-docker-ipc          print that recipe
    cvdoctor explain --list                  list all recipes
    cvdoctor explain "RuntimeError: ..."     match an error message
    cvdoctor explain --file train.log        match a log or traceback
    python train.py 2>&1 | cvdoctor explain -
    """
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
        text = file_.read()
    elif recipe_or_text == "-":
        text = sys.stdin.read()
    elif recipe_or_text is None:
        raise click.UsageError("give a recipe id, an error message, '-' for stdin, --file or --list")
    elif recipe_or_text.strip() in catalog:
        recipe = catalog[recipe_or_text.strip()]
        if as_json:
            click.echo(json.dumps({"id": recipe.id, "title": recipe.title,
                                   "category": recipe.category, "patterns": recipe.patterns,
                                   "body": recipe.body}, indent=2))
        else:
            click.echo(f"{recipe.title}  [{recipe.id}, {recipe.category}]\n")
            click.echo(recipe.body, nl=False)
        sys.exit(exitcodes.OK)
    else:
        text = recipe_or_text
    matches = match_text(text, catalog)
    if as_json:
        click.echo(json.dumps({"matches": [m.to_dict() for m in matches]}, indent=2))
        sys.exit(exitcodes.OK if matches else exitcodes.CHECK_FAILED)
    if not matches:
        looks_like_id = " " not in text.strip() and text.strip().islower() and "-" in text
        if looks_like_id:
            import difflib

            close = difflib.get_close_matches(text.strip(), list(catalog), n=3)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            _stderr(f"cvdoctor: no recipe with id {text.strip()!r}.{hint} "
                    "See 'cvdoctor explain --list'.")
            sys.exit(exitcodes.USAGE)
        click.echo("No recipe matches this text. cvdoctor knows the errors listed by "
                   "'cvdoctor explain --list'; this one is not among them.")
        sys.exit(exitcodes.CHECK_FAILED)
    best = matches[0].score
    top = [m for m in matches if m.score >= best]
    for m in top:
        recipe = catalog[m.recipe]
        click.echo(f"Matched: {m.line}")
        click.echo(f"Recipe:  {recipe.id} [{recipe.category}] (score {m.score})\n")
        click.echo(f"{recipe.title}\n")
        click.echo(recipe.body, nl=False)
        click.echo("")
    others = [m for m in matches if m.score < best]
    if others:
        click.echo("Also related: " + ", ".join(f"{m.recipe} ({m.score})" for m in others))
    sys.exit(exitcodes.OK)


def main() -> None:
    """Console entry point."""
    cli(prog_name="cvdoctor")


if __name__ == "__main__":
    main()
