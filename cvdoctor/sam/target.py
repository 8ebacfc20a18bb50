"""What a SAM target names, read from its text and its source without running it.

- `segment_anything:vit_b|vit_l|vit_h` (with `--checkpoint FILE`): a model type;
- a Python file that sets SAM up the guide's way: `model_type = "vit_b"`, `checkpoint = "..."`,
  `sam = sam_model_registry[model_type](checkpoint=checkpoint)`, `SamPredictor(sam)`, optional
  `get_image()` and `get_prompts()`, optional `training_step` for mask-decoder fine-tuning.

From the source (`ast`): the model type and checkpoint path, registry calls without a checkpoint,
the `set_image` calls and whether their image comes from `cv2.imread` without a conversion to RGB
(OpenCV reads BGR; `set_image` assumes RGB unless told `image_format="BGR"`), the literal
prompts of `predict(...)` calls, and hints that the image encoder is meant to be frozen.
"""
from __future__ import annotations

import ast
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cvdoctor.errors import TargetError

PREFIX = "segment_anything:"
MODEL_TYPES = ("vit_b", "vit_l", "vit_h")
REGISTRY_ALIASES = {"default": "vit_h"}
CHECKPOINT_NAMES = ("checkpoint", "sam_checkpoint", "checkpoint_path", "ckpt", "ckpt_path",
                    "CHECKPOINT", "SAM_CHECKPOINT", "weights")
BUILDERS = {"build_sam": "vit_h", "build_sam_vit_h": "vit_h", "build_sam_vit_l": "vit_l",
            "build_sam_vit_b": "vit_b"}
PROMPT_KEYS = ("point_coords", "point_labels", "box", "mask_input", "multimask_output")


def is_sam_target(target: str) -> bool:
    if target.startswith(PREFIX):
        return True
    if target.endswith(".py") and os.path.isfile(target):
        from cvdoctor.yolo.target import file_family

        return file_family(target) == "sam"
    return False


@dataclass
class SetImageCall:
    line: int
    image_format: str | None  # the literal, None when not given (RGB), "?" when not a literal
    source: str | None  # "bgr" | "rgb" | None (unknown) for the image argument


@dataclass
class SamSource:
    """What the file's source says (every field optional)."""

    model_type: str | None = None
    checkpoint: str | None = None  # as written (relative paths resolve against the cwd)
    checkpoint_given: bool | None = None  # False: a registry call without checkpoint=
    loads_state_dict: bool = False
    set_image_calls: list[SetImageCall] = field(default_factory=list)
    get_image_source: str | None = None  # "bgr"/"rgb" when get_image() returns a known kind
    imread_lines: list[int] = field(default_factory=list)
    predict_prompts: list[dict[str, Any]] = field(default_factory=list)  # literal kwargs
    encoder_freeze_hints: list[str] = field(default_factory=list)


@dataclass
class SamTarget:
    text: str
    kind: str  # zoo | file
    model_type: str | None
    checkpoint: str | None  # resolved path (or as given when it does not exist)
    checkpoint_source: str | None  # "--checkpoint", "file", None
    path: str | None = None  # the file
    source: SamSource = field(default_factory=SamSource)


# --- the source ----------------------------------------------------------------------------

def _name_of(func: ast.AST) -> str:
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) \
        else ""


def _literal(node: ast.AST | None, env: dict[str, Any]) -> tuple[bool, Any]:
    """A literal value, `np.array(<literal>)` (as ("array", value)) or a name bound to one."""
    if node is None:
        return False, None
    if isinstance(node, ast.Name) and node.id in env:
        return True, env[node.id]
    if isinstance(node, ast.Call) and _name_of(node.func) in ("array", "asarray") and node.args:
        ok, value = _literal(node.args[0], env)
        if ok:
            dtype = next((kw.value for kw in node.keywords if kw.arg == "dtype"), None)
            return True, ("array", value, ast.unparse(dtype) if dtype is not None else None)
        return False, None
    try:
        return True, ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


