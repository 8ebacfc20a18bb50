"""What a YOLO target names, read without importing ultralytics or running the user's file.

- `ultralytics:NAME.yaml`: a model yaml, found the way ultralytics finds it (a path, else its
  own `cfg/models/**` folder, where `yolov8n.yaml` is `yolov8.yaml` at scale `n`);
- `ultralytics:NAME.pt` or `path/to/weights.pt`: weights, looked up where ultralytics looks
  (the path as given, then its `weights_dir` setting) and never downloaded;
- `path/to/file.py` that imports ultralytics and builds a `YOLO(...)`: its literal settings
  (module-level `data = ...`, `imgsz = ...`; the keyword arguments of a `.train(...)` call) and
  the weights files it names, read from the source with `ast`.
"""
from __future__ import annotations

import ast
import difflib
import importlib.util
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cvdoctor.errors import TargetError

PREFIX = "ultralytics:"
YOLO_CLASSES = {"YOLO", "RTDETR", "YOLOWorld", "YOLOE", "NAS"}
SETTING_KEYS = ("data", "imgsz", "batch", "workers", "freeze", "epochs", "device", "amp",
                "cls_remap", "single_cls", "optimizer")
# ultralytics' release asset names: a missing one is downloaded on first use (cvdoctor reports it).
_ASSET = re.compile(r"^(?:yolov?\d+[a-z0-9-]*|rtdetr-[a-z0-9]+|sam\w*|mobile_sam|FastSAM-\w)\.pt$",
                    re.I)
ASSET_URL = "https://github.com/ultralytics/assets/releases/download/v8.4.0/{name}"


@dataclass
class YoloTarget:
    text: str
    kind: str  # yaml | pt | file
    value: str  # yaml name or path, weights path (resolved when found), file path
    weights_name: str | None = None  # the .pt name as the user wrote it
    weights_found: bool = True
    weights_looked: list[str] = field(default_factory=list)
    official_asset: bool = False
    user_yaml: bool = False  # a yaml outside ultralytics' package (its nc is the user's intent)
    yaml_path: str | None = None
    file_settings: dict[str, Any] = field(default_factory=dict)  # literal module-level values
    train_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)  # .train(...) keywords
    file_weights: list[str] = field(default_factory=list)  # YOLO("...pt") literals in the file

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# --- recognising targets -------------------------------------------------------------------

def is_yolo_target(target: str) -> bool:
    if target.startswith(PREFIX):
        return True
    if target.endswith(".pt"):
        return True
    if target.endswith(".py") and os.path.isfile(target):
        return file_family(target) == "yolo"
    return False


def _imports(tree: ast.AST) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module.split(".")[0])
    return found


def _called_names(tree: ast.AST) -> set[str]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            out.add(f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute)
                    else "")
    return out


def file_family(path: str) -> str | None:
    """'yolo' or 'sam' for a model file that builds one of them, else None (a plain model file)."""
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
        return None  # the ordinary loader reports it
    imports, calls = _imports(tree), _called_names(tree)
    if "ultralytics" in imports and calls & YOLO_CLASSES:
        return "yolo"
    if "segment_anything" in imports and calls & {"SamPredictor", "sam_model_registry",
                                                  "build_sam", "build_sam_vit_b",
                                                  "build_sam_vit_l", "build_sam_vit_h"}:
        return "sam"
    if "segment_anything" in imports and any(
            (isinstance(n, ast.Subscript) and isinstance(n.value, ast.Name)
             and n.value.id == "sam_model_registry")
            or (isinstance(n, ast.Attribute) and n.attr in ("mask_decoder", "image_encoder"))
            for n in ast.walk(tree)):
        return "sam"  # a registry lookup, or code that reaches into SAM's parts (fine-tuning)
    return None


# --- model yamls ---------------------------------------------------------------------------

def ultralytics_root() -> Path | None:
    spec = importlib.util.find_spec("ultralytics")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def packaged_yamls(root: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted((root / "cfg" / "models").rglob("*.yaml"))}


