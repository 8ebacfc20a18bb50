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
from pathlib import Path
from typing import Any

import yaml

from cvdoctor.data.errors import DatasetError
from cvdoctor.data.issues import Issues
from cvdoctor.data.walk import read_text, require_regular_file

SPLITS = ("train", "val", "test")
YAML_LIMIT = 4 * 1024 ** 2
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
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: a data.yaml must be a mapping with train/val/names, "
                           f"found {type(data).__name__}")
    return data


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
        except (TypeError, ValueError):
            issues.add("yaml.nc_not_int", where, detail=f"nc: {data.get('nc')!r} is not an integer")
            nc = None
    if names is None:
        if nc is None:
            issues.add("yaml.no_names", where, detail="neither 'names' nor 'nc' is given")
            return None
        return [f"class_{i}" for i in range(nc)]
    if isinstance(names, dict):
        try:
            by_id = {int(k): str(v) for k, v in names.items()}
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
        names_list = [by_id[i] for i in range(n)]
    else:
        names_list = [str(x) for x in names]
        if not names_list:
            issues.add("yaml.no_names", where, detail="'names' is empty")
            return None
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
        resolved, missing, alt = [], [], []
        for entry in entries:
            entry = str(entry)
            target = _split_path(root, entry)
            resolved.append(str(target))
            if not target.exists():
                missing.append(str(target))
            if yaml_relative is not None:
                alt.append(str(_split_path(yaml_relative, entry)))
        splits[key] = {"raw": value, "paths": resolved, "missing": missing,
                       "yaml_relative_paths": alt}
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
