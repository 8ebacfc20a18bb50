"""Walking a dataset folder safely: streamed, loop-proof, read-only, bounded.

`iter_files` streams `os.scandir` (no full listing in memory), follows symlinked folders once
(a link loop is reported, never walked forever), and reports what it cannot use instead of
tripping over it: FIFOs, sockets and devices (opening a FIFO blocks forever), broken links,
folders it may not list. Every file is opened read-only; nothing is ever written here.
"""
from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from cvdoctor.data.errors import DatasetError
from cvdoctor.data.issues import Issues
from cvdoctor.files import special_kind

TEXT_LIMIT = 16 * 1024 ** 2  # a label or list file larger than this is not a label file


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    mtime_ns: int


def iter_files(root: str, issues: Issues, *, include_hidden: bool = True) -> Iterator[FileEntry]:
    """Every regular file under `root`, depth first. `include_hidden=False` skips names that
    start with a dot, as `glob('**/*.*')` does (ultralytics); torchvision's os.walk keeps them."""
    seen_dirs: set[tuple[int, int]] = set()
    try:
        st = os.stat(root)
        seen_dirs.add((st.st_dev, st.st_ino))
    except OSError as exc:
        issues.add("fs.unreadable", root, detail=exc.strerror or str(exc))
        return
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            it = os.scandir(folder)
        except OSError as exc:
            issues.add("fs.unreadable", folder, detail=exc.strerror or str(exc))
            continue
        subdirs = []
        with it:
            for entry in it:
                if not include_hidden and entry.name.startswith("."):
                    continue
                try:
                    if entry.is_dir():
                        st = entry.stat()
                        key = (st.st_dev, st.st_ino)
                        if key in seen_dirs:
                            issues.add("fs.symlink_loop", entry.path,
                                       detail="links back to a folder already walked")
                            continue
                        seen_dirs.add(key)
                        subdirs.append(entry.path)
                    elif entry.is_file():
                        st = entry.stat()
                        yield FileEntry(entry.path, st.st_size, st.st_mtime_ns)
                    elif entry.is_symlink():
                        _report_link(entry.path, issues)
                    else:
                        report_special(entry.path, issues)
                except OSError as exc:
                    if exc.errno == errno.ELOOP:
                        issues.add("fs.symlink_loop", entry.path, detail="symbolic link loop")
                    else:
                        issues.add("fs.unreadable", entry.path, detail=exc.strerror or str(exc))
        stack.extend(sorted(subdirs, reverse=True))


def _report_link(path: str, issues: Issues) -> None:
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            issues.add("fs.symlink_loop", path, detail="symbolic link loop")
        else:
            issues.add("fs.broken_link", path, detail=f"points to {os.readlink(path)!r}")
        return
    report_special(path, issues)


def report_special(path: str, issues: Issues, **extra) -> None:
    """An entry that is not a regular file (a FIFO, socket or device), counted by its kind."""
    kind = _kind(path)
    issues.add("fs.special", path, detail=kind, tally=kind, **extra)


def _kind(path: str) -> str:
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return exc.strerror or "unreadable"
    return special_kind(mode) or "not a regular file"


def require_regular_file(path: str) -> os.stat_result:
    """stat `path` and insist it is a regular file (never open a FIFO or a device)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DatasetError(f"{path}: symbolic link loop") from None
        raise DatasetError(f"{path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise DatasetError(f"{path}: {_kind(path)}, not a file cvdoctor can read")
    return st


def read_failure(exc: BaseException) -> tuple[str, str]:
    """(detail, kind) of a read_text failure: the detail may carry numbers, the kind does not
    (what an issue's tally counts)."""
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc)
        return reason, reason
    text = str(exc)
    return text, ("larger than the text limit" if "limit" in text else text)


def read_text(path: str, limit: int | None = None) -> str:
    """A text file's content (UTF-8, BOM removed, undecodable bytes replaced), read only if it is
    a regular file no larger than `limit`. Raises OSError or ValueError with a short reason."""
    limit = TEXT_LIMIT if limit is None else limit
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(_kind(path))
    if st.st_size > limit:
        raise ValueError(f"{st.st_size:,} bytes, larger than the {limit:,}-byte limit for text")
    with open(path, "rb") as fh:
        data = fh.read(limit + 1)
    return data.decode("utf-8-sig", errors="replace")


def is_writable_dir(path: str) -> bool:
    return os.path.isdir(path) and os.access(path, os.W_OK)
