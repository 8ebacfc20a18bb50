"""Fact provider ``checkpoints``: find checkpoint files and say what each one really is.

A thin layer over the checkpoint library (``cvdoctor/checkpoint/``): discovery looks in the
current directory (and one level below), every ``--checkpoints DIR``, the torch hub cache and the
ultralytics weights folder; each file is inspected from its bytes (format, pickle safety by
symbolic execution, integrity, structure), names are compared with what they promise (hashes only
under ``--deep``, cached), and only files whose pickles hold plain data are handed to
``torch.load(weights_only=True)`` in the ``checkpoint_probe`` subprocess.

The check (``checks/env_checkpoints.py``) turns these facts into verdicts; the facts stay plain
data so they can be recorded and replayed.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, BinaryIO

from cvdoctor.checkpoint import discovery, hashes, known, loading, records
from cvdoctor.checkpoint.safety import LEGACY_NAMES, classify_ref
from cvdoctor.checkpoint.scan import Scan, judge
from cvdoctor.factgraph import fact

# The names this module has always offered (tests and recorded facts use them).
EXTENSIONS = discovery.EXTENSIONS
MAX_FILES = discovery.MAX_FILES
LOAD_LIMIT_BYTES = loading.LOAD_LIMIT_BYTES
SAM_CHECKPOINTS = known.SAM_CHECKPOINTS
YOLOV8_SIZE_RANGES = known.YOLOV8_SIZE_RANGES
identify_name = known.identify_name
is_loadable = loading.is_loadable
cache_file = hashes.cache_file


def classify_global(ref: str) -> str:
    """'allowed', 'library', 'foreign' or 'denied' for a dotted reference (assumed called)."""
    return LEGACY_NAMES[classify_ref(ref)]


def inspect_file(path: Path, place: str, deep: bool = False) -> dict[str, Any]:
    return records.file_records([(Path(path), place)], deep=deep)[0]


def scan_pickle(stream: BinaryIO) -> dict[str, Any]:
    """The globals one pickle stream uses and their categories (for tests and debugging)."""
    scan = Scan()
    try:
        run = scan.replay(stream if hasattr(stream, "seekable") else io.BytesIO(stream), "pickle")
        verdict = judge(scan)
    finally:
        scan.close()
    out: dict[str, Any] = {"globals": sorted({x["global"] for x in verdict["findings"]
                                             if x["global"]}),
                           "findings": verdict["findings"]}
    if run.problem:
        out["problem"] = run.problem
    return out


@fact("checkpoints")
def gather(ctx) -> dict[str, Any]:
    """Checkpoint files in the usual places, each inspected from its bytes (the same records as
    `cvdoctor ckpt`), hash-checked and, when plain data, loaded with weights_only=True."""
    deep = bool(ctx.option("deep", False))
    cwd = Path(ctx.option("cwd") or Path.cwd())
    places = discovery.search_places(cwd, ctx.option("checkpoint_dirs", ()) or ())
    paths, capped = discovery.discover(places)
    files = records.file_records(paths, deep=deep)
    for rec in files:
        st = rec.pop("structure", None) or {}  # env reports verdicts, not layouts
        if st.get("devices"):
            rec["devices"] = st["devices"]
    cache_note = records.attach_hashes(files, deep)
    records.attach_loads(files, deep, float(ctx.option("timeout_s", 60.0)))
    out: dict[str, Any] = {"places": places, "files": files, "deep": deep,
                           "load_limit_bytes": LOAD_LIMIT_BYTES, "max_files": MAX_FILES,
                           "capped": capped, "hash_cache": str(hashes.cache_file())}
    if cache_note:
        out["hash_cache_note"] = cache_note
    if not any(p["place"] == "ultralytics" for p in places):
        out["ultralytics_settings"] = discovery.ultralytics_settings_note()
    return out
