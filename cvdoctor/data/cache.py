"""ultralytics' label cache files (`labels/train.cache` beside `labels/train/`), read-only.

ultralytics writes `<label folder>.cache` after its first scan and reuses it while the hash of
file names, sizes and mtimes matches; otherwise it rescans and rewrites it. cvdoctor never
unpickles it (it is a pickle inside a .npy file). What can go wrong without reading it: a cache
older than the files it describes (rebuilt on the next run -- needs a writable folder), a file
that is not a .npy at all, and a folder ultralytics cannot write (it then rescans every run and
logs "Cache directory ... is not writable, cache not saved").
"""
from __future__ import annotations

import os
from typing import Any

from cvdoctor.data import walk
from cvdoctor.data.issues import Issues

NPY_MAGIC = b"\x93NUMPY"


def cache_path_for(first_label_file: str) -> str:
    """ultralytics: Path(label_files[0]).parent.with_suffix('.cache')."""
    return os.path.splitext(os.path.dirname(first_label_file))[0] + ".cache"


def inspect_cache(first_label_file: str, newest_mtime_ns: int, split: str,
                  issues: Issues) -> dict[str, Any]:
    path = cache_path_for(first_label_file)
    folder = os.path.dirname(path)
    info: dict[str, Any] = {"path": path, "exists": False, "writable_dir": True}
    writable = walk.is_writable_dir(folder)
    info["writable_dir"] = writable
    try:
        st = os.stat(path)
    except OSError:
        st = None
    if st is not None:
        info["exists"] = True
        info["mtime_ns"] = st.st_mtime_ns
        try:
            with open(path, "rb") as fh:
                magic = fh.read(len(NPY_MAGIC))
        except OSError as exc:
            magic = b""
            info["error"] = exc.strerror
        if magic != NPY_MAGIC:
            issues.add("cache.unreadable", path, split=split,
                       detail="not a .npy label cache: ultralytics discards it and rescans")
        elif newest_mtime_ns > st.st_mtime_ns:
            info["stale"] = True
            issues.add("cache.stale", path, split=split,
                       detail="labels or images changed after the cache was written: "
                              "ultralytics rescans and rewrites it")
    if not writable:
        issues.add("cache.unwritable", folder, split=split,
                   detail="ultralytics cannot save its label cache here: it rescans every run")
    return info
