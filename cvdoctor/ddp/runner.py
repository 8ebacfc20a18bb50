"""Start N rank processes, watch them with timeouts, leave nothing behind.

Each rank is ``python -m cvdoctor.ddp.worker JOB RANK``, started the way `torchrun` starts one
(the launcher's environment variables set, OMP_NUM_THREADS=1 unless the caller chose), in one
process group of its own so that the whole group, DataLoader workers included, is killed at the
end whatever happened. A rank reports through an append-only JSON-lines log: which stage it is
in, what it measured, the error it raised. The runner never waits forever:

- no new line from any rank for `timeout_s` (`startup_s` until every rank has joined the group)
  is a hang: each live rank dumps its Python stacks (faulthandler on SIGUSR1), then all are
  killed;
- a rank that raised or died gives the others a short grace to log their own view, then all are
  killed;
- rank 0 failing to listen on the port (EADDRINUSE: another process took it after we chose it)
  starts the group again on another port, twice at most. A port the caller asked for that is
  busy is chosen around before anything starts, and the report says so.

Standard library only: the parent process of `cvdoctor model` keeps torch out of this path.
"""
from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from cvdoctor.ddp.ports import free_port, port_is_free

HOST = "127.0.0.1"
GRACE_S = 2.0  # after a rank fails: time for the others to log how it reached them
STACK_WAIT_S = 1.0  # after SIGUSR1: time for faulthandler to write the stacks
POLL_S = 0.05
PORT_ATTEMPTS = 3
STDERR_TAIL = 4000


@dataclass
class Launch:
    """What to run: `world_size` ranks of `source` on `backend`/`device`."""

    world_size: int
    source: dict[str, Any]  # {"kind": "target", ...} or {"kind": "pickle"} (payload given)
    backend: str = "gloo"
    device: str = "cpu"  # cpu | cuda (one GPU per rank) | cuda-shared (all ranks on cuda:0)
    timeout_s: float = 60.0  # collectives, and the longest a rank may go without progress
    startup_s: float = 120.0  # until every rank has joined the group (imports, rendezvous)
    port: int | None = None  # None: a free one
    payload: bytes | None = None  # the pickled objects for source kind "pickle"
    env: dict[str, str] = field(default_factory=dict)  # more environment for the ranks
    steps: int = 2


