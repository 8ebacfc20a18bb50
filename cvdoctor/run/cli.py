"""The `cvdoctor run` click command (declared in cvdoctor/commands/run.py)."""
from __future__ import annotations

import json
import os
import sys

import click

HELP = """Run COMMAND and explain it if it fails.

\b
cvdoctor run -- python train.py --epochs 10
cvdoctor run --json-out run.json -- torchrun --nproc_per_node 4 train.py
cvdoctor run --no-explain -- yolo train data=data.yaml

COMMAND runs once, as given (no shell), and its output passes through unchanged: stdout to
stdout and stderr to stderr, byte for byte, `\\r` progress lines included. When cvdoctor runs in
a terminal (stdin, stdout and stderr), the command gets a pseudo-terminal (progress bars and
colours as usual); otherwise pipes, which keep stdout and stderr apart. Stdin is passed through. SIGINT, SIGTERM and SIGHUP go to the command's process group.
Python's fault handler is switched on for the command (PYTHONFAULTHANDLER=1) unless you set
that variable yourself.

When the command fails, a short cvdoctor block follows its output on stderr: the line that
matched, the recipe, the fix with the facts read from the message (class counts, dtypes, shapes),
and `cvdoctor explain ID`. Deaths by signal are explained (SIGKILL: the OOM killer, from the
cgroup's memory.events; SIGSEGV: the Python frame that crashed; SIGBUS: shared memory). Under
torchrun the root-cause rank's error is the one matched. An error no recipe knows gets one line;
a clean exit prints nothing. NaN losses, ultralytics' failed AMP check, DataLoader worker deaths
and torchrun restarts seen on the way are listed at the end as warnings.

Exit status: the command's own; 128+N when signal N ended it; 127 when COMMAND is not found and
126 when it cannot be executed (as a shell reports them); 2 for a usage error of cvdoctor run.
"""


def _open_json_out(path: str | None):
    if path is None:
        return None
    try:
        return open(path, "w", encoding="utf-8")  # noqa: SIM115 - written when the run ends
    except OSError as exc:
        raise click.UsageError(f"--json-out {path}: cannot write ({exc.strerror or exc})")


@click.command("run", help=HELP, short_help="run a command and explain it if it fails",
               context_settings={"ignore_unknown_options": True,
                                 "allow_interspersed_args": False})
@click.option("--json-out", "json_out", metavar="FILE",
              help="Also write the outcome as JSON (schema_version 1) to FILE.")
@click.option("--no-explain", is_flag=True,
              help="Only pass the output through and keep the exit status (and --json-out): "
                   "print nothing of cvdoctor's own.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED,
                metavar="-- COMMAND [ARGS]...")
def command(json_out: str | None, no_explain: bool, command: tuple[str, ...]) -> None:
    from cvdoctor.run import child
    from cvdoctor.run.diagnose import diagnose, faulthandler_env, oom_kills
    from cvdoctor.run.tail import OutputTail

    argv = list(command)
    if argv and argv[0] == "--":  # `cvdoctor run --json-out x -- cmd` keeps a second `--`
        argv = argv[1:]
    if not argv:
        raise click.UsageError("give the command to run after `--`")
    out = _open_json_out(json_out)
    env = dict(os.environ)
    ours = faulthandler_env(env)
    tail = OutputTail()
    oom_before = oom_kills()
    try:
        outcome = child.run(argv, env, tail.feed)
    except child.LaunchError as exc:
        click.echo(f"cvdoctor: {exc}", err=True)
        if out is not None:
            json.dump({"schema_version": 1, "command": "run", "argv": argv,
                       "exit_code": exc.status, "signal": None, "duration_s": 0.0,
                       "matches": [], "symptoms": [], "error": str(exc)}, out, indent=2)
            out.close()
        sys.exit(exc.status)
    report = diagnose(argv, outcome.returncode, outcome.duration_s, outcome.pty, tail,
                      faulthandler_by_us=ours, oom_before=oom_before)
    if not no_explain:
        for line in report.block + report.warnings:
            click.echo(line, err=True)
    if out is not None:
        json.dump(report.to_dict(), out, indent=2, default=str)
        out.write("\n")
        out.close()
    sys.exit(report.exit_code)