def find_model_yaml(name: str, cwd: Path) -> tuple[Path, bool]:
    """(the yaml ultralytics would read for `name`, whether it is the user's own file)."""
    candidate = Path(os.path.expanduser(name))
    if not candidate.is_absolute():
        candidate = cwd / candidate
    if candidate.is_file():
        return candidate, True
    root = ultralytics_root()
    if root is None:
        raise TargetError(f"{PREFIX}{name}: ultralytics is not installed here "
                          "(pip install ultralytics); see `cvdoctor explain missing-ultralytics`")
    yamls = packaged_yamls(root)
    base = Path(name).name
    if base in yamls:
        return yamls[base], False
    unified = re.sub(r"(\d+)([nslmx])(.+)?$", r"\1\3", Path(base).stem) + Path(base).suffix
    if unified in yamls:
        return yamls[unified], False
    scales = "nslmx"
    known = sorted(set(yamls) | {re.sub(r"(\d+)(\.yaml)$", rf"\g<1>{s}\2", y)
                                 for y in yamls for s in scales if re.search(r"\d\.yaml$", y)})
    close = difflib.get_close_matches(base, known, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise TargetError(f"{PREFIX}{name}: no such model yaml here or in ultralytics' "
                      f"{root / 'cfg' / 'models'}.{hint}")


# --- weights -------------------------------------------------------------------------------

def weights_dirs(cwd: Path) -> list[Path]:
    """Where ultralytics looks for a weights file after the path itself: its `weights_dir`
    setting, or the default it writes on first use (`weights/` in the git root or the current
    directory)."""
    from cvdoctor.checkpoint.discovery import ultralytics_weights_dir
    from cvdoctor.data.yolo_yaml import _git_root

    found, _ = ultralytics_weights_dir(cwd)
    if found is not None:
        return [found]
    return [(_git_root(cwd) or cwd) / "weights"]


def locate_weights(name: str, cwd: Path) -> tuple[Path | None, list[str]]:
    p = Path(os.path.expanduser(name))
    looked = []
    first = p if p.is_absolute() else cwd / p
    looked.append(str(first))
    if first.is_file():
        return first, looked
    if not p.is_absolute():
        for d in weights_dirs(cwd):
            cand = d / p
            looked.append(str(cand))
            if cand.is_file():
                return cand, looked
    return None, looked


def asset_url(name: str) -> str | None:
    base = Path(name).name
    return ASSET_URL.format(name=base) if _ASSET.match(base) else None


# --- files ---------------------------------------------------------------------------------

def _literal(node: ast.AST) -> tuple[bool, Any]:
    try:
        return True, ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


def read_file_settings(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]], list[str]]:
    """Module-level literal settings, the keywords of `.train(...)` calls, weights literals."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    settings: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and \
                isinstance(node.targets[0], ast.Name) and node.targets[0].id in SETTING_KEYS:
            ok, value = _literal(node.value)
            if ok:
                settings[node.targets[0].id] = value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and \
                node.target.id in SETTING_KEYS and node.value is not None:
            ok, value = _literal(node.value)
            if ok:
                settings[node.target.id] = value
    train: dict[str, dict[str, Any]] = {}
    weights: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Attribute) and f.attr == "train":
            for kw in node.keywords:
                if kw.arg in SETTING_KEYS and kw.arg not in train:
                    ok, value = _literal(kw.value)
                    if ok:
                        train[kw.arg] = {"literal": value}
                    elif isinstance(kw.value, ast.Name):
                        train[kw.arg] = {"name": kw.value.id}
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
        if name in YOLO_CLASSES and node.args:
            ok, value = _literal(node.args[0])
            if ok and isinstance(value, str) and value.endswith(".pt"):
                weights.append(value)
    return settings, train, weights


def parse_target(target: str, cwd: Path | None = None) -> YoloTarget:
    cwd = Path(cwd or os.getcwd())
    if target.startswith(PREFIX):
        name = target[len(PREFIX):].strip()
        if not name:
            raise TargetError(f"{target}: give a model yaml or weights, e.g. "
                              f"{PREFIX}yolov8n.yaml")
        if name.endswith((".yaml", ".yml")):
            path, own = find_model_yaml(name, cwd)
            return YoloTarget(target, "yaml", str(path) if own else name, user_yaml=own,
                              yaml_path=str(path))
        if name.endswith(".pt"):
            return _weights_target(target, name, cwd)
        raise TargetError(f"{target}: name a model yaml (yolov8n.yaml, random weights) or a "
                          "weights file (yolov8n.pt)")
    if target.endswith(".pt"):
        return _weights_target(target, target, cwd)
    path = Path(target)
    settings, train, weights = read_file_settings(path)
    return YoloTarget(target, "file", str(path.resolve()), file_settings=settings,
                      train_kwargs=train, file_weights=weights)


def _weights_target(target: str, name: str, cwd: Path) -> YoloTarget:
    found, looked = locate_weights(name, cwd)
    official = asset_url(name) is not None
    if found is None and not official:
        raise TargetError(f"{target}: no such file (looked in {', '.join(looked)})")
    if found is not None and found.is_dir():
        raise TargetError(f"{target} is a directory, not a weights file")
    return YoloTarget(target, "pt", str(found) if found else name, weights_name=name,
                      weights_found=found is not None, weights_looked=looked,
                      official_asset=official)
