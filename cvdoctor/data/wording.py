"""How data checks name what they found: counts, the first places (relative to the dataset), and
the first detail -- one wording for every data finding."""
from __future__ import annotations

import os
from typing import Any

from cvdoctor.data.issues import places
from cvdoctor.text import plural


def base_dir(ds: dict[str, Any]) -> str:
    """The folder that file names are shown relative to: the dataset root."""
    if ds.get("kind") == "yolo":
        return ds["yaml"]["root"]["resolved"] if ds["yaml"]["root"]["exists"] \
            else os.path.dirname(ds["path"])
    return ds.get("path", "")


def issue(ds: dict[str, Any], code: str) -> dict[str, Any] | None:
    return ds.get("issues", {}).get(code)


def count(ds: dict[str, Any], *codes: str) -> int:
    return sum((issue(ds, c) or {}).get("count", 0) for c in codes)


def where(ds: dict[str, Any], code: str, shown: int = 3) -> str:
    found = issue(ds, code)
    return places(found, shown, relative_to=base_dir(ds)) if found else ""


def first_detail(ds: dict[str, Any], code: str) -> str:
    found = issue(ds, code) or {}
    examples = found.get("examples") or [{}]
    return str(examples[0].get("detail", ""))


def describe(ds: dict[str, Any], code: str, noun: str, detail: bool = True,
             tail: str = "") -> str:
    """'3 label rows (class 7, dataset has 3 classes (0-2)): labels/a.txt:4, ... and 1 more';
    `tail` goes after the noun ('2 boxes past the frame (...)')."""
    n = count(ds, code)
    first = first_detail(ds, code) if detail else ""
    head = plural(n, noun, noun + "es" if noun.endswith(("x", "s")) else None)
    return f"{head}{' ' + tail if tail else ''}{f' ({first})' if first else ''}: {where(ds, code)}"


def evidence(ds: dict[str, Any], *codes: str) -> dict[str, Any]:
    """The issues behind a finding, as they are (count and first examples), by code."""
    return {code: issue(ds, code) for code in codes if issue(ds, code)}


def rel(ds: dict[str, Any], path: str) -> str:
    base = base_dir(ds)
    try:
        out = os.path.relpath(path, base)
    except ValueError:
        return path
    return path if out.startswith("..") else out
