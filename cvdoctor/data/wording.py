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


def where(ds: dict[str, Any], code: str, shown: int = 3, details: bool = False) -> str:
    found = issue(ds, code)
    return places(found, shown, relative_to=base_dir(ds), details=details) if found else ""


def mixed_kinds(ds: dict[str, Any], code: str) -> bool:
    """True when the occurrences of `code` are of several kinds (a FIFO and a device): then no
    one detail speaks for all of them."""
    return len((issue(ds, code) or {}).get("tally") or {}) > 1


def first_detail(ds: dict[str, Any], code: str) -> str:
    found = issue(ds, code) or {}
    examples = found.get("examples") or [{}]
    return str(examples[0].get("detail", ""))


def describe(ds: dict[str, Any], code: str, noun: str, detail: bool = True,
             tail: str = "") -> str:
    """'3 label rows (class 7, dataset has 3 classes (0-2)): labels/a.txt:4, ... and 1 more';
    `tail` goes after the noun ('2 boxes past the frame (...)')."""
    n = count(ds, code)
    mixed = mixed_kinds(ds, code)  # then each place carries its own detail instead
    first = first_detail(ds, code) if detail and not mixed else ""
    head = plural(n, noun, noun + "es" if noun.endswith(("x", "s")) else None)
    return (f"{head}{' ' + tail if tail else ''}{f' ({first})' if first else ''}: "
            f"{where(ds, code, details=detail and mixed)}")


# special_kind()'s words, as the noun of a message: singular and plural.
_SPECIAL_NOUNS = {"a FIFO (named pipe)": ("FIFO (named pipe)", "FIFOs (named pipes)"),
                  "a socket": ("socket", "sockets"),
                  "a character device": ("character device", "character devices"),
                  "a block device": ("block device", "block devices")}


def special_files(ds: dict[str, Any], code: str = "fs.special") -> str:
    """'2 FIFOs (named pipes): a.jpg, b.jpg' when every entry is of one kind; '3 special files:
    a.jpg (a FIFO (named pipe)), z.jpg (a character device), ...' when kinds differ."""
    found = issue(ds, code) or {}
    kinds = list((found.get("tally") or {}))
    if len(kinds) == 1 and kinds[0] in _SPECIAL_NOUNS:
        one, many = _SPECIAL_NOUNS[kinds[0]]
        return f"{plural(count(ds, code), one, many)}: {where(ds, code)}"
    return describe(ds, code, "special file")


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


def nothing_scanned(ds: dict[str, Any]) -> str | None:
    """Why the file checks have nothing to look at (a YOLO split that did not resolve, splits or
    class folders without images), or None. A check that would pass without looking skips
    with this."""
    if ds.get("kind") == "imagefolder":
        if not any(info.get("images") for info in ds["splits"].values()):
            return "no image in the class folders (see data.imagefolder)"
        return None
    if ds.get("kind") != "yolo":
        return None
    if not ds.get("splits"):
        return "no split of data.yaml resolves to a folder or list file that exists (see data.yaml)"
    if not any(info.get("images") for info in ds["splits"].values()):
        return "the splits list no images (see data.yaml)"
    return None


def no_rows(ds: dict[str, Any]) -> str | None:
    """Why there is no YOLO label row to check, or None when there are rows."""
    reason = nothing_scanned(ds)
    if reason or ds.get("kind") != "yolo":
        return reason
    splits = ds["splits"].values()
    if sum(info.get("rows", 0) for info in splits):
        return None
    labels = sum(info.get("labels", 0) for info in splits)
    if not labels:
        return "no image has a label file (see data.labels)"
    return (f"the {plural(labels, 'label file')} {'holds' if labels == 1 else 'hold'} no rows "
            "(every image is a background)")
