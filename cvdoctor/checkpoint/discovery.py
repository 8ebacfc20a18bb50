"""Where checkpoints live on a machine: the working directory (one level down), the folders the
user names, torch.hub's cache and ultralytics' weights folder; computed without importing torch
or ultralytics."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Iterable

EXTENSIONS = (".pt", ".pth", ".ckpt", ".safetensors", ".bin")
MAX_FILES = 200  # keep discovery cheap in a directory full of runs
SKIP_DIRS = {"__pycache__", "node_modules", "site-packages"}


def torch_hub_checkpoints_dir() -> Path:
    """torch.hub.get_dir()/checkpoints, computed the way torch does, without importing torch."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "torch")
    return Path(os.path.expanduser(torch_home)) / "hub" / "checkpoints"


def ultralytics_config_dirs() -> list[Path]:
    if os.environ.get("YOLO_CONFIG_DIR"):
        return [Path(os.path.expanduser(os.environ["YOLO_CONFIG_DIR"]))]
    dirs = []
    if os.environ.get("XDG_CONFIG_HOME"):
        dirs.append(Path(os.environ["XDG_CONFIG_HOME"]) / "Ultralytics")
    dirs.append(Path.home() / ".config" / "Ultralytics")
    return list(dict.fromkeys(dirs))


def ultralytics_weights_dir(cwd: Path) -> tuple[Path | None, str | None]:
    """`weights_dir` from ultralytics' settings file, and which file said so."""
    for cfg in ultralytics_config_dirs():
        for fname in ("settings.json", "settings.yaml"):
            f = cfg / fname
            try:
                text = f.read_text(encoding="utf-8")
            except OSError:
                continue
            value = None
            if fname.endswith(".json"):
                try:
                    value = json.loads(text).get("weights_dir")
                except (ValueError, AttributeError):
                    value = None
            else:
                m = re.search(r"^weights_dir:\s*['\"]?(.*?)['\"]?\s*$", text, re.M)
                value = m.group(1) if m else None
            if isinstance(value, str) and value:
                p = Path(os.path.expanduser(value))
                return (p if p.is_absolute() else cwd / p), str(f)
    return None, None


def ultralytics_settings_note() -> str:
    """Where ultralytics' settings were looked for, when none was found (YOLO then downloads
    its weights into the current directory, which is searched anyway)."""
    return "no weights_dir in " + ", ".join(str(d / "settings.json")
                                             for d in ultralytics_config_dirs())


def search_places(cwd: Path, checkpoint_dirs: Iterable[Path]) -> list[dict[str, Any]]:
    """Each place: where, why, and how deep to look. The cwd and given dirs go one level down."""
    cwd = Path(cwd)
    places = [{"place": "cwd", "path": str(cwd), "depth": 1}]
    for d in checkpoint_dirs:
        places.append({"place": "checkpoint_dir", "path": str(Path(d)), "depth": 1})
    places.append({"place": "torch_hub", "path": str(torch_hub_checkpoints_dir()), "depth": 0})
    weights, settings = ultralytics_weights_dir(cwd)
    if weights is not None:
        places.append({"place": "ultralytics", "path": str(weights), "depth": 0,
                       "settings": settings})
    for p in places:
        p["exists"] = Path(p["path"]).is_dir()
    return places


def discover(places: list[dict[str, Any]]) -> tuple[list[tuple[Path, str]], bool]:
    """Checkpoint-named files in the places, each real file once; (files, capped)."""
    found: list[tuple[Path, str]] = []
    seen: set[str] = set()

    def visit(d: Path, place: str, depth: int) -> None:
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError:
            return
        subdirs = []
        for e in entries:
            if len(found) >= MAX_FILES:
                return
            try:
                is_dir = e.is_dir()
            except OSError:
                continue
            if is_dir:
                if depth > 0 and not e.name.startswith(".") and e.name not in SKIP_DIRS:
                    subdirs.append(Path(e.path))
                continue
            if not e.name.lower().endswith(EXTENSIONS):
                continue
            key = os.path.realpath(e.path)
            if key in seen:
                continue
            seen.add(key)
            found.append((Path(e.path), place))
        for sub in subdirs:
            visit(sub, place, depth - 1)

    for p in places:
        if p["exists"]:
            visit(Path(p["path"]), p["place"], p["depth"])
    return found, len(found) >= MAX_FILES
