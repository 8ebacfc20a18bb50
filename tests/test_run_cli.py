"""`cvdoctor run -- COMMAND`: real scripts run with the project's Python, directly and under
cvdoctor run; exit statuses and output bytes are compared, and what cvdoctor adds is checked.

Both sides run as real processes (cvdoctor copies the command's output at the file-descriptor
level, which CliRunner does not capture). Directly, the command gets the environment cvdoctor
gives it (PYTHONFAULTHANDLER=1), so the bytes can be compared one for one.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

PY = sys.executable
CVDOCTOR = [PY, "-m", "cvdoctor.cli", "run"]
RUN_LOGS = Path(__file__).resolve().parent / "run_logs"
TORCH_TIMEOUT = 180


def script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def env_for_child(**extra) -> dict:
    env = dict(os.environ)
    env.pop("PYTHONFAULTHANDLER", None)
    env.update(extra)
    return env


def direct(argv, tmp_path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, cwd=tmp_path, timeout=TORCH_TIMEOUT,
                          env=env_for_child(PYTHONFAULTHANDLER="1"), **kw)


def via_cvdoctor(argv, tmp_path, *opts, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*CVDOCTOR, *opts, "--", *argv], capture_output=True, cwd=tmp_path,
                          timeout=TORCH_TIMEOUT, env=env_for_child(), **kw)


def shell_status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def added_by_cvdoctor(plain: subprocess.CompletedProcess, run: subprocess.CompletedProcess) -> str:
    """The command's own output is passed through unchanged; return what cvdoctor appended."""
    assert run.stdout == plain.stdout
    assert run.stderr.startswith(plain.stderr), (plain.stderr[-500:], run.stderr[-800:])
    assert shell_status(plain.returncode) == run.returncode
    return run.stderr[len(plain.stderr):].decode()


# --- real crashes that have a recipe ---------------------------------------------------------

TORCH_CRASHES = {
    "target_out_of_bounds": ("""
        import torch, torch.nn as nn
        torch.manual_seed(0)
        model = nn.Linear(8, 5)
        labels = torch.tensor([0, 3, 5, 1])          # 5 classes: label 5 is one too many
        print("epoch 1/10", flush=True)
        loss = nn.functional.cross_entropy(model(torch.randn(4, 8)), labels)
        """, "target-out-of-bounds", "a label is 5, so the model needs at least 6 outputs"),
    "dtype_mismatch": ("""
        import torch, torch.nn as nn
        model = nn.Conv2d(3, 8, 3)
        images = torch.rand(2, 3, 32, 32).half()     # cast by hand, model left in float32
        model(images)
        """, "dtype-mismatch", "the input is float16, the bias float32"),
    "backward_twice": ("""
        import torch, torch.nn as nn
        model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1))
        hidden = model(torch.randn(2, 4))
        for step in range(2):
            loss = (hidden ** 2).mean()              # the same graph, backpropagated twice
            loss.backward()
            print(f"step {step} done", flush=True)
        """, "backward-twice", None),
}


@pytest.mark.slow  # each side imports torch: about 10 s on a loaded 2-core machine
@pytest.mark.parametrize("name", sorted(TORCH_CRASHES))
def test_a_torch_crash_is_passed_through_and_explained(tmp_path, name):
    body, recipe, fact = TORCH_CRASHES[name]
    path = script(tmp_path, f"{name}.py", body)
    plain, run = direct([PY, str(path)], tmp_path), via_cvdoctor([PY, str(path)], tmp_path)
    assert plain.returncode == 1
    block = added_by_cvdoctor(plain, run)
    assert block.startswith("cvdoctor: the command failed (exit status 1); a known problem:")
    assert f"cvdoctor explain {recipe}\n" in block
    assert "  error:   " in block and "  fix:     " in block
    if fact:
        assert f"  facts:   {fact}" in block


# --- deaths by signal --------------------------------------------------------------------------

def test_a_killed_child_exits_137_and_says_where_to_look(tmp_path):
    path = script(tmp_path, "killed.py", """
        import os, signal, sys
        print("epoch 3/100 loss=0.41", flush=True)
        sys.stderr.write("it 10/50\\r"); sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
        """)
    plain, run = direct([PY, str(path)], tmp_path), via_cvdoctor([PY, str(path)], tmp_path)
    assert plain.returncode == -signal.SIGKILL and run.returncode == 137
    block = added_by_cvdoctor(plain, run)
    assert "killed by SIGKILL (signal 9, exit status 137)" in block
    assert "dmesg" in block and "cvdoctor explain process-killed-oom" in block


