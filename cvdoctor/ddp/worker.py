"""One rank of a cvdoctor DDP run: ``python -m cvdoctor.ddp.worker JOB.json RANK``.

Started by `cvdoctor.ddp.runner` with the launcher's variables set (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT). It does what a `torchrun` training script does, in this order, and
logs each stage as a JSON line (`{"ev": "begin"|"end"|"fact"|"error"|"done", ...}`) so the parent
can tell how far every rank got, even if one hangs or dies:

1. joins the process group (gloo, or NCCL with one GPU per rank), with the run's timeout on
   every collective;
2. loads the model file itself (build_model(), get_batch() or the loader, as `cvdoctor model`
   does; the API's objects arrive pickled instead), and looks at the file's loader and its
   sampler;
3. wraps the model in DistributedDataParallel (default arguments: find_unused_parameters=False);
4. shares rank 0's batch, then, on a copy of the wrapped module and without collectives, runs one
   forward/backward on that shared batch and one on the rank's own batch, recording which modules
   ran, which parameters got no gradient and (shared batch) the outputs;
5. takes real DDP steps: step 1 on the shared batch (every rank computes the same thing, so
   parameters, buffers and outputs must agree afterwards), step 2 on the rank's own batch (what
   training does: parameters must still agree; BatchNorm statistics need not);
6. rank 0 calls the file's save_checkpoint(model, path) with the wrapped model, as a training
   loop would, and reads back what it saved.

The parent compares the ranks; this process only measures.
"""
from __future__ import annotations

import ctypes
import faulthandler
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

SEED = 1234  # the same on every rank before each forward: dropout masks agree across ranks


class EventLog:
    def __init__(self, path: Path):
        self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the run
        self.stage: str | None = None
        self.step: int | None = None
        self._started = time.monotonic()

    def write(self, ev: str, **fields: Any) -> None:
        record = {"ev": ev, "t": round(time.monotonic() - self._started, 4), **fields}
        self._fh.write(json.dumps(record, default=str) + "\n")
        self._fh.flush()

    def begin(self, stage: str, step: int | None = None) -> None:
        self.stage, self.step = stage, step
        self.write("begin", stage=stage, step=step)

    def end(self, stage: str, step: int | None = None, **fields: Any) -> None:
        self.write("end", stage=stage, step=step, **fields)

    def fact(self, name: str, value: Any) -> None:
        self.write("fact", name=name, value=value, stage=self.stage, step=self.step)


def _die_with_parent() -> None:
    """Linux: SIGKILL this rank when the process that started it dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[1]).read_text())
    rank = int(argv[2])
    workdir = Path(job["workdir"])
    _die_with_parent()
    stack_file = open(workdir / f"rank{rank}.stack", "w", encoding="utf-8")  # noqa: SIM115
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, file=stack_file, all_threads=True)
    log = EventLog(workdir / f"rank{rank}.jsonl")
    log.write("start", pid=os.getpid())
    code = 0
    try:
        log.begin("import")
        from cvdoctor.ddp import rank_steps  # torch, torch.distributed

        log.end("import")
        rank_steps.run(job, rank, log)
        log.write("done")
    except BaseException as exc:  # noqa: BLE001 - every failure is the report, never lost
        code = 1
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-12))
        log.write("error", stage=log.stage, step=log.step, type=type(exc).__name__,
                  message=str(exc).strip()[:4000], traceback=tb[-6000:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # no interpreter teardown: a broken process group can hang it


if __name__ == "__main__":
    main(sys.argv)
