"""Fact provider ``checkpoints``: find checkpoint files and say what each one really is.

Everything here reads bytes; nothing unpickles. Discovery looks in the current directory (and one
level below it), every ``--checkpoints DIR``, the torch hub cache and the ultralytics weights
folder. Each file is identified from its first bytes (zip, legacy torch pickle, plain pickle,
safetensors, HTML/XML error page, Git-LFS pointer, empty), checked for structural completeness
(zip end-of-central-directory record, safetensors header vs. file size, pickle STOP opcode), its
pickle globals are listed with ``pickletools`` and sorted against an allow-list, known names are
compared with their expected size and the hash prefix in the file name (full hashing only under
``--deep``, cached by path, size and mtime), and only files whose globals are all plain data are
handed to ``torch.load(weights_only=True)`` in the ``checkpoint_probe`` subprocess.

The check (``checks/env_checkpoints.py``) turns these facts into verdicts; the facts stay plain
data so they can be recorded and replayed.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickletools
import re
import struct
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

from cvdoctor.facts import EnvOptions, provider

EXTENSIONS = (".pt", ".pth", ".ckpt", ".safetensors", ".bin")
LOAD_LIMIT_BYTES = 512 * 1024 ** 2  # probe-load files up to this size by default; all under --deep
MAX_FILES = 200  # keep discovery cheap in a directory full of runs
PICKLE_READ_LIMIT = 64 * 1024 ** 2  # data.pkl of a pickled full model is KiBs to a few MiB
_SKIP_DIRS = {"__pycache__", "node_modules", "site-packages"}

# --- known checkpoints -------------------------------------------------------------------------

SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/{name}"
# The hex suffix of SAM's names is the first 6 digits of the file's MD5.
SAM_CHECKPOINTS = {
    "sam_vit_h_4b8939.pth": ("vit_h", 2564550879),
    "sam_vit_l_0b3195.pth": ("vit_l", 1249524607),
    "sam_vit_b_01ec64.pth": ("vit_b", 375042383),
}
# Approximate sizes of ultralytics' YOLOv8 detection weights (they are re-saved between releases,
# so only a range is meaningful): n ~6.2 MB, s ~21.5 MB, m ~49.7 MB, l ~83.7 MB, x ~130.5 MB.
YOLOV8_SIZE_RANGES = {
    "n": (4_500_000, 8_500_000),
    "s": (17_000_000, 27_000_000),
    "m": (40_000_000, 62_000_000),
    "l": (68_000_000, 105_000_000),
    "x": (110_000_000, 165_000_000),
}
_YOLOV8 = re.compile(r"^yolov8([nsmlx])\.pt$")
# torch.hub's check_hash convention: "<name>-<first hex digits of the SHA-256>.<ext>";
# torchvision uses 8 digits (resnet18-f37072fd.pth).
_HUB_NAME = re.compile(r"^(?P<stem>.+)-(?P<hash>[0-9a-f]{8,64})\.(?:pth|pt)$")


def identify_name(name: str, place: str) -> dict[str, Any] | None:
    """What the file name promises: family, expected size, hash prefix and algorithm."""
    if name in SAM_CHECKPOINTS:
        variant, size = SAM_CHECKPOINTS[name]
        return {"family": "sam", "variant": variant, "expected_size": size,
                "hash_algo": "md5", "hash_prefix": name.rsplit("_", 1)[1].split(".")[0],
                "url": SAM_URL.format(name=name)}
    m = _YOLOV8.match(name)
    if m:
        return {"family": "yolov8", "variant": m.group(1),
                "size_range": list(YOLOV8_SIZE_RANGES[m.group(1)]), "size_is_approximate": True}
    m = _HUB_NAME.match(name)
    if m:
        return {"family": "torch_hub", "variant": m.group("stem"), "hash_algo": "sha256",
                "hash_prefix": m.group("hash"), "in_hub_cache": place == "torch_hub"}
    return None


# --- where to look -----------------------------------------------------------------------------

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


def search_places(options: EnvOptions) -> list[dict[str, Any]]:
    """Each place: where, why, and how deep to look. The cwd and given dirs go one level down."""
    cwd = Path(options.cwd)
    places = [{"place": "cwd", "path": str(cwd), "depth": 1}]
    for d in options.checkpoint_dirs:
        places.append({"place": "checkpoint_dir", "path": str(Path(d)), "depth": 1})
    places.append({"place": "torch_hub", "path": str(torch_hub_checkpoints_dir()), "depth": 0})
    weights, settings = ultralytics_weights_dir(cwd)
    if weights is not None:
        places.append({"place": "ultralytics", "path": str(weights), "depth": 0,
                       "settings": settings})
    for p in places:
        p["exists"] = Path(p["path"]).is_dir()
    return places


def ultralytics_settings_note() -> str:
    """Where ultralytics' settings were looked for, when none was found (YOLO then downloads
    its weights into the current directory, which is searched anyway)."""
    return "no weights_dir in " + ", ".join(str(d / "settings.json")
                                             for d in ultralytics_config_dirs())


def discover(places: list[dict[str, Any]]) -> tuple[list[tuple[Path, str]], bool]:
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
                if depth > 0 and not e.name.startswith(".") and e.name not in _SKIP_DIRS:
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


# --- what the bytes are ------------------------------------------------------------------------

TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LFS = b"version https://git-lfs.github.com/spec/v1"


def sniff(head: bytes, size: int) -> str:
    """Kind of file from its first bytes."""
    if size == 0:
        return "empty"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if head.startswith(_LFS):
        return "lfs-pointer"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "html"
    if text.startswith(b"<?xml") or text.startswith(b"<error"):
        return "xml"
    if len(head) >= 10:
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n <= size - 8 and head[8:9] == b"{":
            return "safetensors"
    try:
        decoded = head[:512].decode("utf-8")
    except UnicodeDecodeError:
        return "unknown"
    if all(c.isprintable() or c in "\r\n\t" for c in decoded):
        return "text"
    return "unknown"


def _parse_eocd(f: BinaryIO, size: int) -> dict[str, Any] | None:
    """The zip end-of-central-directory record; a truncated zip lacks it."""
    tail_len = min(size, 65536 + 22)
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    pos = tail.rfind(b"PK\x05\x06")
    if pos < 0 or len(tail) - pos < 22:
        return None
    _, _, _, _, entries, cd_size, cd_offset, _ = struct.unpack("<4sHHHHIIH", tail[pos:pos + 22])
    eocd_at = size - tail_len + pos
    if 0xFFFFFFFF in (cd_size, cd_offset) or entries == 0xFFFF:
        loc = tail[pos - 20:pos] if pos >= 20 else b""
        if not loc.startswith(b"PK\x06\x07"):
            return None
        (z64_at,) = struct.unpack("<Q", loc[8:16])
        f.seek(z64_at)
        rec = f.read(56)
        if len(rec) < 56 or not rec.startswith(b"PK\x06\x06"):
            return None
        entries, cd_size, cd_offset = struct.unpack("<QQQ", rec[32:56])
    return {"entries": entries, "cd_offset": cd_offset, "cd_size": cd_size, "at": eocd_at}


def inspect_zip(path: Path, size: int) -> dict[str, Any]:
    out: dict[str, Any] = {"eocd": False, "complete": False}
    with open(path, "rb") as f:
        eocd = _parse_eocd(f, size)
    if eocd is None:
        out["problem"] = "no end-of-central-directory record: the file stops before its end"
        return out
    out["eocd"] = True
    if eocd["cd_offset"] + eocd["cd_size"] > size:
        out["problem"] = (f"central directory claims bytes up to {eocd['cd_offset'] + eocd['cd_size']}"
                          f" but the file has {size}")
        return out
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        out["problem"] = f"zip central directory unreadable: {exc}"
        return out
    with zf:
        infos = zf.infolist()
        out["members"] = len(infos)
        end = max((i.header_offset + i.compress_size for i in infos), default=0)
        if end > eocd["cd_offset"]:
            out["problem"] = "a member's data runs past the start of the central directory"
            return out
        out["complete"] = True
        names = [i.filename for i in infos]
        pkls = [n for n in names if n.count("/") == 1 and n.endswith("/data.pkl")]
        out["not_in_subdirectory"] = [n for n in names if "/" not in n][:5]
        if any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names):
            # TorchScript: its pickles name __torch__ classes that torch.jit.load resolves from
            # the archive's own TorchScript code; Python's unpickler never sees them.
            out["format"] = "torchscript"
            out["pickles"] = []
        elif pkls:
            out["format"] = "torch-zip"
            out["data_pkl"] = pkls[0]
            out["pickles"] = [pkls[0]]
        else:
            out["format"] = "plain-zip"
            out["pickles"] = []
        out["version"] = _read_member(zf, names, "/version")
        if out["pickles"]:
            out["pickle"] = merge_scans([scan_pickle(_read_pickle_member(zf, n))
                                         for n in out["pickles"]])
    return out


def _read_member(zf: zipfile.ZipFile, names: list[str], suffix: str) -> str | None:
    for n in names:
        if n.endswith(suffix) and n.count("/") == 1:
            try:
                return zf.read(n)[:32].decode("ascii", "replace").strip()
            except (OSError, zipfile.BadZipFile, ValueError):
                return None
    return None


def _read_pickle_member(zf: zipfile.ZipFile, name: str) -> BinaryIO:
    with zf.open(name) as m:
        return io.BytesIO(m.read(PICKLE_READ_LIMIT))


def inspect_safetensors(path: Path, size: int) -> dict[str, Any]:
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > min(size - 8, 100 * 1024 ** 2):
            return {"complete": False, "problem": f"header length {n} exceeds the file"}
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
        tensors = {k: v for k, v in header.items() if k != "__metadata__"}
        data_end = max((int(v["data_offsets"][1]) for v in tensors.values()), default=0)
    except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError) as exc:
        return {"complete": False, "malformed": True, "problem": f"header is not valid: {exc}"}
    have = size - 8 - n
    out = {"header_len": n, "tensors": len(tensors), "data_bytes": data_end, "complete": True}
    if data_end > have:
        out.update(complete=False,
                   problem=f"tensor data ends at byte {data_end} but only {have} bytes follow the header")
    elif data_end < have:
        out["trailing_bytes"] = have - data_end
    return out


def inspect_pickle(path: Path) -> dict[str, Any]:
    """A pickle stream: legacy torch.save (magic number, then four more pickles) or plain."""
    with open(path, "rb") as f:
        first = scan_pickle(f, want_first_value=True)
        if first.get("first_value") == TORCH_LEGACY_MAGIC and not first.get("problem"):
            scans = [first] + [scan_pickle(f) for _ in range(4)]  # version, sys_info, obj, keys
            return {"format": "torch-legacy", "pickle": merge_scans(scans)}
    return {"format": "plain-pickle", "pickle": merge_scans([first])}


_PROTO0_START = {b"(", b"]", b"}", b"c", b"I", b"S", b"V", b"N", b"l", b"d"}


def _is_pickle(path: Path) -> bool:
    with open(path, "rb") as f:
        scan = scan_pickle(f)
    return not scan.get("problem")


def read_lfs_pointer(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        text = f.read(1024).decode("utf-8", "replace")
    out: dict[str, Any] = {}
    m = re.search(r"^oid sha256:([0-9a-f]{64})", text, re.M)
    if m:
        out["oid_sha256"] = m.group(1)
    m = re.search(r"^size (\d+)", text, re.M)
    if m:
        out["size"] = int(m.group(1))
    return out


# --- pickle globals, listed without executing them ---------------------------------------------

# Globals torch's weights_only unpickler accepts by default (torch/_weights_only_unpickler.py,
# _get_allowed_globals), plus plain-data types torch refuses but that run no code (numpy arrays,
# slices): those still go to the probe, and torch's own refusal becomes `checkpoint-load-failed`.
_ALLOWED_EXACT = {
    "collections.OrderedDict", "collections.Counter", "torch.nn.parameter.Parameter",
    "torch.serialization._get_layout", "torch.Size", "torch.Tensor", "torch.device",
    "torch._tensor._rebuild_from_type_v2", "_codecs.encode",
    "builtins.bytearray", "builtins.set", "builtins.frozenset", "builtins.complex",
    "builtins.slice", "builtins.range",
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar", "numpy.ndarray",
    "numpy.dtype",
}
_DTYPE = (r"u?int\d*|float\d*(?:_e\d+m\d+\w*)?|bfloat16|complex\d*|c?half|cfloat|cdouble|chalf"
          r"|double|short|long|bool|q(?:u)?int\d+(?:x\d+)?|bits\w+|float4_e2m1fn_x2")
_ALLOWED_RE = re.compile(
    r"^torch\.(?:_utils\._rebuild_\w+"
    r"|(?:cuda\.|sparse\.)?[A-Z]\w*Storage|storage\.(?:Typed|Untyped)Storage"
    r"|(?:cuda\.|sparse\.)?[A-Z]\w*Tensor"
    r"|per_(?:tensor|channel)_\w+"
    rf"|(?:{_DTYPE}))$"
    r"|^numpy\.dtypes\.\w+DType$")
# Code-execution primitives: anything here means a payload, whatever else the file holds.
_DENIED_MODULES = (
    "os", "posix", "nt", "posixpath", "ntpath", "subprocess", "sys", "shutil", "importlib",
    "runpy", "pty", "socket", "ctypes", "pickle", "_pickle", "marshal", "types", "code", "codeop",
    "webbrowser", "pathlib", "io", "_io", "tempfile", "glob", "multiprocessing", "threading",
    "_thread", "signal", "asyncio", "urllib", "http", "requests", "timeit", "pdb", "bdb",
    "profile", "cProfile", "trace", "doctest", "platform", "commands", "popen2", "operator",
    "_operator", "functools", "_functools", "inspect", "ast", "dill", "cloudpickle", "joblib",
    "numpy.testing", "numpy.f2py", "numpy.distutils", "setuptools", "distutils", "pip", "site",
    "torch.hub", "torch.jit", "torch.package", "torch.ops", "torch._ops", "torch._C",
    "torch.classes", "torch.utils.cpp_extension", "torch.fx", "torch._dynamo", "torch._inductor",
    "torch.serialization", "torch.storage", "torch.multiprocessing", "torch.distributed",
)
_DENIED_EXACT = {"torch.load", "torch.save", "torch.compile", "torch.from_file", "numpy.load",
                 "numpy.fromfile", "numpy.loadtxt", "numpy.genfromtxt", "numpy.save"}
# Harmless constructors inside otherwise denied modules (ultralytics saves paths in train_args).
_BENIGN_IN_DENIED = {"pathlib.Path", "pathlib.PosixPath", "pathlib.WindowsPath",
                     "pathlib.PurePath", "pathlib.PurePosixPath", "pathlib.PureWindowsPath",
                     "types.SimpleNamespace"}
_BUILTIN_DATA = {"set", "frozenset", "slice", "complex", "bytearray", "bytes", "dict", "list",
                 "tuple", "int", "float", "str", "bool", "range", "object"}
# Libraries whose classes show up in whole-model pickles (torch.save(model), ultralytics .pt).
_LIBRARY_MODULES = ("torch", "torchvision", "timm", "ultralytics", "segment_anything",
                    "collections", "copyreg", "argparse", "datetime", "decimal", "fractions",
                    "uuid", "enum", "numpy", "pathlib", "types")
_PY2 = {"__builtin__": "builtins", "copy_reg": "copyreg", "_codecs": "_codecs"}


def _in(module: str, prefixes) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def classify_global(ref: str) -> str:
    """'allowed' (plain data), 'library' (a known library's class: needs trust to load),
    'denied' (a code-execution primitive) or 'foreign' (code cvdoctor does not know)."""
    if ref.startswith("<"):
        return "denied"  # unresolvable STACK_GLOBAL or an extension-registry code
    if ref in _ALLOWED_EXACT or _ALLOWED_RE.match(ref):
        return "allowed"
    module, _, name = ref.rpartition(".")
    if module == "builtins":
        return "library" if name in _BUILTIN_DATA else "denied"
    if ref in _BENIGN_IN_DENIED or ref == "torch.storage._load_from_bytes":
        return "library"
    # A qualified name ("pathlib.Path.touch") reaches an attribute: every dotted prefix counts.
    if ref in _DENIED_EXACT or _in(module, _DENIED_MODULES):
        return "denied"
    if _in(module, _LIBRARY_MODULES):
        return "library"
    return "foreign"


_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING",
               "BINSTRING", "STRING"}
_STACK_NEUTRAL = {"MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT", "FRAME", "PROTO"}
_GET_OPS = {"GET", "BINGET", "LONG_BINGET"}
_OTHER = object()


def _global_name(module: str, name: str) -> str:
    module = _PY2.get(module, module)
    return f"{module}.{name}"


def _scan_nested_torch_bytes(blob: bytes, depth: int) -> list[str]:
    """Globals inside a torch.save blob embedded in a pickle: pickling a tensor with plain
    pickle stores its storage as torch.save bytes that torch.storage._load_from_bytes loads with
    weights_only=False, so a payload could hide there."""
    try:
        if blob.startswith(b"PK\x03\x04"):
            with zipfile.ZipFile(io.BytesIO(blob)) as zf:
                names = [n for n in zf.namelist() if n.endswith("/data.pkl")]
                scans = [scan_pickle(io.BytesIO(zf.read(n)), depth=depth + 1) for n in names]
        else:
            f = io.BytesIO(blob)
            scans = [scan_pickle(f, depth=depth + 1) for _ in range(5)]
    except (zipfile.BadZipFile, OSError, ValueError):
        return ["<unreadable nested torch data>"]
    if any(sc.get("problem") for sc in scans):
        return ["<unreadable nested torch data>"]
    return [g for sc in scans for g in sc.get("globals", [])]


_NESTED_MAGIC = (b"PK\x03\x04", b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19")


def scan_pickle(stream: BinaryIO, want_first_value: bool = False,
                depth: int = 0) -> dict[str, Any]:
    """Globals one pickle references, from its opcodes alone (pickletools.genops executes
    nothing). STACK_GLOBAL takes its names from the stack, so string pushes and the memo are
    tracked; anything this cannot resolve is reported as '<unresolved STACK_GLOBAL>' (denied)."""
    refs: set[str] = set()
    recent: list[Any] = []
    memo: dict[int, Any] = {}
    out: dict[str, Any] = {}
    ops = 0
    try:
        for op, arg, _pos in pickletools.genops(stream):
            ops += 1
            name = op.name
            if ops == 2 and want_first_value:
                out["first_value"] = arg if isinstance(arg, int) else None
            if name in _STRING_OPS:
                recent.append(arg if isinstance(arg, str) else _OTHER)
            elif name in _STACK_NEUTRAL:
                if name == "MEMOIZE":
                    memo[len(memo)] = recent[-1] if recent else _OTHER
                elif name != "FRAME" and name != "PROTO":
                    memo[arg] = recent[-1] if recent else _OTHER
            elif name in _GET_OPS:
                recent.append(memo.get(arg, _OTHER))
            elif name in ("GLOBAL", "INST"):
                module, _, attr = str(arg).partition(" ")
                refs.add(_global_name(module, attr))
                recent.append(_OTHER)
            elif name == "STACK_GLOBAL":
                if len(recent) >= 2 and isinstance(recent[-2], str) and isinstance(recent[-1], str):
                    refs.add(_global_name(recent[-2], recent[-1]))
                else:
                    refs.add("<unresolved STACK_GLOBAL>")
                recent.append(_OTHER)
            elif name in ("BINBYTES", "SHORT_BINBYTES", "BINBYTES8") and \
                    isinstance(arg, bytes) and arg.startswith(_NESTED_MAGIC):
                refs.update(_scan_nested_torch_bytes(arg, depth) if depth < 2
                            else ["<nested torch data too deep>"])
                recent.append(_OTHER)
            elif name in ("EXT1", "EXT2", "EXT4"):
                refs.add(f"<extension code {arg}>")
                recent.append(_OTHER)
            else:
                recent.append(_OTHER)
            if len(recent) > 64:
                del recent[:32]
            if name == "STOP":
                break
        else:
            out["problem"] = "pickle stream ends before its STOP opcode"
    except ValueError as exc:
        out["problem"] = f"pickle stream ends or breaks before its STOP opcode: {exc}"
    if ops == 0:
        out["problem"] = "no pickle data"
    out["globals"] = sorted(refs)
    return out


def merge_scans(scans: list[dict[str, Any]]) -> dict[str, Any]:
    refs = sorted({r for s in scans for r in s.get("globals", [])})
    by_class: dict[str, list[str]] = {"allowed": [], "library": [], "foreign": [], "denied": []}
    for r in refs:
        by_class[classify_global(r)].append(r)
    problems = [s["problem"] for s in scans if s.get("problem")]
    out: dict[str, Any] = {"globals": refs, **by_class}
    if problems:
        out["problem"] = problems[0]
    return out


# --- hashes, cached ----------------------------------------------------------------------------

def cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cvdoctor" / "checkpoint-hashes.json"


def _load_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_cache(path: Path, data: dict[str, Any]) -> str | None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {k: v for k, v in data.items() if os.path.exists(k)}  # forget deleted files
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
        return None
    except OSError as exc:
        return f"hash cache not written: {exc}"


def file_digests(path: Path) -> dict[str, str]:
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(4 * 1024 ** 2), b""):
            md5.update(block)
            sha.update(block)
    return {"md5": md5.hexdigest(), "sha256": sha.hexdigest()}


# --- one file ----------------------------------------------------------------------------------

def inspect_file(path: Path, place: str) -> dict[str, Any]:
    rec: dict[str, Any] = {"path": str(path), "name": path.name, "place": place}
    known = identify_name(path.name, place)
    if known:
        rec["known"] = known
    try:
        st = path.stat()
    except OSError as exc:
        rec.update(kind="missing", size=None, error=f"{type(exc).__name__}: {exc}")
        return rec
    rec["size"], rec["mtime_ns"] = st.st_size, st.st_mtime_ns
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as exc:
        rec.update(kind="unreadable", error=f"{type(exc).__name__}: {exc}")
        return rec
    rec["first_bytes"] = head[:16].hex()
    kind = sniff(head, st.st_size)
    if kind in ("text", "unknown") and head[:1] in _PROTO0_START and _is_pickle(path):
        kind = "pickle"  # protocol 0/1 pickles are ASCII-looking
    rec["kind"] = kind
    try:
        if kind == "zip":
            rec["zip"] = inspect_zip(path, st.st_size)
            if "pickle" in rec["zip"]:
                rec["pickle"] = rec["zip"].pop("pickle")
        elif kind == "pickle":
            info = inspect_pickle(path)
            rec["format"], rec["pickle"] = info["format"], info["pickle"]
        elif kind == "safetensors":
            rec["safetensors"] = inspect_safetensors(path, st.st_size)
        elif kind == "lfs-pointer":
            rec["lfs"] = read_lfs_pointer(path)
        elif kind in ("html", "xml", "text"):
            rec["text_head"] = head[:160].decode("utf-8", "replace")
    except OSError as exc:
        rec["error"] = f"{type(exc).__name__}: {exc}"
    return rec


def is_loadable(rec: dict[str, Any]) -> bool:
    """Only intact files whose every pickle global is plain data ever reach torch.load."""
    if rec.get("kind") == "zip":
        z = rec.get("zip", {})
        if not z.get("complete") or z.get("format") != "torch-zip":
            return False
    elif rec.get("kind") == "pickle":
        if rec.get("format") != "torch-legacy":
            return False
    elif rec.get("kind") == "safetensors":
        return bool(rec.get("safetensors", {}).get("complete"))
    else:
        return False
    p = rec.get("pickle") or {}
    return not p.get("problem") and not (p.get("library") or p.get("foreign") or p.get("denied"))


def _attach_hashes(files: list[dict[str, Any]], deep: bool) -> str | None:
    cpath = cache_file()
    cache = _load_cache(cpath)
    dirty = False
    for rec in files:
        known = rec.get("known") or {}
        if not known.get("hash_algo") or rec.get("size") in (None, 0) or "mtime_ns" not in rec:
            continue
        key = os.path.realpath(rec["path"])
        hit = cache.get(key)
        if isinstance(hit, dict) and hit.get("size") == rec["size"] \
                and hit.get("mtime_ns") == rec["mtime_ns"]:
            rec["hash"] = {"algo": known["hash_algo"], "hexdigest": hit.get(known["hash_algo"]),
                           "source": "cache"}
        elif deep:
            try:
                digests = file_digests(Path(rec["path"]))
            except OSError as exc:
                rec["hash_skipped"] = f"not readable: {exc}"
                continue
            cache[key] = {"size": rec["size"], "mtime_ns": rec["mtime_ns"], **digests}
            dirty = True
            rec["hash"] = {"algo": known["hash_algo"], "hexdigest": digests[known["hash_algo"]],
                           "source": "computed"}
        else:
            rec["hash_skipped"] = "full hash runs under --deep"
    return _save_cache(cpath, cache) if dirty else None


def _attach_loads(files: list[dict[str, Any]], deep: bool, timeout_s: float) -> None:
    from cvdoctor.probes import run_probe

    todo = []
    for rec in files:
        if not is_loadable(rec):
            continue
        if not deep and rec["size"] > LOAD_LIMIT_BYTES:
            rec["load"] = {"status": "skipped",
                           "reason": f"larger than {LOAD_LIMIT_BYTES // 1024 ** 2} MiB; "
                                     "--deep loads it"}
            continue
        todo.append(rec)
    if not todo:
        return
    # One subprocess pays for `import torch` once; if it dies, retry one file per subprocess so a
    # file that crashes torch is pinned down and the others still get a verdict.
    # A 2.5 GB SAM file under --deep needs longer than a 40 MB ResNet: allow ~50 MB/s on top.
    timeout_s = round(timeout_s + sum(r["size"] for r in todo) / 50e6, 1)
    results = _probe_batch(run_probe, todo, timeout_s)
    if results is None:
        for rec in todo:
            one = _probe_batch(run_probe, [rec], timeout_s)
            rec["load"] = (one or {}).get(rec["path"]) or _probe_failure(rec.get("_last_probe"))
    else:
        for rec in todo:
            rec["load"] = results.get(rec["path"], {"status": "error", "error": "no result"})
    for rec in todo:
        rec.pop("_last_probe", None)


def _probe_batch(run_probe, recs, timeout_s):
    payload = json.dumps([{"path": r["path"], "kind": r["kind"]} for r in recs])
    out = run_probe("checkpoint_probe", [], timeout_s=timeout_s, stdin=payload)
    if out["_probe"].get("ok") and isinstance(out.get("results"), dict):
        return out["results"]
    for r in recs:
        r["_last_probe"] = out["_probe"]
    return None


def _probe_failure(info: dict[str, Any] | None) -> dict[str, Any]:
    info = info or {}
    if info.get("reason") == "timeout":
        return {"status": "timeout", "timeout_s": info.get("timeout_s")}
    if info.get("reason") == "signal":
        return {"status": "crashed", "signal": info.get("signal"), "stderr": info.get("stderr", "")[-800:]}
    return {"status": "crashed", "reason": info.get("reason"), "returncode": info.get("returncode"),
            "stderr": info.get("stderr", "")[-800:]}


@provider("checkpoints")
def gather(options: EnvOptions) -> dict[str, Any]:
    places = search_places(options)
    paths, capped = discover(places)
    files = [inspect_file(p, place) for p, place in paths]
    cache_note = _attach_hashes(files, options.deep)
    _attach_loads(files, options.deep, options.timeout_s)
    out: dict[str, Any] = {"places": places, "files": files, "deep": options.deep,
                           "load_limit_bytes": LOAD_LIMIT_BYTES, "max_files": MAX_FILES,
                           "capped": capped, "hash_cache": str(cache_file())}
    if cache_note:
        out["hash_cache_note"] = cache_note
    if not any(p["place"] == "ultralytics" for p in places):
        out["ultralytics_settings"] = ultralytics_settings_note()
    return out