def test_a_segfault_exits_139_with_the_python_frame(tmp_path):
    path = script(tmp_path, "segv.py", """
        import os, signal
        def decode_batch():
            os.kill(os.getpid(), signal.SIGSEGV)
        print("loading", flush=True)
        decode_batch()
        """)
    plain, run = direct([PY, str(path)], tmp_path), via_cvdoctor([PY, str(path)], tmp_path)
    assert plain.returncode == -signal.SIGSEGV and run.returncode == 139
    assert run.stdout == plain.stdout
    # The fault handler's dump names the thread by its address, which differs between runs.
    thread = re.compile(rb"0x[0-9a-f]+")
    assert run.stderr.startswith(thread.sub(b"0x", plain.stderr)[:0])  # (shape only)
    assert thread.sub(b"0x", run.stderr).startswith(thread.sub(b"0x", plain.stderr))
    block = run.stderr[len(plain.stderr):].decode()
    assert "killed by SIGSEGV (signal 11, exit status 139)" in block
    assert f'where:   File "{path}", line 4, in decode_batch' in block
    assert "cvdoctor explain segmentation-fault" in block


def test_the_users_own_faulthandler_setting_is_kept(tmp_path):
    path = script(tmp_path, "env.py", "import os; print(os.environ.get('PYTHONFAULTHANDLER'))\n")
    run = subprocess.run([*CVDOCTOR, "--", PY, str(path)], capture_output=True, timeout=60,
                         env=env_for_child(PYTHONFAULTHANDLER=""))
    assert run.stdout == b"\n"
    run = subprocess.run([*CVDOCTOR, "--", PY, str(path)], capture_output=True, timeout=60,
                         env=env_for_child())
    assert run.stdout == b"1\n"


# --- nothing to explain ------------------------------------------------------------------------

def test_a_clean_exit_prints_nothing_and_keeps_every_byte(tmp_path):
    path = script(tmp_path, "clean.py", """
        import sys
        sys.stdout.buffer.write(b"bytes \\xff\\xfe not utf-8\\n")
        for i in range(0, 101, 25):
            sys.stderr.write(f"\\rtraining {i:3d}%|{'#' * (i // 10):10s}|")
            sys.stderr.flush()
        sys.stderr.write("\\n")
        print("done: accuracy=0.93")
        """)
    plain, run = direct([PY, str(path)], tmp_path), via_cvdoctor([PY, str(path)], tmp_path)
    assert (run.returncode, run.stdout, run.stderr) == (0, plain.stdout, plain.stderr)
    assert b"\r" in run.stderr


def test_an_unrelated_crash_gets_no_recipe(tmp_path):
    path = script(tmp_path, "config.py", """
        config = {"lr": 0.1, "epochs": 10}
        print("reading config")
        batch = config["batch_size"]
        """)
    plain, run = direct([PY, str(path)], tmp_path), via_cvdoctor([PY, str(path)], tmp_path)
    block = added_by_cvdoctor(plain, run)
    assert block == ("cvdoctor: the command failed (exit status 1); no cvdoctor recipe matches "
                     "its error: KeyError: 'batch_size'\n")


def test_the_exit_status_is_the_commands(tmp_path):
    for status in (0, 3, 42):
        run = via_cvdoctor([PY, "-c", f"import sys; sys.exit({status})"], tmp_path)
        assert run.returncode == status


def test_an_earlier_warning_does_not_explain_an_unrelated_crash(tmp_path):
    """A harmless torchvision warning early in the log matches a recipe, but the run ended with
    a KeyError: no recipe is claimed for it."""
    path = script(tmp_path, "warned.py", """
        import sys
        print("/venv/lib/python3.11/site-packages/torchvision/io/image.py:14: UserWarning: "
              "Failed to load image Python extension: 'image.so: undefined symbol: _ZN3c10'",
              file=sys.stderr)
        raise KeyError("model.backbone")
        """)
    block = added_by_cvdoctor(direct([PY, str(path)], tmp_path),
                              via_cvdoctor([PY, str(path)], tmp_path))
    assert "no cvdoctor recipe matches" in block and "recipe:" not in block


