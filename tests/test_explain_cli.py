"""`cvdoctor explain`: by id, --list, text, stdin, --file, JSON, no-match, and no torch import."""
from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from cvdoctor import exitcodes
from cvdoctor.catalog import load_catalog
from cvdoctor.cli import cli

TRACEBACK = """Traceback (most recent call last):
  File "/home/alice/proj/train.py", line 41, in <module>
    for images, labels in loader:
  File "/opt/conda/lib/python3.10/site-packages/torch/utils/data/dataloader.py", line 631, in __next__
RuntimeError: DataLoader worker (pid 4121) is killed by signal: Bus error. It is possible that dataloader's workers are out of shared memory. Please try to raise your shared memory limit.
"""


def invoke(*args, input=None):
    return CliRunner().invoke(cli, ["explain", *args], input=input)


def test_explain_by_id_prints_the_recipe():
    rid = next(iter(load_catalog()))
    result = invoke(rid)
    assert result.exit_code == 0
    assert "## Fix" in result.stdout and rid in result.stdout


def test_list_lists_every_recipe():
    result = invoke("--list")
    assert result.exit_code == 0
    for rid in load_catalog():
        assert rid in result.stdout
    data = json.loads(invoke("--list", "--json").stdout)
    assert {r["id"] for r in data["recipes"]} == set(load_catalog())


def test_traceback_from_stdin_file_and_argument(tmp_path):
    log = tmp_path / "train.log"
    log.write_text(TRACEBACK)
    for result in (invoke("-", input=TRACEBACK), invoke("--file", str(log)), invoke(TRACEBACK)):
        assert result.exit_code == 0, result.output
        assert "Recipe:  shm-docker-ipc" in result.stdout
        assert "Bus error" in result.stdout  # the matched line is shown


def test_json_matches_shape():
    data = json.loads(invoke("--json", TRACEBACK).stdout)
    best = data["matches"][0]
    assert best["recipe"] == "shm-docker-ipc" and best["category"] == "shm"
    assert set(best) >= {"recipe", "category", "score", "matched_text"}
    assert "Bus error" in best["matched_text"] or "shared memory" in best["matched_text"]


def test_unrelated_text_says_so_and_exits_1():
    result = invoke("KeyError: 'lr'")
    assert result.exit_code == exitcodes.CHECK_FAILED
    assert "No recipe matches" in result.stdout
    assert json.loads(invoke("--json", "KeyError: 'lr'").stdout) == {"matches": []}


def test_unknown_recipe_id_suggests_and_exits_2():
    result = invoke("shm-docker-icp")
    assert result.exit_code == exitcodes.USAGE
    assert "shm-docker-ipc" in result.stderr


def test_no_argument_is_a_usage_error():
    assert invoke().exit_code == exitcodes.USAGE


def test_explain_does_not_import_torch():
    code = ("import sys\nfrom cvdoctor.cli import main\nsys.argv=['cvdoctor','explain','--list']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'explain imported torch'\n"
            "sys.stderr.write('NO_TORCH_OK')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "NO_TORCH_OK" in proc.stderr, proc.stderr


def test_closed_pipe_is_not_a_crash():
    """`cvdoctor explain --list | head -1`: the reader is gone before we write; not a crash."""
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)  # every write now fails with EPIPE
    try:
        proc = subprocess.run([sys.executable, "-c", "from cvdoctor.cli import main; main()",
                               "explain", "--list"], stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=60)
    finally:
        os.close(write_end)
    assert proc.returncode == 0, proc.stderr
    assert "crashed" not in proc.stderr and "Traceback" not in proc.stderr
