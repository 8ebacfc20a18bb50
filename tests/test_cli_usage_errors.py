"""Bad input on the command line: one line on stderr naming the command, exit code 2, never a
traceback, never a hang (a FIFO or a device given where a file is read)."""
from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from cvdoctor.cli import cli


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), prog_name="cvdoctor")


@pytest.mark.parametrize("args, command, expected", [
    (["env", "--select", "env.nope"], "cvdoctor env", "no check matches 'env.nope'"),
    (["env", "--bogus"], "cvdoctor env", "No such option '--bogus'"),
    (["env", "--checkpoints", "/nonexistent/weights"], "cvdoctor env", "does not exist"),
    (["data"], "cvdoctor data", "Missing argument 'PATH'"),
    (["ckpt"], "cvdoctor ckpt", "Missing argument 'FILE'"),
    (["model", "m.py", "--ddp", "abc"], "cvdoctor model", "'abc' is not a valid integer"),
    (["model", "m.py", "--amp", "float8"], "cvdoctor model", "'float8' is not one of"),
    (["nosuch"], "cvdoctor", "No such command 'nosuch'"),
    (["checks", "nosuch"], "cvdoctor checks", "no command 'nosuch' runs checks"),
    (["explain"], "cvdoctor explain", "give a recipe id"),
    (["explain", "--file", "/nonexistent.log"], "cvdoctor explain", "No such file"),
    (["explain", "--file", "/dev/zero"], "cvdoctor explain", "is a character device"),
    (["explain", "--file", "/"], "cvdoctor explain", "is a directory"),
])
def test_a_click_usage_error_is_one_line_naming_the_command(args, command, expected):
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{command}: ") and expected in lines[0]
    assert lines[0].endswith(f"(see {command} --help)")
    assert "Traceback" not in result.output and result.stdout == ""


def test_explain_file_refuses_a_fifo_instead_of_blocking(tmp_path):
    fifo = tmp_path / "train.log"
    os.mkfifo(fifo)
    result = invoke("explain", "--file", str(fifo))
    assert result.exit_code == 2 and "is a FIFO (named pipe)" in result.stderr


def test_explain_file_dash_reads_stdin():
    result = CliRunner().invoke(cli, ["explain", "--file", "-"],
                                input="RuntimeError: DataLoader worker (pid 7) is killed by "
                                      "signal: Bus error.\n")
    assert result.exit_code == 0 and "shm-docker-ipc" in result.stdout