def run_ranks(launch: Launch, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the ranks to the end (or until a failure or a hang) and return what each logged."""
    progress = progress or (lambda _msg: None)
    start = time.perf_counter()
    note = None
    port = launch.port
    if port is not None and not port_is_free(port):
        chosen = free_port()
        note = f"port {port} was already in use on this machine: used {chosen}"
        port = chosen
    result: dict[str, Any] = {}
    for attempt in range(1, PORT_ATTEMPTS + 1):
        if port is None:
            port = free_port()
        progress(f"starting {launch.world_size} ranks ({launch.backend}) on port {port}")
        result = _run_once(launch, port)
        result["attempts"] = attempt
        if not _rank0_port_taken(result) or attempt == PORT_ATTEMPTS:
            break
        taken = port
        port = free_port()
        note = f"port {taken} was taken before rank 0 could listen on it: used {port}"
    result["port_note"] = note
    result["seconds"] = round(time.perf_counter() - start, 3)
    return result


def _rank0_port_taken(result: dict[str, Any]) -> bool:
    ranks = result.get("ranks") or []
    if not ranks:
        return False
    error = ranks[0].get("error") or {}
    text = f"{error.get('message', '')}".lower()
    return error.get("stage") == "init" and ("eaddrinuse" in text
                                             or "address already in use" in text)


class _Rank:
    def __init__(self, rank: int, workdir: Path):
        self.rank = rank
        self.events_path = workdir / f"rank{rank}.jsonl"
        self.stderr_path = workdir / f"rank{rank}.stderr"
        self.stack_path = workdir / f"rank{rank}.stack"
        self.proc: subprocess.Popen | None = None
        self.events: list[dict[str, Any]] = []
        self._offset = 0
        self._partial = b""

    def read(self) -> bool:
        """New complete lines from the log; True when there were any."""
        try:
            with open(self.events_path, "rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except OSError:
            return False
        if not data:
            return False
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        new = False
        for line in lines:
            try:
                self.events.append(json.loads(line))
                new = True
            except ValueError:
                continue
        return new

    def ended(self, stage: str) -> bool:
        return any(e.get("ev") == "end" and e.get("stage") == stage for e in self.events)

    @property
    def error(self) -> dict[str, Any] | None:
        return next((e for e in reversed(self.events) if e.get("ev") == "error"), None)

    @property
    def failed(self) -> bool:
        code = self.proc.poll() if self.proc else None
        return self.error is not None or (code is not None and code != 0)

    def summary(self, killed: bool) -> dict[str, Any]:
        code = self.proc.returncode if self.proc else None
        sig = None
        if code is not None and code < 0:
            try:
                sig = signal.Signals(-code).name
            except ValueError:
                sig = str(-code)
        begun = [e for e in self.events if e.get("ev") == "begin"]
        return {"rank": self.rank, "pid": self.proc.pid if self.proc else None,
                "returncode": code, "signal": sig, "killed": killed,
                "events": self.events, "error": self.error,
                "done": any(e.get("ev") == "done" for e in self.events),
                "last_stage": begun[-1] if begun else None,
                "stderr": _tail(self.stderr_path), "stack": _read(self.stack_path)}


def _run_once(launch: Launch, port: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="cvdoctor-ddp-"))
    ranks = [_Rank(r, workdir) for r in range(launch.world_size)]
    outcome, hung_for = "completed", None
    pgid: int | None = None
    killed: set[int] = set()
    try:
        source = dict(launch.source)
        if launch.payload is not None:
            (workdir / "payload.pt").write_bytes(launch.payload)
            source["path"] = str(workdir / "payload.pt")
        job = {"world_size": launch.world_size, "backend": launch.backend,
               "device": launch.device, "timeout_s": launch.timeout_s, "host": HOST,
               "port": port, "source": source, "workdir": str(workdir), "steps": launch.steps}
        job_path = workdir / "job.json"
        job_path.write_text(json.dumps(job))
        for r in ranks:
            r.proc, pgid = _spawn(r, job_path, launch, port, pgid)
        outcome, hung_for = _watch(ranks, launch)
        _dump_stacks(ranks)  # the ranks still running: where they are stuck
        for r in ranks:
            if r.proc is not None and r.proc.poll() is None:
                killed.add(r.rank)
    except OSError as exc:  # the interpreter could not be started
        outcome = "launch-failed"
        return {"outcome": outcome, "error": f"{type(exc).__name__}: {exc}", "ranks": [],
                "port": port, "world_size": launch.world_size, "backend": launch.backend,
                "device": launch.device, "timeout_s": launch.timeout_s}
    finally:
        _kill_group(pgid, ranks)
        for r in ranks:
            r.read()
        summaries = [r.summary(r.rank in killed) for r in ranks]
        shutil.rmtree(workdir, ignore_errors=True)
    if outcome == "completed" and any(s["error"] or s["returncode"] for s in summaries):
        outcome = "failed"
    return {"outcome": outcome, "ranks": summaries, "port": port, "hung_for_s": hung_for,
            "world_size": launch.world_size, "backend": launch.backend,
            "device": launch.device, "timeout_s": launch.timeout_s}


def _spawn(r: _Rank, job_path: Path, launch: Launch, port: int, pgid: int | None):
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")  # what torchrun does for several ranks per machine
    env.update(launch.env)
    env.update({"RANK": str(r.rank), "WORLD_SIZE": str(launch.world_size),
                "LOCAL_RANK": str(r.rank), "LOCAL_WORLD_SIZE": str(launch.world_size),
                "GROUP_RANK": "0", "ROLE_RANK": str(r.rank),
                "ROLE_WORLD_SIZE": str(launch.world_size), "MASTER_ADDR": HOST,
                "MASTER_PORT": str(port), "PYTHONUNBUFFERED": "1",
                "PYTHONWARNINGS": env.get("PYTHONWARNINGS", "ignore")})
    argv = [sys.executable, "-m", "cvdoctor.ddp.worker", str(job_path), str(r.rank)]
    zygote = Zygote.get()
    if zygote is not None:
        proc = zygote.spawn(argv, env, os.getcwd(), pgid or 0, r.stderr_path)
        if proc is not None:
            return proc, proc.pid if pgid is None else pgid
    kwargs: dict[str, Any] = {}
    if os.name != "posix":  # pragma: no cover - no process groups: each rank is killed alone
        pass
    elif sys.version_info >= (3, 11):
        kwargs["process_group"] = 0 if pgid is None else pgid
    else:  # pragma: no cover - Python 3.10
        target = 0 if pgid is None else pgid
        kwargs["preexec_fn"] = lambda: os.setpgid(0, target)
    with open(r.stderr_path, "wb") as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err, env=env, cwd=os.getcwd(), **kwargs)
    return proc, proc.pid if pgid is None else pgid


class ZygoteChild:
    """A rank forked by the zygote: the part of subprocess.Popen the runner uses."""

    def __init__(self, pid: int, zygote: "Zygote"):
        self.pid = pid
        self._zygote = zygote

    @property
    def returncode(self) -> int | None:
        return self._zygote.returncode(self.pid)

    def poll(self) -> int | None:
        return self.returncode

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"rank pid {self.pid}", timeout)
            if not self._zygote.alive():
                return -signal.SIGKILL  # died with its zygote (PR_SET_PDEATHSIG)
            time.sleep(0.01)
        return self.returncode


class Zygote:
    """The fork server (`cvdoctor.ddp.zygote`) of this process, started on first use and kept
    for later runs; None where fork is unavailable or CVDOCTOR_DDP_ZYGOTE=0."""

    _instance: "Zygote | None" = None
    _lock = threading.Lock()

    @classmethod
    def get(cls) -> "Zygote | None":
        if os.environ.get("CVDOCTOR_DDP_ZYGOTE", "1") == "0" or not hasattr(os, "fork") \
                or not sys.platform.startswith("linux"):
            return None
        with cls._lock:
            inst = cls._instance
            if inst is not None and inst.alive():
                return inst
            try:
                cls._instance = cls()
            except (OSError, RuntimeError):
                cls._instance = None
            return cls._instance

    def __init__(self, timeout_s: float = 120.0):
        env = dict(os.environ)
        env["PYTHONWARNINGS"] = env.get("PYTHONWARNINGS", "ignore")
        self.proc = subprocess.Popen([sys.executable, "-m", "cvdoctor.ddp.zygote"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=env, cwd=os.getcwd())
        self._exits: dict[int, int] = {}
        self._replies: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._ready = False
        threading.Thread(target=self._read, daemon=True, name="cvdoctor-ddp-zygote").start()
        with self._cond:
            self._cond.wait_for(lambda: self._ready or self.proc.poll() is not None,
                                timeout=timeout_s)
        if not self._ready:
            self.close()
            raise RuntimeError("the DDP fork server did not start")
        atexit.register(self.close)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            with self._cond:
                if msg.get("ready"):
                    self._ready = True
                elif "exit" in msg:
                    self._exits[int(msg["exit"])] = int(msg["returncode"])
                else:
                    self._replies.append(msg)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def spawn(self, argv: list[str], env: dict[str, str], cwd: str, pgid: int,
              stderr: Path) -> ZygoteChild | None:
        request = {"argv": argv, "env": env, "cwd": cwd, "pgid": pgid, "stderr": str(stderr)}
        with self._cond:
            self._replies.clear()
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write((json.dumps(request) + "\n").encode())
                self.proc.stdin.flush()
            except (OSError, ValueError):
                return None
            self._cond.wait_for(lambda: self._replies or not self.alive(), timeout=30)
            reply = self._replies.pop(0) if self._replies else {}
        return ZygoteChild(int(reply["pid"]), self) if "pid" in reply else None

    def returncode(self, pid: int) -> int | None:
        with self._cond:
            code = self._exits.get(pid)
        if code is None and not self.alive():
            return -signal.SIGKILL
        return code

    def children(self) -> list[int]:
        """Live processes the zygote started (for tests: nothing may be left after a run)."""
        try:
            import psutil

            return [c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)]
        except Exception:  # noqa: BLE001
            return []

    def close(self) -> None:
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            self.proc.kill()


def _watch(ranks: list[_Rank], launch: Launch) -> tuple[str, float | None]:
    last_progress = time.monotonic()
    failed_at: float | None = None
    while True:
        now = time.monotonic()
        if any([r.read() for r in ranks]):
            last_progress = now
        if all(r.proc is not None and r.proc.poll() is not None for r in ranks):
            for r in ranks:
                r.read()
            return "completed", None
        failed = [r for r in ranks if r.failed]
        if failed:
            if failed_at is None:
                failed_at = now
            if now - failed_at > GRACE_S or all(_nothing_to_wait_for(r) for r in failed):
                return "failed", None
        joined = all(r.ended("init") for r in ranks)
        limit = launch.timeout_s if joined else max(launch.timeout_s, launch.startup_s)
        if failed_at is None and now - last_progress > limit:
            return "hung", round(now - last_progress, 1)
        time.sleep(POLL_S)


def _nothing_to_wait_for(r: _Rank) -> bool:
    """A failure after which the other ranks have nothing more to tell: it happened while
    joining the group (nobody got further), or it is a timeout waiting for the others (those
    still running are the ones stuck)."""
    from cvdoctor.ddp.analysis import is_echo

    error = r.error
    if error is None:
        return False
    return error.get("stage") == "init" or is_echo(error)


def _dump_stacks(ranks: list[_Rank]) -> None:
    """Ask every live rank for its Python stacks (the worker registered faulthandler on
    SIGUSR1) and give them a moment to write."""
    asked = []
    for r in ranks:
        if r.proc is not None and r.proc.poll() is None:
            try:
                os.kill(r.proc.pid, signal.SIGUSR1)  # AttributeError on Windows: no stacks
                asked.append(r)
            except (OSError, AttributeError):
                continue
    deadline = time.monotonic() + STACK_WAIT_S
    while asked and time.monotonic() < deadline:
        if all(r.stack_path.exists() and r.stack_path.stat().st_size > 0 for r in asked):
            time.sleep(0.1)  # let the last thread's frames land
            return
        time.sleep(POLL_S)


def _kill_group(pgid: int | None, ranks: list[_Rank]) -> None:
    """SIGKILL to the ranks' process group (their DataLoader workers too), then reap."""
    if pgid is not None and hasattr(os, "killpg"):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for r in ranks:
        if r.proc is None:
            continue
        if r.proc.poll() is None:
            try:
                r.proc.kill()
            except OSError:
                pass
        try:
            r.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - uninterruptible sleep
            pass


def _read(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return text or None


def _tail(path: Path) -> str:
    text = _read(path) or ""
    return text[-STDERR_TAIL:]
