"""A YOLO `data.yaml`: parsed with PyYAML, checked and resolved the way ultralytics resolves it.

ultralytics' `check_det_dataset` takes the dataset root from `path:` (or, without one, the yaml's
folder). A relative `path:` is tried against the *current directory*, and when nothing is there,
against its `datasets_dir` setting -- never against the yaml's own folder. Each split is then
`root / split` (with a fallback that drops a leading `../`). This module repeats those rules and
also says where the yaml's folder would have led, because "works from one directory, fails from
another" is how this goes wrong.
"""
from __future__ import annotations

import json
import os
import reprlib
from pathlib import Path
from typing import Any

import yaml

from cvdoctor.data.errors import DatasetError
from cvdoctor.data.issues import Issues
from cvdoctor.data.walk import read_text, require_regular_file

SPLITS = ("train", "val", "test")
REQUIRED_SPLITS = ("train", "val")  # ultralytics reads test only for `yolo val split=test`
YAML_LIMIT = 4 * 1024 ** 2
# A yaml without aliases holds fewer values and characters than its own size; past this, aliases
# (&a ... *a) multiply them: an alias bomb whose expansion takes minutes and gigabytes.
EXPANDED_LIMIT = 4 * YAML_LIMIT
MAX_CLASSES = 1_000_000  # an `nc:` past this is a typo; naming its classes would take gigabytes
_KEY_TYPES = {"path": (str,), "train": (str, list), "val": (str, list), "test": (str, list),
              "names": (list, dict)}


def load(path: str) -> dict[str, Any]:
    """The yaml as a mapping, or DatasetError naming the file and the line that broke it."""
    require_regular_file(path)
    try:
        text = read_text(path, YAML_LIMIT)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise DatasetError(f"{path}: cannot read: {reason}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise DatasetError(f"{path}: not valid YAML{at}: {problem}") from None
    except RecursionError:
        raise DatasetError(f"{path}: not valid YAML: nested too deeply to read") from None
    except ValueError as exc:  # an integer of more digits than Python converts
        raise DatasetError(f"{path}: not valid YAML: {str(exc).splitlines()[0][:200]}") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: a data.yaml must be a mapping with train/val/names, "
                           f"found {type(data).__name__}")
    for key, value in data.items():
        try:
            expanded_size(value, EXPANDED_LIMIT)
        except ValueError as exc:
            raise DatasetError(f"{path}: {short(key)}: {exc}") from None
    return data


