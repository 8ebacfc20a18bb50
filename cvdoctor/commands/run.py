"""`cvdoctor run -- COMMAND`: not a run of checks; its click command lives in cvdoctor.run.cli."""
from cvdoctor.commands import Command, Target

COMMAND = Command(
    name="run",
    summary="run a command (python train.py, torchrun ...) and explain it if it fails",
    help="Run a command, pass its output through unchanged, and explain a failure.",
    context="cvdoctor.run.cli:command",  # unused: a command with its own click code
    target=Target("-- COMMAND", "the command to run, after `--`"),
    click_command="cvdoctor.run.cli:command",
)