def test_symptoms_are_reported_at_the_end_of_a_successful_run(tmp_path):
    path = script(tmp_path, "nan.py", """
        print("AMP: checks failed ❌. Anomalies were detected with AMP on your system that may "
              "lead to NaN losses or zero-mAP results, so AMP will be disabled during training.")
        for epoch in range(6):
            print(f"epoch {epoch}: loss={'nan' if epoch >= 3 else 0.5 - epoch / 10}")
        """)
    plain, run = direct([PY, str(path)], tmp_path), via_cvdoctor([PY, str(path)], tmp_path)
    assert run.returncode == 0
    warnings = added_by_cvdoctor(plain, run).splitlines()
    assert len(warnings) == 2
    assert warnings[0].startswith("cvdoctor: warning: ultralytics' AMP check failed")
    assert "the loss became NaN (3 lines, first at output line 5: 'epoch 3: loss=nan')" \
        in warnings[1] and warnings[1].endswith("see cvdoctor explain nan-loss")


# --- torchrun ------------------------------------------------------------------------------------

@pytest.mark.parametrize("log,recipe,says", [
    ("torchrun_target_oob.log", "target-out-of-bounds",
     "ranks:   rank 1 (local_rank 1) failed first with exit code 1"),
    ("torchrun_sigkill.log", "torchrun-child-failed",
     "facts:   rank 1 (local_rank 1) failed first: it died of SIGKILL (exit code -9)"),
])
def test_a_torchrun_log_is_explained_by_its_root_cause_rank(tmp_path, log, recipe, says):
    """Real torchrun output (recorded on this machine) replayed by a stand-in launcher that exits
    1 as torchrun does."""
    replay = [PY, "-c", "import sys; sys.stderr.write(open(sys.argv[1]).read()); sys.exit(1)",
              str(RUN_LOGS / log)]
    block = added_by_cvdoctor(direct(replay, tmp_path), via_cvdoctor(replay, tmp_path))
    assert f"cvdoctor explain {recipe}\n" in block
    assert says in block


@pytest.mark.slow
def test_a_real_torchrun_failure_names_the_failed_rank(tmp_path):
    torchrun = Path(PY).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed next to this Python")
    path = script(tmp_path, "ddp.py", """
        import time, torch, torch.nn.functional as F, torch.distributed as dist
        dist.init_process_group("gloo")
        if dist.get_rank() == 1:
            F.cross_entropy(torch.randn(4, 5), torch.tensor([0, 1, 9, 2]))
        time.sleep(2)
        dist.barrier()
        """)
    run = subprocess.run([*CVDOCTOR, "--", str(torchrun), "--nproc_per_node", "2",
                          "--master_port", "29531", str(path)], capture_output=True, cwd=tmp_path,
                         timeout=TORCH_TIMEOUT, env=env_for_child(OMP_NUM_THREADS="1"))
    err = run.stderr.decode()
    assert run.returncode == 1
    assert "[rank1]: IndexError: Target 9 is out of bounds." in err
    assert "cvdoctor explain target-out-of-bounds" in err
    assert "rank 1 (local_rank 1) failed first" in err


# --- streams, stdin, signals ---------------------------------------------------------------------

def test_stdin_is_passed_through(tmp_path):
    path = script(tmp_path, "echo.py", "import sys; data = sys.stdin.read(); print(data.upper())\n")
    run = via_cvdoctor([PY, str(path)], tmp_path, input=b"yes\nno\n")
    assert (run.returncode, run.stdout) == (0, b"YES\nNO\n\n")


