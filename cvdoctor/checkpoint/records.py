"""One record per checkpoint file, shared by `cvdoctor ckpt` and `cvdoctor env`'s
``env.checkpoints``: the static inspection (``scan.inspect_file``), what the name promises
(``known``), the hash prefix check (``hashes``, cached; computed under ``deep`` with progress) and
the weights-only load probe (``loading``)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterable

from cvdoctor.checkpoint import hashes, known, loading
from cvdoctor.checkpoint.scan import inspect_file

BAR = 20
PROGRESS_EVERY_S = 1.0


def file_records(files: Iterable[tuple[Path, str]], *, deep: bool = False,
                 structure: bool = True) -> list[dict[str, Any]]:
    """Inspect each (path, place): format, safety, integrity, structure, known name."""
    out = []
    for path, place in files:
        rec = inspect_file(Path(path), deep=deep, structure_wanted=structure)
        rec["place"] = place
        found = known.identify_name(Path(path).name, place)
        if found:
            rec["known"] = found
        out.append(rec)
    return out


def hash_progress(emit: Callable[[str], None] | None) -> Callable[[str, int, int], None] | None:
    """A (path, done, total) callback that emits a text bar at most once a second."""
    if emit is None:
        return None
    last = {"t": 0.0}

    def report(path: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - last["t"] < PROGRESS_EVERY_S:
            return
        last["t"] = now
        filled = min(BAR, int(BAR * done / total)) if total else BAR
        emit(f"hashing {Path(path).name} [{'#' * filled}{'.' * (BAR - filled)}] "
             f"{done / 1024 ** 2:,.0f}/{total / 1024 ** 2:,.0f} MiB")

    return report


def attach_hashes(files: list[dict[str, Any]], deep: bool,
                  progress: Callable[[str], None] | None = None) -> str | None:
    return hashes.attach_hashes(files, deep, hash_progress(progress))


def attach_loads(files: list[dict[str, Any]], deep: bool, timeout_s: float) -> None:
    loading.attach_loads(files, deep, timeout_s)


def requirement_unmet(path: Path) -> tuple[str, str] | None:
    """For `@pytest.mark.cvdoctor_requires(checkpoints=[...])`: (reason, recipe) when the file
    at `path` is not a usable checkpoint (missing, not a checkpoint, truncated, unsafe), else
    None. Static only: nothing is loaded, and no torch import."""
    from cvdoctor.checkpoint import verdicts

    rec = file_records([(Path(path), "requirement")], structure=False)[0]
    if rec.get("kind") in ("missing", "unreadable", "directory", "special"):
        return f"needs the checkpoint {path}: {rec.get('error', rec['kind'])}", \
            verdicts.NOT_A_CHECKPOINT
    problems = ([p for p in [verdicts.format_problem(rec)] if p]
                + [p for p in verdicts.integrity_problems(rec) if p.status == "fail"]
                + [p for p in verdicts.safety_problems(rec) if p.recipe == verdicts.UNSAFE])
    if not problems:
        return None
    return f"needs the checkpoint {path}, which {problems[0].message.split(' ', 1)[1]}", \
        problems[0].recipe
