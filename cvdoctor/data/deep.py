"""`--deep`: decode every image in worker processes, each with a time limit.

A decoder that hangs or crashes on one hostile file must not take the doctor down: workers are
separate processes (spawned, so nothing the parent imported is inherited), at most a small window
of images is in flight (memory flat), a file that does not finish in `timeout_s` is reported and
its worker killed, and a worker that dies takes only its in-flight files with it.
"""
from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool

from cvdoctor.data import images

DEFAULT_TIMEOUT_S = 30.0


def default_workers() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(8, n))


def _decode_one(path: str) -> list[tuple[str, str]]:
    return images.decode(path)


class _Pool:
    def __init__(self, workers: int, fn: Callable[[str], list[tuple[str, str]]]) -> None:
        self.workers = workers
        self.fn = fn
        self.executor = self._new()

    def _new(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))

    def submit(self, path: str) -> Future:
        try:
            return self.executor.submit(self.fn, path)
        except (BrokenProcessPool, RuntimeError, OSError) as exc:
            # The pool died since the last look. A worker death is noticed by the executor's
            # own thread, which marks it broken and closes its queues without taking the lock
            # that submit holds; a submit in between spawns a worker from a closed pipe
            # ("handle is closed") or finds it shut down. All mean the same: fail this one
            # like the rest, and the caller restarts the pool.
            failed: Future = Future()
            failed.set_exception(exc if isinstance(exc, BrokenProcessPool)
                                 else BrokenProcessPool(f"the pool died while submitting: {exc}"))
            return failed

    def restart(self) -> None:
        self.kill()
        self.executor = self._new()

    def kill(self) -> None:
        processes = getattr(self.executor, "_processes", None) or {}
        for proc in list(processes.values()):
            try:
                proc.kill()
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.executor.shutdown(wait=True, cancel_futures=True)


def decode_all(paths: Iterable[str], *, workers: int | None = None,
               timeout_s: float = DEFAULT_TIMEOUT_S,
               progress: Callable[[int], None] | None = None,
               decoder: Callable[[str], list[tuple[str, str]]] | None = None,
               ) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """Yield (path, problems) for every path, in order. Problems as `images.decode` returns them,
    plus image.decode_timeout and image.decoder_crashed. `decoder` replaces the worker function
    (tests use it to make a worker hang or die)."""
    workers = workers or default_workers()
    pool = _Pool(workers, decoder or _decode_one)
    window: deque[tuple[str, Future]] = deque()
    done = 0
    source = iter(paths)
    try:
        while True:
            while len(window) < workers * 2:
                path = next(source, None)
                if path is None:
                    break
                window.append((path, pool.submit(path)))
            if not window:
                break
            path, future = window.popleft()
            try:
                result = future.result(timeout=timeout_s)
            except FutureTimeout:
                result = [("image.decode_timeout", f"decoding took longer than {timeout_s:g} s")]
                window = _resubmit(pool, window)
            except BrokenProcessPool:
                # Any file in flight may have killed the worker: retry this one alone to know.
                pending = [p for p, _ in window]
                pool.restart()
                result = _alone(pool, path, timeout_s)
                window = deque((p, pool.submit(p)) for p in pending)
            except Exception as exc:  # noqa: BLE001 - a pickling or pool error on one file
                result = [("image.corrupt", str(exc)[:200])]
            done += 1
            if progress is not None:
                progress(done)
            yield path, result
    finally:
        pool.kill()


def _alone(pool: _Pool, path: str, timeout_s: float) -> list[tuple[str, str]]:
    try:
        return pool.submit(path).result(timeout=timeout_s)
    except FutureTimeout:
        pool.restart()
        return [("image.decode_timeout", f"decoding took longer than {timeout_s:g} s")]
    except BrokenProcessPool:
        pool.restart()
        return [("image.decoder_crashed", "the decoding worker process died on it")]


def _resubmit(pool: _Pool, window: deque) -> deque:
    """Kill the pool (a hung or dead worker), start a new one, re-queue the files in flight."""
    pending = [path for path, _ in window]
    pool.restart()
    return deque((path, pool.submit(path)) for path in pending)