def expanded_size(value: Any, limit: int) -> int:
    """How big `value` is with every YAML alias expanded: one per value plus the length of each
    string, counted once per place it appears. Linear in the distinct values (a shared value is
    measured once); ValueError past `limit` or for a value that contains itself."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def measure(obj: Any) -> int:
        if isinstance(obj, (str, bytes)):
            return 1 + len(obj)
        if not isinstance(obj, (list, dict)):
            return 1
        key = id(obj)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise ValueError("a YAML alias makes this value contain itself")
        active.add(key)
        items = obj.items() if isinstance(obj, dict) else ((None, v) for v in obj)
        total = 1
        for k, v in items:
            total += measure(k) + measure(v)
            if total > limit:
                raise ValueError(f"its aliases expand to more than {limit:,} values and "
                                 "characters (a YAML alias bomb); not read further")
        active.discard(key)
        sizes[key] = total
        return total

    try:
        return measure(value)
    except RecursionError:
        raise ValueError("nested too deeply to read") from None


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 60
_SHORT.maxlist = _SHORT.maxdict = _SHORT.maxtuple = 4
_SHORT.maxlevel = 1


def short(value: Any) -> str:
    """A yaml value for a message: repr, cut short (bounded for any size or nesting)."""
    return _SHORT.repr(value)


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float))  # bool is an int: ultralytics names it 'True'


def _what(value: Any) -> str:
    """'a list ([1, 2])', 'null (empty)': what a yaml value is, for a message."""
    if value is None:
        return "null (empty)"
    kind = {bool: "a boolean", int: "an integer", float: "a number", list: "a list",
            dict: "a mapping", bytes: "binary data"}.get(type(value), f"a {type(value).__name__}")
    return f"{kind} ({short(value)})"


def ultralytics_settings_dir() -> Path:
    """Where ultralytics keeps settings.json (its get_user_config_dir, without creating it)."""
    env = os.environ.get("YOLO_CONFIG_DIR")
    if env:
        return Path(env).expanduser() / "Ultralytics"
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "Ultralytics"


def _git_root(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return folder
    return None


def datasets_dir(cwd: Path) -> tuple[Path, str]:
    """ultralytics' datasets_dir and where the value came from (its settings file, or the
    default it would write on first use)."""
    settings = ultralytics_settings_dir() / "settings.json"
    try:
        value = json.loads(read_text(str(settings), 1024 ** 2)).get("datasets_dir")
        if isinstance(value, str) and value:
            return Path(value), str(settings)
    except (OSError, ValueError, AttributeError):
        pass
    root = _git_root(cwd)
    base = (root.parent if root and os.access(root.parent, os.W_OK) else (root or cwd)).resolve()
    return base / "datasets", "ultralytics' default (no settings file yet)"


def class_names(data: dict[str, Any], issues: Issues, where: str) -> list[str] | None:
    """names as a list indexed by class id (list or {id: name} form), checked against nc."""
    names, nc = data.get("names"), data.get("nc")
    if names is not None and not isinstance(names, (list, dict)):
        names = None  # reported as yaml.bad_type
    if nc is not None and not isinstance(nc, int):
        try:
            as_float = float(nc)
            if as_float != int(as_float):
                raise ValueError
            nc = int(as_float)
        except (TypeError, ValueError, OverflowError):
            issues.add("yaml.nc_not_int", where, detail=f"nc: {short(data.get('nc'))} is not an "
                                                        "integer")
            nc = None
    if nc is not None and not 1 <= nc <= MAX_CLASSES:
        issues.add("yaml.nc_not_int", where,
                   detail=f"nc: {short(nc)} is not a class count (1 to {MAX_CLASSES:,})")
        nc = None
    if names is None:
        if nc is None:
            issues.add("yaml.no_names", where, detail="neither 'names' nor 'nc' is given")
            return None
        return [f"class_{i}" for i in range(nc)]
    if isinstance(names, dict):
        try:
            by_id = {int(k): v for k, v in names.items()}
        except (TypeError, ValueError):
            issues.add("yaml.names_bad_ids", where, detail="names keys must be class ids 0..n-1")
            return None
        n = len(by_id)
        if not n:
            issues.add("yaml.no_names", where, detail="'names' is empty")
            return None
        if sorted(by_id) != list(range(n)):
            issues.add("yaml.names_bad_ids", where,
                       detail=f"{n}-class dataset needs ids 0-{n - 1}, names has ids "
                              f"{min(by_id)}-{max(by_id)}")
            return None
        raw = [by_id[i] for i in range(n)]
    else:
        raw = list(names)
        if not raw:
            issues.add("yaml.no_names", where, detail="'names' is empty")
            return None
    odd = [i for i, x in enumerate(raw) if not _scalar(x)]
    if odd:
        issues.add("yaml.names_not_scalar", where,
                   detail=f"names[{odd[0]}] is {_what(raw[odd[0]])}, not a class name"
                          + (f" ({len(odd):,} such entries)" if len(odd) > 1 else ""),
                   entries=odd[:20])
    names_list = [str(x) if _scalar(x) else f"class_{i}" for i, x in enumerate(raw)]
    if nc is not None and nc != len(names_list):
        issues.add("yaml.nc_names_mismatch", where,
                   detail=f"'names' length {len(names_list)} and 'nc: {nc}' must match")
    return names_list


def resolve(yaml_path: str, data: dict[str, Any], issues: Issues,
            cwd: str | None = None) -> dict[str, Any]:
    """Names, root and split paths exactly as ultralytics will see them, plus the yaml-relative
    alternative. Problems go to `issues` (yaml.*)."""
    where = yaml_path
    for key, types in _KEY_TYPES.items():
        if data.get(key) is not None and not isinstance(data[key], types):
            expected = " or ".join(t.__name__ for t in types)
            issues.add("yaml.bad_type", where,
                       detail=f"'{key}' must be {expected}, not {type(data[key]).__name__}")
    for key in ("train", "val"):
        if key not in data and not (key == "val" and "validation" in data):
            issues.add("yaml.missing_key", where, detail=f"'{key}:' key missing")
    names = class_names(data, issues, where)

    cwd_path = Path(cwd or os.getcwd())
    yaml_dir = _resolve(Path(yaml_path)).parent
    raw_root = data.get("path") if isinstance(data.get("path"), str) else None
    ds_dir, ds_source = datasets_dir(cwd_path)
    if raw_root:
        candidate = Path(raw_root).expanduser()
        if candidate.is_absolute():
            root, via = candidate, "absolute"
        elif (cwd_path / candidate).exists():
            root, via = _resolve(cwd_path / candidate), "current directory"
        else:
            root, via = _resolve(ds_dir / candidate), "datasets_dir"
        yaml_relative = _resolve(yaml_dir / candidate) if not candidate.is_absolute() else None
    else:
        root, via, yaml_relative = yaml_dir, "yaml folder (no 'path:')", None

    splits: dict[str, Any] = {}
    for key in SPLITS:
        value = data.get(key if key != "val" or "val" in data else "validation")
        if not value or not isinstance(value, (str, list)):
            continue
        entries = value if isinstance(value, list) else [value]
        bad = [i for i, e in enumerate(entries) if not isinstance(e, str)]
        if bad:
            issues.add("yaml.bad_type", where,
                       detail=f"'{key}' entry {bad[0] + 1} is {_what(entries[bad[0]])}, not a "
                              "path")
        resolved, missing, alt = [], [], []
        for entry in entries:
            if not isinstance(entry, str):
                continue  # ultralytics raises TypeError on it: reported as yaml.bad_type
            target = _split_path(root, entry)
            resolved.append(str(target))
            if not target.exists():
                missing.append(str(target))
            if yaml_relative is not None:
                alt.append(str(_split_path(yaml_relative, entry)))
        raw = value if isinstance(value, str) else [e for e in entries if isinstance(e, str)]
        splits[key] = {"raw": raw, "paths": resolved, "missing": missing,
                       "yaml_relative_paths": alt}
        if key not in REQUIRED_SPLITS:
            continue  # a test split that is not there is said in the pass message, no more
        for m in missing:
            issues.add("yaml.split_missing", where,
                       detail=f"'{key}:' resolves to {m}, which does not exist", split=key)

    kpt_shape = data.get("kpt_shape")
    return {
        "yaml": str(Path(yaml_path).resolve()),
        "names": names,
        "nc": len(names) if names is not None else None,
        "kpt_shape": kpt_shape,
        "root": {"raw": raw_root, "resolved": str(root), "via": via, "exists": root.exists(),
                 "cwd": str(cwd_path), "datasets_dir": str(ds_dir),
                 "datasets_dir_source": ds_source,
                 "yaml_relative": str(yaml_relative) if yaml_relative else None,
                 "yaml_relative_exists": bool(yaml_relative and yaml_relative.exists())},
        "splits": splits,
    }


def _resolve(path: Path) -> Path:
    """Path.resolve(), except that a symlink loop gives the absolute path instead of raising
    (ultralytics itself would crash on it; here the split is then reported missing)."""
    try:
        return path.resolve()
    except (RuntimeError, OSError):
        return Path(os.path.abspath(path))


def _split_path(root: Path, entry: str) -> Path:
    target = _resolve(root / entry)
    if not target.exists() and entry.startswith("../"):
        target = _resolve(root / entry[3:])
    return target


def pose_shape(kpt_shape: Any) -> tuple[int, int] | None:
    """(keypoints, dims) when kpt_shape is valid for ultralytics, else None."""
    if (isinstance(kpt_shape, (list, tuple)) and len(kpt_shape) == 2
            and all(isinstance(v, int) for v in kpt_shape)
            and kpt_shape[0] > 0 and kpt_shape[1] in (2, 3)):
        return int(kpt_shape[0]), int(kpt_shape[1])
    return None
