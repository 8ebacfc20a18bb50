"""Provider "hub": Hugging Face token presence, offline mode, and the model caches.

Never touches the network. A token's value is never read into the facts: only where it comes
from and its length ("set (37 characters)").
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from cvdoctor.cachedirs import cache_paths
from cvdoctor.factgraph import fact

TOKEN_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
_TRUE = {"1", "true", "yes", "on", "y"}


def token_source(environ: Mapping[str, str] = os.environ) -> dict:
    """Where a token would come from, and its length; never its value."""
    for name in TOKEN_VARIABLES:
        value = environ.get(name)
        if value:
            return {"present": True, "source": name, "length": len(value.strip())}
    paths = cache_paths(environ)
    token_file = Path(environ.get("HF_TOKEN_PATH") or paths["hf_home"] / "token")
    try:
        length = len(token_file.read_text(encoding="utf-8", errors="replace").strip())
    except OSError:
        length = 0
    if length:
        return {"present": True, "source": str(token_file), "length": length}
    return {"present": False, "source": None, "length": 0}


def _nearest_existing(path: Path) -> Path | None:
    for p in (path, *path.parents):
        if os.path.lexists(p):
            return p
    return None


def inspect_dir(path: Path, count: str) -> dict:
    """Exists, writable (or creatable), and how many cached entries it holds.

    `count` says what an entry is: 'models' counts hub repos (``models--org--name``), 'files'
    counts checkpoint files."""
    info: dict = {"path": str(path), "exists": path.is_dir(), "writable": False,
                  "entries": 0, "problem": None}
    target = path if path.exists() else _nearest_existing(path)
    if target is None:
        info["problem"] = "no existing parent directory"
    elif not target.is_dir():
        info["problem"] = f"{target} is a file, not a directory"
    elif not os.access(target, os.W_OK | os.X_OK):
        info["problem"] = (f"{target} is not writable" if target == path
                           else f"cannot create it: {target} is not writable")
    else:
        info["writable"] = True
    if info["exists"]:
        try:
            names = os.listdir(path)
        except OSError as exc:
            info["problem"] = info["problem"] or f"cannot list it: {exc.strerror}"
            names = []
        if count == "models":
            info["entries"] = sum(1 for n in names if n.startswith(("models--", "datasets--")))
        else:
            info["entries"] = sum(1 for n in names if not n.startswith("."))
    return info


def gather_hub(environ: Mapping[str, str] = os.environ) -> dict:
    paths = cache_paths(environ)
    offline = {name: environ[name] for name in OFFLINE_VARIABLES
               if environ.get(name, "").strip().lower() in _TRUE}
    return {
        "token": token_source(environ),
        "offline": bool(offline),
        "offline_variables": offline,
        "hf_hub_cache": inspect_dir(paths["hf_hub_cache"], "models"),
        "torch_hub_checkpoints": inspect_dir(paths["torch_hub_checkpoints"], "files"),
        "hf_home": str(paths["hf_home"]),
        "torch_home": str(paths["torch_home"]),
    }


@fact("hub")
def gather(ctx) -> dict:
    return gather_hub()
