"""`@pytest.mark.cvdoctor_requires(...)`: environment requirements of a test, measured cheaply.

Each requirement that is not met gives one `Unmet(reason, recipe)`: the reason states what was
measured, the recipe is the cvdoctor recipe id that explains the fix (or None when the catalog
has none). Standard library only at import time; cvdoctor is imported when a marked test runs.

- gpu=True:         cvdoctor's own env.cuda check with require_gpu (once per session: it runs the
                    torch probe in a subprocess, so the test process does not import torch for it)
- min_shm="1GiB":   capacity of /dev/shm from os.statvfs (Linux; other systems have no such limit)
- packages=[...]:   importlib.util.find_spec, without importing the package
- checkpoints=[...]: the file or directory exists, and a file is a whole, safe checkpoint by
                    `cvdoctor ckpt`'s static integrity and safety facts (never loaded);
                    relative paths are relative to the rootdir, `~` and $VARS are expanded
"""
from __future__ import annotations

import importlib.util
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

SHM_PATH = "/dev/shm"
KNOWN_KEYS = ("gpu", "min_shm", "packages", "checkpoints")

_UNITS = {"": 1, "b": 1,
          "k": 2**10, "kib": 2**10, "kb": 10**3,
          "m": 2**20, "mib": 2**20, "mb": 10**6,
          "g": 2**30, "gib": 2**30, "gb": 10**9,
          "t": 2**40, "tib": 2**40, "tb": 10**12}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(value: str | int | float) -> int:
    """Bytes in "1GiB", "512MiB", "1G" (= GiB, as Docker's --shm-size reads it), "1GB" (10**9),
    "1.5 GiB" or a plain number of bytes."""
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, (int, float)):
        return int(value)
    m = _SIZE.match(str(value))
    unit = m.group(2).lower() if m else None
    if not m or unit not in _UNITS:
        raise ValueError(f"not a size: {value!r} (use e.g. '1GiB', '512MiB', '1G' or bytes)")
    return int(float(m.group(1)) * _UNITS[unit])


def format_size(n: float) -> str:
    from cvdoctor.text import human_bytes  # imported on use: the plugin loads only stdlib

    return human_bytes(n)


@dataclass(frozen=True)
class Unmet:
    reason: str
    recipe: str | None = None

    def __str__(self) -> str:
        return f"{self.reason} (cvdoctor explain {self.recipe})" if self.recipe else self.reason


def recipe_for(error_text: str, preferred: str | None = None) -> str | None:
    """The recipe id for an error a user would see; `preferred` when the catalog has it."""
    try:
        from cvdoctor.catalog import get_recipe, match_text

        if preferred and get_recipe(preferred) is not None:
            return preferred
        matches = match_text(error_text)
    except Exception:  # noqa: BLE001 - a broken recipe must not break the user's test run
        return None
    return matches[0].recipe if matches else None


def check_gpu(cache: dict[str, Any]) -> Unmet | None:
    """Ask env.cuda with require_gpu: no usable GPU is then a `fail` with its recipe."""
    if "gpu" not in cache:
        cache["gpu"] = _measure_gpu()
    return cache["gpu"]


def _measure_gpu() -> Unmet | None:
    try:
        from cvdoctor import check_env

        report = check_env(select=["env.cuda"], require_gpu=True)
        findings = report.get_all("env.cuda")
    except Exception as exc:  # noqa: BLE001
        return Unmet(f"needs a GPU, and cvdoctor could not tell whether one is usable "
                     f"({type(exc).__name__}: {exc})")
    if not findings:
        return Unmet("needs a GPU, and cvdoctor's env.cuda check gave no answer")
    bad = [f for f in findings if f.status in ("fail", "error", "skip")]
    if not bad:
        return None
    f = bad[0]
    return Unmet(f"needs a usable GPU: {f.message}", f.recipe)


def check_shm(min_shm: Any, path: str = SHM_PATH) -> Unmet | None:
    need = parse_size(min_shm)
    if not sys.platform.startswith("linux"):
        return None  # no /dev/shm size limit to hit outside Linux
    try:
        st = os.statvfs(path)
    except OSError as exc:
        return Unmet(f"needs {format_size(need)} of shared memory, and {path} is not usable "
                     f"({exc.strerror or exc})", recipe_for("", "shm-docker-ipc"))
    size, free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
    if size >= need:
        return None
    return Unmet(f"needs {format_size(need)} of shared memory, {path} is {format_size(size)} "
                 f"({format_size(free)} free)",
                 recipe_for("RuntimeError: unable to allocate shared memory", "shm-docker-ipc"))


def _top_module(name: str) -> str:
    return name.strip().split(".")[0]


def check_packages(packages: Iterable[str] | str) -> list[Unmet]:
    if isinstance(packages, str):
        packages = [packages]
    out = []
    for name in packages:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a missing parent package raises for dotted names
            found = False
        if not found:
            out.append(Unmet(f"needs the package {name!r}, which is not importable here "
                             f"(pip install {_top_module(name)})",
                             recipe_for(f"ModuleNotFoundError: No module named "
                                        f"'{_top_module(name)}'")))
    return out


def check_checkpoints(paths: Iterable[str | os.PathLike] | str, root: Path) -> list[Unmet]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out = []
    for raw in paths:
        path = Path(os.path.expandvars(os.path.expanduser(str(raw))))
        if not path.is_absolute():
            path = root / path
        if not path.exists():
            out.append(Unmet(f"needs the checkpoint {path}, which does not exist",
                             recipe_for(f"FileNotFoundError: [Errno 2] No such file or "
                                        f"directory: '{path}'")))
        elif path.is_file():
            # The checkpoint integrity facts, statically: empty, truncated, not a checkpoint,
            # unsafe (no torch import; imported on use so the plugin stays light).
            from cvdoctor.checkpoint.records import requirement_unmet

            found = requirement_unmet(path)
            if found:
                out.append(Unmet(found[0], recipe_for("", found[1])))
    return out


def evaluate(kwargs: dict[str, Any], root: Path, gpu: Callable[[], Unmet | None]) -> list[Unmet]:
    """Every unmet requirement of one marker's keyword arguments."""
    unknown = sorted(set(kwargs) - set(KNOWN_KEYS))
    if unknown:
        raise ValueError(f"cvdoctor_requires: unknown requirement(s) {', '.join(unknown)} "
                         f"(known: {', '.join(KNOWN_KEYS)})")
    unmet: list[Unmet] = []
    if kwargs.get("gpu"):
        u = gpu()
        if u:
            unmet.append(u)
    if kwargs.get("min_shm") is not None:
        u = check_shm(kwargs["min_shm"])
        if u:
            unmet.append(u)
    if kwargs.get("packages"):
        unmet.extend(check_packages(kwargs["packages"]))
    if kwargs.get("checkpoints"):
        unmet.extend(check_checkpoints(kwargs["checkpoints"], root))
    return unmet
