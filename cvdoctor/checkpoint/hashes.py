"""File digests for the hash prefix in a checkpoint's name, cached by path, size and mtime (a
2.5 GB SAM file takes seconds to hash; the cache makes the next run free)."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

BLOCK = 4 * 1024 ** 2


def cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cvdoctor" / "checkpoint-hashes.json"


def load_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def save_cache(path: Path, data: dict[str, Any]) -> str | None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {k: v for k, v in data.items() if os.path.exists(k)}  # forget deleted files
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
        return None
    except OSError as exc:
        return f"hash cache not written: {exc}"


def file_digests(path: Path, progress: Callable[[int], None] | None = None) -> dict[str, str]:
    """MD5 and SHA-256 in one pass; `progress(bytes_done)` after each block."""
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    done = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(BLOCK), b""):
            md5.update(block)
            sha.update(block)
            done += len(block)
            if progress is not None:
                progress(done)
    return {"md5": md5.hexdigest(), "sha256": sha.hexdigest()}


def attach_hashes(files: list[dict[str, Any]], deep: bool,
                  progress: Callable[[str, int, int], None] | None = None) -> str | None:
    """Fill rec['hash'] for files whose name promises a hash prefix: from the cache when size
    and mtime match, computed under `deep`, else rec['hash_skipped']. Returns a cache note."""
    cpath = cache_file()
    cache = load_cache(cpath)
    dirty = False
    for rec in files:
        known = rec.get("known") or {}
        if not known.get("hash_algo") or rec.get("size") in (None, 0) or "mtime_ns" not in rec:
            continue
        key = os.path.realpath(rec["path"])
        hit = cache.get(key)
        if isinstance(hit, dict) and hit.get("size") == rec["size"] \
                and hit.get("mtime_ns") == rec["mtime_ns"]:
            rec["hash"] = {"algo": known["hash_algo"], "hexdigest": hit.get(known["hash_algo"]),
                           "source": "cache"}
        elif deep:
            size = rec["size"]
            step = (lambda done, p=rec["path"]: progress(p, done, size)) if progress else None
            try:
                digests = file_digests(Path(rec["path"]), step)
            except OSError as exc:
                rec["hash_skipped"] = f"not readable: {exc}"
                continue
            cache[key] = {"size": rec["size"], "mtime_ns": rec["mtime_ns"], **digests}
            dirty = True
            rec["hash"] = {"algo": known["hash_algo"], "hexdigest": digests[known["hash_algo"]],
                           "source": "computed"}
        else:
            rec["hash_skipped"] = "full hash runs under --deep"
    return save_cache(cpath, cache) if dirty else None
