"""A fork server for rank processes: ``python -m cvdoctor.ddp.zygote``.

Starting a rank costs seconds of imports (torch, then torch._dynamo, which DistributedDataParallel
imports when it wraps a model) before it does anything. The zygote pays that once per cvdoctor
process: it imports those modules, never runs a torch operation, never starts a thread and never
touches CUDA, then forks one child per rank on request. Each child becomes what
``python -m cvdoctor.ddp.worker JOB RANK`` would be: the request's environment, working
directory and process group, stdout to /dev/null and stderr to the request's file, fresh random
seeds (as a new interpreter draws), and it dies with the zygote, which dies with its parent.

Protocol (JSON lines): the parent writes {"argv": [...], "env": {...}, "cwd": ..., "pgid": N,
"stderr": PATH}; the zygote answers {"pid": N} (or {"error": ...}) and, whenever a child ends,
{"exit": PID, "returncode": N} (negative: killed by that signal, as subprocess reports it).
End of input: the zygote kills what is left and exits.
"""
from __future__ import annotations

import json
import os
import select
import signal
import sys

PRELOAD = ("torch", "torch.distributed", "torch.nn.parallel", "torch._dynamo",
           "cvdoctor.ddp.rank_steps", "cvdoctor.model.context", "cvdoctor.model.loader")


def _reply(obj: dict) -> None:
    os.write(1, (json.dumps(obj) + "\n").encode())


def _returncode(status: int) -> int:
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1


def _child(request: dict, inherited: list[int]) -> None:
    """In the forked child: become a fresh rank process, run the worker, never return."""
    code = 1
    try:
        for fd in inherited:
            try:
                os.close(fd)
            except OSError:
                pass
        os.setpgid(0, int(request.get("pgid") or 0))
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        err = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(err, 2)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        for entry in reversed(os.environ.get("PYTHONPATH", "").split(os.pathsep)):
            if entry and entry not in sys.path:  # as a new interpreter would put them first
                sys.path.insert(0, entry)
        sys.argv = list(request["argv"][2:])  # as `python -m MODULE ARGS` sees it
        _fresh_state()
        from cvdoctor.ddp import worker

        worker.main(sys.argv)  # ends with os._exit
    except BaseException:  # noqa: BLE001 - the stderr file is the only witness
        import traceback

        traceback.print_exc()
    os._exit(code)


def _fresh_state() -> None:
    """What a new interpreter would have: its own random seeds and thread settings."""
    import random

    import torch

    random.seed()
    torch.seed()
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    threads = os.environ.get("OMP_NUM_THREADS")
    if threads and threads.isdigit() and int(threads) > 0:
        torch.set_num_threads(int(threads))


def serve() -> None:
    from cvdoctor.ddp.worker import _die_with_parent

    _die_with_parent()
    for name in PRELOAD:
        __import__(name)
    _reply({"ready": True, "pid": os.getpid()})
    children: set[int] = set()
    buffer = b""
    while True:
        readable, _, _ = select.select([0], [], [], 0.05)
        while children:  # reap whatever ended
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            children.discard(pid)
            _reply({"exit": pid, "returncode": _returncode(status)})
        if not readable:
            continue
        chunk = os.read(0, 65536)
        if not chunk:
            break
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            try:
                request = json.loads(line)
                pid = os.fork()
            except (ValueError, OSError) as exc:
                _reply({"error": f"{type(exc).__name__}: {exc}"})
                continue
            if pid == 0:
                _child(request, [0, 1])
            children.add(pid)
            _reply({"pid": pid})
    for pid in children:
        try:
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        except OSError:
            pass
    os._exit(0)


if __name__ == "__main__":
    serve()