def _is_imread(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and _name_of(node.func) == "imread" and (
        isinstance(node.func, ast.Name) or (isinstance(node.func, ast.Attribute)
                                            and isinstance(node.func.value, ast.Name)
                                            and node.func.value.id in ("cv2", "cv")))


def _reverses_channels(sub: ast.Subscript) -> bool:
    """x[..., ::-1], x[:, :, ::-1], x[:, :, [2, 1, 0]]."""
    sl = sub.slice
    last = sl.elts[-1] if isinstance(sl, ast.Tuple) and sl.elts else None
    if last is None:
        return False
    if isinstance(last, ast.Slice) and last.step is not None:
        ok, step = _literal(last.step, {})
        return ok and step == -1 and last.lower is None and last.upper is None
    ok, value = _literal(last, {})
    return ok and value == [2, 1, 0]


class _Colors:
    """Which names hold a BGR (cv2.imread) or RGB image, statement by statement."""

    PASS_THROUGH = {"resize", "asarray", "array", "ascontiguousarray", "copy", "astype",
                    "GaussianBlur", "copyMakeBorder"}

    def __init__(self, functions: dict[str, str | None]):
        self.functions = functions  # function name -> kind it returns

    def kind(self, node: ast.AST | None, env: dict[str, str | None]) -> str | None:
        if node is None:
            return None
        if _is_imread(node):
            return "bgr"
        if isinstance(node, ast.Name):
            return env.get(node.id)
        if isinstance(node, ast.Subscript):
            inner = self.kind(node.value, env)
            if _reverses_channels(node):
                return {"bgr": "rgb", "rgb": "bgr"}.get(inner or "", None)
            return inner if isinstance(node.slice, ast.Tuple) and \
                all(isinstance(e, ast.Slice) for e in node.slice.elts) else None
        if isinstance(node, ast.Call):
            name = _name_of(node.func)
            if name == "cvtColor" and len(node.args) >= 2:
                code = ast.unparse(node.args[1]).upper()
                if "BGR2RGB" in code:
                    return "rgb"
                if "RGB2BGR" in code:
                    return "bgr"
                return None
            if name in ("flip",) and "cv2" not in ast.unparse(node.func):
                return None
            if name in self.PASS_THROUGH:
                target = node.args[0] if node.args else (
                    node.func.value if isinstance(node.func, ast.Attribute) else None)
                return self.kind(target, env)
            if isinstance(node.func, ast.Name) and name in self.functions:
                return self.functions[name]
        return None


COMPOUND = (ast.If, ast.For, ast.AsyncFor, ast.While, ast.With, ast.AsyncWith, ast.Try)


def _scan_body(body: list[ast.stmt], colors: _Colors, out: SamSource,
               env: dict[str, str | None]) -> str | None:
    """Walk statements in order (into if/for/with/try blocks, branches one after the other);
    records set_image calls with the colour of their argument; returns the kind the body
    returns (bgr wins)."""
    returned: str | None = None
    for stmt in body:
        if isinstance(stmt, COMPOUND):
            blocks = [getattr(stmt, name, None) or [] for name in
                      ("body", "orelse", "finalbody")]
            blocks += [h.body for h in getattr(stmt, "handlers", [])]
            for block in blocks:
                kind = _scan_body(block, colors, out, env)
                returned = "bgr" if "bgr" in (kind, returned) else (kind or returned)
            continue
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for node in ast.walk(stmt):
            if isinstance(node, ast.Call) and _name_of(node.func) == "set_image" and node.args:
                fmt_node = next((kw.value for kw in node.keywords if kw.arg == "image_format"),
                                node.args[1] if len(node.args) > 1 else None)
                ok, fmt = _literal(fmt_node, {}) if fmt_node is not None else (True, None)
                out.set_image_calls.append(SetImageCall(node.lineno, fmt if ok else "?",
                                                        colors.kind(node.args[0], env)))
        if isinstance(stmt, ast.Assign):
            kind = colors.kind(stmt.value, env)
            for t in stmt.targets:
                if isinstance(t, ast.Name):
                    env[t.id] = kind
        elif isinstance(stmt, ast.Return):
            kind = colors.kind(stmt.value, env)
            returned = "bgr" if "bgr" in (kind, returned) else (kind or returned)
    return returned


def read_source(path: Path) -> SamSource:
    try:
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise TargetError(f"{path}: cannot read it ({exc})") from None
    except SyntaxError as exc:
        raise TargetError(f"{path} has a syntax error (line {exc.lineno}): {exc.msg}") from None
    out = SamSource()
    env: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and \
                isinstance(node.targets[0], ast.Name):
            ok, value = _literal(node.value, env)
            if ok:
                env[node.targets[0].id] = value
    mt = env.get("model_type")
    out.model_type = mt if isinstance(mt, str) else None
    for name in CHECKPOINT_NAMES:
        if isinstance(env.get(name), str) or (name in env and env[name] is None):
            out.checkpoint = env[name]
            out.checkpoint_given = env[name] is not None
            break
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        fname = _name_of(node.func)
        if fname == "load_state_dict":
            out.loads_state_dict = True
        if fname == "imread" and _is_imread(node):
            out.imread_lines.append(node.lineno)
        registry = isinstance(node.func, ast.Subscript) and \
            isinstance(node.func.value, ast.Name) and node.func.value.id == "sam_model_registry"
        if registry or fname in BUILDERS:
            if registry:
                ok, mt = _literal(node.func.slice, env)
                if ok and isinstance(mt, str):
                    out.model_type = REGISTRY_ALIASES.get(mt, mt)
            else:
                out.model_type = out.model_type or BUILDERS[fname]
            ck = next((kw.value for kw in node.keywords if kw.arg == "checkpoint"),
                      node.args[0] if node.args else None)
            if ck is None:
                out.checkpoint_given = False
            else:
                ok, value = _literal(ck, env)
                if ok:
                    out.checkpoint = value if isinstance(value, str) else out.checkpoint
                    out.checkpoint_given = value is not None
                elif out.checkpoint_given is None:
                    out.checkpoint_given = True  # an expression: given, value unknown
        if fname == "predict":
            prompts = {}
            for kw in node.keywords:
                if kw.arg in PROMPT_KEYS:
                    ok, value = _literal(kw.value, env)
                    if ok:
                        prompts[kw.arg] = value
            if prompts:
                prompts["_line"] = node.lineno
                out.predict_prompts.append(prompts)
        chain = ast.unparse(node.func)
        if "image_encoder" in chain and fname in ("requires_grad_", "eval"):
            ok, value = _literal(node.args[0], {}) if node.args else (True, True)
            if fname == "eval" or (ok and value is False):
                out.encoder_freeze_hints.append(f"line {node.lineno}: {chain}(...)")
    for node in ast.walk(tree):
        if isinstance(node, ast.For) and "image_encoder" in ast.unparse(node.iter):
            if "requires_grad" in ast.unparse(node):
                out.encoder_freeze_hints.append(f"line {node.lineno}: requires_grad in a loop "
                                                 "over image_encoder")
        if isinstance(node, ast.With) and "no_grad" in ast.unparse(node) and \
                "image_encoder" in ast.unparse(node):
            out.encoder_freeze_hints.append(f"line {node.lineno}: image_encoder under no_grad")
    functions: dict[str, str | None] = {}
    colors = _Colors(functions)
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    for _ in range(2):  # a function may call another one defined below it
        for fn in defs:
            functions[fn.name] = _scan_body(fn.body, colors, SamSource(), {})
    calls = SamSource()
    for fn in defs:
        _scan_body(fn.body, colors, calls, {})
    _scan_body(tree.body, colors, calls, {})
    out.set_image_calls = calls.set_image_calls
    out.get_image_source = functions.get("get_image")
    return out


# --- targets -------------------------------------------------------------------------------

def parse_target(target: str, checkpoint: str | None, cwd: Path | None = None) -> SamTarget:
    cwd = Path(cwd or os.getcwd())
    if target.startswith(PREFIX):
        name = target[len(PREFIX):].strip()
        name = REGISTRY_ALIASES.get(name, name)
        if name not in MODEL_TYPES:
            raise TargetError(f"{target}: SAM model types are {', '.join(MODEL_TYPES)}")
        path = _resolve(checkpoint, cwd) if checkpoint else None
        return SamTarget(target, "zoo", name, path, "--checkpoint" if checkpoint else None)
    path = Path(target)
    source = read_source(path)
    mt = source.model_type
    if mt is not None and REGISTRY_ALIASES.get(mt, mt) not in MODEL_TYPES:
        mt = None
    ck, how = None, None
    if checkpoint:
        ck, how = _resolve(checkpoint, cwd), "--checkpoint"
    elif source.checkpoint:
        ck, how = _resolve(source.checkpoint, cwd), "file"
    return SamTarget(target, "file", REGISTRY_ALIASES.get(mt or "", mt), ck, how,
                     str(path.resolve()), source)


def _resolve(path: str, cwd: Path) -> str:
    p = Path(os.path.expanduser(str(path)))
    return str(p if p.is_absolute() else cwd / p)
