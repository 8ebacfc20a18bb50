"""Probe: DataLoader workers push real batches through shared memory (/dev/shm).

``python -m cvdoctor.probes.shm_probe --workers 2 --batches 12 --batch-bytes 25165824``

Each worker fills a float32 tensor of ``--batch-bytes`` (every page written) and hands it to this
process the way training does; this process keeps every batch until the end, so ``batches x
batch-bytes`` sit in shared memory at once. Prints ``{"ok", "error", "error_line", ...}``. A bus
error in this process itself (SIGBUS when touching a page tmpfs could not back) ends it by signal,
which ``run_probe`` reports.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time

from cvdoctor.probes import emit

# The lines that name the cause, most specific first (the rest of a worker traceback is noise).
_CAUSES = (
    r"unable to allocate shared memory\(shm\)[^\n]*",
    r"unable to write to file[^\n]*",
    r"unable to (?:open|mmap)[^\n]*shared memory[^\n]*",
    r"DataLoader worker \(pid[^\n]*",
    r"[^\n]*No space left on device[^\n]*",
    r"[^\n]*[Bb]us error[^\n]*",
    r"[^\n]*Too many open files[^\n]*",
)


def cause_line(text: str) -> str:
    for pattern in _CAUSES:
        m = re.search(pattern, text)
        if m:
            return m.group(0).strip()
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--batch-bytes", type=int, default=24 * 1024 * 1024)
    # Seconds to wait for one batch. Producing one takes milliseconds; when a worker cannot put
    # its batch into shared memory it logs the error and the loader waits forever (the hang).
    ap.add_argument("--timeout", type=float, default=10.0)
    args = ap.parse_args(argv)

    result = {"ok": False, "error": None, "error_line": None, "workers": args.workers,
              "prefetch_factor": 2, "batches_requested": args.batches,
              "batch_bytes": args.batch_bytes, "batches_received": 0, "held_bytes": 0}
    try:
        import torch
        from torch.utils.data import DataLoader, Dataset
    except Exception as exc:  # noqa: BLE001 - reported, env.torch says why
        result.update(error=f"torch not importable: {type(exc).__name__}: {exc}", torch=False)
        emit(result)
        return 0
    result["torch"] = True
    result["sharing_strategy"] = torch.multiprocessing.get_sharing_strategy()
    numel = args.batch_bytes // 4

    class Batches(Dataset):
        def __len__(self):
            return args.batches

        def __getitem__(self, i):
            return torch.full((numel,), float(i), dtype=torch.float32)

    start = time.perf_counter()
    held = []
    # Workers report a failed hand-over only on their stderr (the loader then just waits), so
    # capture fd 2 for the run and look there for the cause.
    log = tempfile.TemporaryFile(mode="w+b")
    saved_fd = os.dup(2)
    os.dup2(log.fileno(), 2)
    try:
        loader = DataLoader(Batches(), batch_size=None, num_workers=args.workers,
                            prefetch_factor=2, timeout=args.timeout)
        for i, batch in enumerate(loader):
            # Touch the received pages: a page tmpfs could not back faults here (SIGBUS).
            if float(batch[-1]) != float(i):
                raise RuntimeError(f"batch {i} arrived corrupted (last value {float(batch[-1])})")
            held.append(batch)
            result["batches_received"] = len(held)
            result["held_bytes"] = len(held) * args.batch_bytes
        result["ok"] = True
    except Exception as exc:  # noqa: BLE001 - the real DataLoader error is the answer
        text = f"{type(exc).__name__}: {exc}"
        result.update(error=text[-3000:], error_line=cause_line(text))
    finally:
        del held[:]
        sys.stderr.flush()
        os.dup2(saved_fd, 2)
        os.close(saved_fd)
    log.seek(0)
    worker_log = log.read().decode("utf-8", "replace")
    if worker_log.strip():
        sys.stderr.write(worker_log)
        result["worker_log"] = worker_log[-3000:]
        logged = cause_line(worker_log)
        if not result["ok"] and logged and ("timed out" in (result["error"] or "")
                                            or not result["error_line"]):
            result["error_line"] = logged
    result["duration_s"] = round(time.perf_counter() - start, 3)
    emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