def _wait_for(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signals_go_to_the_commands_process_group(tmp_path, sig):
    """The command and its own child both get the signal sent to cvdoctor; cvdoctor waits for
    the command and exits with its status."""
    path = script(tmp_path, "group.py", """
        import signal, subprocess, sys, time, pathlib
        child = subprocess.Popen([sys.executable, "-c",
            "import signal, time, pathlib\\n"
            "signal.signal(signal.SIGINT, signal.SIG_DFL)\\n"
            "pathlib.Path('grandchild.ready').touch()\\n"
            "time.sleep(60)"])
        def stop(signum, frame):
            print(f"command got {signal.Signals(signum).name}", flush=True)
            child.wait(timeout=30)
            print(f"grandchild ended by {signal.Signals(-child.returncode).name}", flush=True)
            sys.exit(5)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        while not pathlib.Path("grandchild.ready").exists():
            time.sleep(0.05)
        pathlib.Path("ready").touch()
        time.sleep(60)
        """)
    proc = subprocess.Popen([*CVDOCTOR, "--", PY, str(path)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env_for_child())
    _wait_for(tmp_path / "ready")
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    name = signal.Signals(sig).name
    assert out.decode().splitlines() == [f"command got {name}", f"grandchild ended by {name}"]
    assert proc.returncode == 5, err


def test_a_signal_that_ends_the_command_gives_128_plus_n(tmp_path):
    path = script(tmp_path, "sleepy.py", """
        import pathlib, time
        pathlib.Path("ready").touch()
        time.sleep(60)
        """)
    proc = subprocess.Popen([*CVDOCTOR, "--", PY, str(path)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env_for_child())
    _wait_for(tmp_path / "ready")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "killed by SIGTERM" in err.decode()


def _under_a_terminal(argv, cwd) -> bytes:
    """Run `argv` with a pseudo-terminal as stdin, stdout and stderr (as an interactive shell
    would) and return everything it wrote to the terminal."""
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd,
                            env=env_for_child(PYTHONFAULTHANDLER="1"), start_new_session=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(master)
    return b"".join(chunks)


@pytest.mark.skipif(os.name != "posix", reason="pseudo-terminals are POSIX")
def test_under_a_terminal_the_command_gets_a_terminal_too(tmp_path):
    path = script(tmp_path, "terminal_check.py", """
        import sys
        print("tty:", sys.stdin.isatty(), sys.stdout.isatty(), sys.stderr.isatty())
        for i in range(3):
            sys.stderr.write(f"\\r{i * 50}%"); sys.stderr.flush()
        print()
        """)
    plain = _under_a_terminal([PY, str(path)], tmp_path)
    run = _under_a_terminal([*CVDOCTOR, "--", PY, str(path)], tmp_path)
    assert plain.startswith(b"tty: True True True\r\n")
    assert run == plain


@pytest.mark.skipif(os.name != "posix", reason="pseudo-terminals are POSIX")
def test_under_a_terminal_a_failure_is_explained_after_the_output(tmp_path):
    path = script(tmp_path, "fail.py", "print('step 1')\nraise KeyError('lr')\n")
    run = _under_a_terminal([*CVDOCTOR, "--", PY, str(path)], tmp_path).decode()
    assert run.startswith("step 1\r\nTraceback (most recent call last):\r\n")
    assert run.rstrip().endswith("no cvdoctor recipe matches its error: KeyError: 'lr'")


def test_a_reader_that_leaves_early_ends_the_command_like_a_pipe_would(tmp_path):
    path = script(tmp_path, "chatty.py", """
        import sys
        for i in range(200000):
            print(f"line {i}")
        """)
    shell = f"{' '.join(CVDOCTOR)} -- {PY} {path} | head -n 2"
    run = subprocess.run(["bash", "-c", shell + "; echo status=${PIPESTATUS[0]}"],
                         capture_output=True, cwd=tmp_path, timeout=60, env=env_for_child())
    lines = run.stdout.decode().splitlines()
    assert lines[:2] == ["line 0", "line 1"]
    assert lines[-1] in ("status=1", "status=120", "status=141"), run.stderr.decode()[-500:]
    assert "cvdoctor crashed" not in run.stderr.decode()


@pytest.mark.slow
def test_50_mb_of_output_arrive_byte_for_byte(tmp_path):
    path = script(tmp_path, "big.py", """
        import sys, zlib
        out = sys.stdout.buffer
        block = bytes(range(256)) * 256 + b"\\r\\n"                # 64 KiB, every byte value
        for i in range(800):
            out.write(b"%d " % i + block)
        sys.stderr.write("done\\n")
        """)
    direct_out, run_out = tmp_path / "direct.bin", tmp_path / "run.bin"
    with open(direct_out, "wb") as f:
        plain = subprocess.run([PY, str(path)], stdout=f, stderr=subprocess.PIPE, timeout=120,
                               env=env_for_child(PYTHONFAULTHANDLER="1"))
    with open(run_out, "wb") as f:
        run = subprocess.run([*CVDOCTOR, "--", PY, str(path)], stdout=f, stderr=subprocess.PIPE,
                             timeout=120, env=env_for_child())
    assert (plain.returncode, run.returncode) == (0, 0)
    assert run_out.stat().st_size == direct_out.stat().st_size > 50_000_000
    assert run_out.read_bytes() == direct_out.read_bytes()
    assert run.stderr == plain.stderr == b"done\n"


# --- bad input and JSON --------------------------------------------------------------------------

def test_a_missing_command_exits_127_in_one_line(tmp_path):
    run = via_cvdoctor(["surely-not-a-command-xyz", "--flag"], tmp_path)
    assert run.returncode == 127
    assert run.stderr.decode() == ("cvdoctor: cannot run 'surely-not-a-command-xyz': command not "
                                   "found\n")


def test_a_directory_is_not_executable_126(tmp_path):
    run = via_cvdoctor([str(tmp_path)], tmp_path)
    assert run.returncode == 126 and len(run.stderr.decode().splitlines()) == 1


@pytest.mark.parametrize("args", [[], ["--"], ["--json-out"]])
def test_usage_errors_exit_2(tmp_path, args):
    run = subprocess.run([*CVDOCTOR, *args], capture_output=True, timeout=60)
    assert run.returncode == 2
    assert b"Traceback" not in run.stderr


def test_an_unwritable_json_out_is_a_usage_error_before_anything_runs(tmp_path):
    marker = tmp_path / "ran"
    run = via_cvdoctor([PY, "-c", f"open({str(marker)!r}, 'w')"], tmp_path,
                       "--json-out", str(tmp_path / "missing" / "out.json"))
    assert run.returncode == 2 and not marker.exists()
    assert "--json-out" in run.stderr.decode() and b"Traceback" not in run.stderr


def test_json_out_records_the_run(tmp_path):
    path = script(tmp_path, "oob.py", """
        def cross_entropy(logits, labels):  # torch's own wording, without importing torch
            raise IndexError("Target 3 is out of bounds.")
        cross_entropy([[0.0, 0.0, 0.0]] * 2, [0, 3])
        """)
    out = tmp_path / "run.json"
    run = via_cvdoctor([PY, str(path)], tmp_path, "--json-out", str(out), "--no-explain")
    assert run.returncode == 1 and b"cvdoctor" not in run.stderr
    data = json.loads(out.read_text())
    assert list(data)[:8] == ["schema_version", "command", "argv", "exit_code", "signal",
                              "duration_s", "matches", "symptoms"]
    assert data["schema_version"] == 1 and data["command"] == "run"
    assert data["argv"] == [PY, str(path)] and data["exit_code"] == 1 and data["signal"] is None
    assert isinstance(data["duration_s"], float) and data["duration_s"] > 0
    (match,) = data["matches"]
    assert {k: match[k] for k in ("recipe", "category")} == {"recipe": "target-out-of-bounds",
                                                              "category": "labels"}
    assert match["matched_text"] == "Target 3 is out of bounds"
    assert match["line"] == "IndexError: Target 3 is out of bounds."
    assert match["facts"] == {"target": 3, "min_classes": 4}
    assert data["symptoms"] == []


def test_json_out_for_a_signal_and_a_missing_command(tmp_path):
    out = tmp_path / "run.json"
    via_cvdoctor([PY, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"],
                 tmp_path, "--json-out", str(out))
    data = json.loads(out.read_text())
    assert (data["exit_code"], data["signal"]) == (137, "SIGKILL")
    assert [m["recipe"] for m in data["matches"]] == ["process-killed-oom"]
    via_cvdoctor(["surely-not-a-command-xyz"], tmp_path, "--json-out", str(out))
    data = json.loads(out.read_text())
    assert (data["exit_code"], data["matches"]) == (127, [])


def test_run_is_listed_by_cvdoctor_help():
    run = subprocess.run([PY, "-m", "cvdoctor.cli", "--help"], capture_output=True, timeout=60)
    assert "cvdoctor run -- COMMAND" in run.stdout.decode()
    run = subprocess.run([*CVDOCTOR, "--help"], capture_output=True, timeout=60)
    text = " ".join(run.stdout.decode().split())
    assert "127 when COMMAND is not found" in text and "--json-out" in text


def test_cvdoctor_run_never_imports_torch(tmp_path):
    """cvdoctor's own process stays light (start-up, memory): only the command imports torch."""
    code = ("import sys\nfrom cvdoctor.cli import main\n"
            "sys.argv = ['cvdoctor', 'run', '--', sys.executable, '-c', 'raise KeyError(1)']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'cvdoctor run imported torch'\n"
            "sys.stderr.write('NO_TORCH_OK')")
    run = subprocess.run([PY, "-c", code], capture_output=True, timeout=60, cwd=tmp_path,
                         env=env_for_child())
    assert b"NO_TORCH_OK" in run.stderr, run.stderr.decode()[-800:]


def test_a_pty_only_when_the_whole_session_is_a_terminal(monkeypatch):
    """With stderr redirected (2> err.log) a pseudo-terminal would merge the command's stderr
    into its stdout; with stdin piped it would echo the input into the output: pipes then."""
    from cvdoctor.run import child

    ttys = {0: True, 1: True, 2: True}
    monkeypatch.setattr(child.os, "isatty", lambda fd: ttys[fd])
    assert child.use_pty() is (child.os.name == "posix")
    ttys[2] = False
    assert not child.use_pty()
    ttys[2], ttys[0] = True, False
    assert not child.use_pty()
    ttys[0], ttys[1] = True, False
    assert not child.use_pty()
