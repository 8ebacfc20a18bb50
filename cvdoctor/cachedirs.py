"""Where libraries keep their downloads and settings, computed the way each library does it,
without importing any of them (the one place for this; facts about hubs, disks and checkpoints
all read it).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping


def _home(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("HOME") or Path.home())


def xdg_cache(environ: Mapping[str, str] = os.environ) -> Path:
    """$XDG_CACHE_HOME, else ~/.cache."""
    return Path(environ.get("XDG_CACHE_HOME") or _home(environ) / ".cache")


def cache_paths(environ: Mapping[str, str] = os.environ) -> dict[str, Path]:
    """Where huggingface_hub and torch.hub put downloads, following their own variables."""
    cache = xdg_cache(environ)
    hf_home = Path(environ.get("HF_HOME") or cache / "huggingface")
    torch_home = Path(os.path.expanduser(environ.get("TORCH_HOME") or str(cache / "torch")))
    return {
        "cache": cache,
        "hf_home": hf_home,
        "hf_hub_cache": Path(environ.get("HF_HUB_CACHE") or environ.get("HUGGINGFACE_HUB_CACHE")
                             or hf_home / "hub"),
        "torch_home": torch_home,
        "torch_hub_checkpoints": torch_home / "hub" / "checkpoints",
    }


def torch_hub_checkpoints_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """torch.hub.get_dir()/checkpoints, as torch computes it."""
    return cache_paths(environ)["torch_hub_checkpoints"]


def ultralytics_config_dirs(environ: Mapping[str, str] = os.environ) -> list[Path]:
    """Where ultralytics looks for its settings file: $YOLO_CONFIG_DIR, else the user config
    directory ($XDG_CONFIG_HOME/Ultralytics, ~/.config/Ultralytics)."""
    if environ.get("YOLO_CONFIG_DIR"):
        return [Path(os.path.expanduser(environ["YOLO_CONFIG_DIR"]))]
    dirs = []
    if environ.get("XDG_CONFIG_HOME"):
        dirs.append(Path(environ["XDG_CONFIG_HOME"]) / "Ultralytics")
    dirs.append(_home(environ) / ".config" / "Ultralytics")
    return list(dict.fromkeys(dirs))


def cvdoctor_cache_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """cvdoctor's own cache (checkpoint hashes): $XDG_CACHE_HOME/cvdoctor."""
    return xdg_cache(environ) / "cvdoctor"
