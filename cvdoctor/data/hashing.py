"""Duplicate images and train/val leakage by content hash, hashing only where sizes collide.

Files of different sizes cannot be equal, so the first pass keeps one path per distinct size and
only files that share a size with another are read and hashed (BLAKE2b) at the end. On a photo
dataset that is a small share of the files; memory is one entry per distinct size.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from itertools import combinations
from typing import Any

from cvdoctor.data.issues import MAX_EXAMPLES

CHUNK = 1024 * 1024


def file_digest(path: str) -> bytes | None:
    h = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                h.update(chunk)
    except OSError:
        return None
    return h.digest()


class ContentIndex:
    def __init__(self) -> None:
        self._by_size: dict[int, Any] = {}  # size -> (path, split) or [(path, split), ...]

    def add(self, path: str, size: int, split: str) -> None:
        if size <= 0:
            return
        slot = self._by_size.get(size)
        if slot is None:
            self._by_size[size] = (path, split)
        elif isinstance(slot, tuple):
            self._by_size[size] = [slot, (path, split)]
        else:
            slot.append((path, split))

    def candidates(self) -> int:
        return sum(len(v) for v in self._by_size.values() if isinstance(v, list))

    def finish(self, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
        """{"hashed": n, "duplicates": {split: {count, examples}}, "leakage": {"train/val":
        {count, examples}}}. A duplicate count is the number of extra copies; a leakage count is
        the number of images of the later split whose content is also in the earlier one."""
        duplicates: dict[str, dict[str, Any]] = {}
        leakage: dict[str, dict[str, Any]] = {}
        hashed = 0
        for slot in self._by_size.values():
            if not isinstance(slot, list):
                continue
            groups: dict[bytes, list[tuple[str, str]]] = {}
            for path, split in slot:
                digest = file_digest(path)
                hashed += 1
                if progress is not None:
                    progress(hashed)
                if digest is not None:
                    groups.setdefault(digest, []).append((path, split))
            for members in groups.values():
                if len(members) > 1:
                    _record(members, duplicates, leakage)
        self._by_size.clear()
        return {"hashed": hashed, "duplicates": duplicates, "leakage": leakage}


def _bump(table: dict[str, dict[str, Any]], key: str, example: dict[str, str]) -> None:
    entry = table.setdefault(key, {"count": 0, "examples": []})
    entry["count"] += 1
    if len(entry["examples"]) < MAX_EXAMPLES:
        entry["examples"].append(example)


def _record(members: list[tuple[str, str]], duplicates: dict, leakage: dict) -> None:
    by_split: dict[str, list[str]] = {}
    for path, split in members:
        by_split.setdefault(split, []).append(path)
    for split, paths in by_split.items():
        for extra in paths[1:]:
            _bump(duplicates, split, {"file": extra, "same_as": paths[0]})
    for (a, pa), (b, pb) in combinations(by_split.items(), 2):
        for path in pb:
            _bump(leakage, f"{a}/{b}", {"file": path, "same_as": pa[0]})
