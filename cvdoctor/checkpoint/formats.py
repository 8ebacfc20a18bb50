"""What a file really is, from its first bytes, and the header checks that need no pickle.

``sniff`` names the container (zip, pickle, safetensors, npy, tar, an HTML error page saved as
``.pth``, a Git-LFS pointer, ...). ``safetensors_header`` validates a safetensors header the way
the format requires (length sane, offsets inside the file, no overlaps or holes, dtype x shape =
bytes, nothing after the last tensor). ``npy_header`` reads a ``.npy`` header with
``ast.literal_eval`` (what numpy itself uses) and says whether the array carries a pickle.
"""
from __future__ import annotations

import ast
import json
import re
import struct
from typing import Any, BinaryIO

TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LFS_PREFIX = b"version https://git-lfs.github.com/spec/v1"
NPY_MAGIC = b"\x93NUMPY"
PROTO0_START = set(b"(]}cIJKSVNld.")
SAFETENSORS_MAX_HEADER = 100 * 1024 ** 2  # the safetensors library's own limit
SAFETENSORS_DTYPES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "I16": 2, "U16": 2,
    "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "F64": 8, "I64": 8, "U64": 8, "C64": 8,
}
SAFETENSORS_TO_TORCH = {
    "BOOL": "bool", "U8": "uint8", "I8": "int8", "F8_E5M2": "float8_e5m2",
    "F8_E4M3": "float8_e4m3fn", "F8_E8M0": "float8_e8m0fnu", "I16": "int16", "U16": "uint16",
    "F16": "float16", "BF16": "bfloat16", "I32": "int32", "U32": "uint32", "F32": "float32",
    "F64": "float64", "I64": "int64", "U64": "uint64", "C64": "complex64",
}
_MAGIC = (
    (b"GGUF", "gguf"), (b"\x89HDF\r\n\x1a\n", "hdf5"), (b"\x89PNG\r\n\x1a\n", "image"),
    (b"\xff\xd8\xff", "image"), (b"GIF8", "image"), (b"\x1f\x8b", "gzip"), (b"7z\xbc\xaf", "7z"),
    (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"), (b"%PDF", "pdf"), (b"\x7fELF", "executable"),
    (b"MZ", "executable"),
)


def sniff(head: bytes, size: int) -> str:
    """The container kind from the first bytes (up to 4 KiB) and the size."""
    if size == 0:
        return "empty"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if head.startswith(NPY_MAGIC):
        return "npy"
    if head.startswith(LFS_PREFIX):
        return "lfs-pointer"
    if len(head) >= 2 and head[0] == 0x80 and head[1] <= 5:
        return "pickle"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "html"
    if text.startswith(b"<?xml") or text.startswith(b"<error"):
        return "xml"
    if len(head) >= 10:
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n <= size - 8 and head[8:9] == b"{":
            return "safetensors"
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    try:
        decoded = head[:512].decode("utf-8")
    except UnicodeDecodeError:
        return "unknown"
    if all(c.isprintable() or c in "\r\n\t" for c in decoded):
        return "text"
    return "unknown"


def maybe_protocol0(head: bytes) -> bool:
    """Protocol 0/1 pickles have no header and look like text; worth a trial scan."""
    return bool(head) and head[0] in PROTO0_START


def read_lfs_pointer(text: bytes) -> dict[str, Any]:
    s = text[:1024].decode("utf-8", "replace")
    out: dict[str, Any] = {}
    m = re.search(r"^oid sha256:([0-9a-f]{64})", s, re.M)
    if m:
        out["oid_sha256"] = m.group(1)
    m = re.search(r"^size (\d+)", s, re.M)
    if m:
        out["size"] = int(m.group(1))
    return out


# --- safetensors ---------------------------------------------------------------------------------

def safetensors_header(f: BinaryIO, size: int) -> dict[str, Any]:
    """Validate a safetensors file from its header alone (tensor bytes are never read)."""
    f.seek(0)
    raw_len = f.read(8)
    if len(raw_len) < 8:
        return {"complete": False, "problem": "shorter than the 8-byte header length"}
    (n,) = struct.unpack("<Q", raw_len)
    if n > SAFETENSORS_MAX_HEADER:
        return {"complete": False, "malformed": True,
                "problem": f"header length {n:,} exceeds the format's 100 MB limit"}
    if n > size - 8:
        return {"complete": False, "problem": f"header length {n:,} exceeds the file"}
    raw = f.read(n)
    dupes: list[str] = []

    def pairs_hook(pairs):
        keys = [k for k, _ in pairs]
        dupes.extend(k for k in set(keys) if keys.count(k) > 1)
        return dict(pairs)

    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=pairs_hook)
    except (ValueError, UnicodeDecodeError) as exc:
        return {"complete": False, "malformed": True, "problem": f"header is not valid JSON: {exc}"}
    if not isinstance(header, dict):
        return {"complete": False, "malformed": True, "problem": "header is not a JSON object"}
    problems: list[str] = []
    if dupes:
        problems.append(f"duplicate tensor names: {', '.join(sorted(dupes)[:3])}")
    meta = header.pop("__metadata__", None)
    if meta is not None and not (isinstance(meta, dict)
                                 and all(isinstance(v, str) for v in meta.values())):
        problems.append("__metadata__ is not a map of strings")
    data_len = size - 8 - n
    spans = []
    tensors: dict[str, dict[str, Any]] = {}
    for name, spec in header.items():
        if not isinstance(spec, dict):
            problems.append(f"{name}: entry is not an object")
            continue
        dtype, shape, offs = spec.get("dtype"), spec.get("shape"), spec.get("data_offsets")
        if dtype not in SAFETENSORS_DTYPES:
            problems.append(f"{name}: unknown dtype {dtype!r}")
            continue
        if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
            problems.append(f"{name}: shape {shape!r} is not a list of sizes")
            continue
        if not (isinstance(offs, list) and len(offs) == 2 and all(isinstance(o, int) for o in offs)
                and 0 <= offs[0] <= offs[1]):
            problems.append(f"{name}: data_offsets {offs!r} are not [begin, end]")
            continue
        numel = 1
        for d in shape:
            numel *= d
        want = numel * SAFETENSORS_DTYPES[dtype]
        if offs[1] - offs[0] != want:
            problems.append(f"{name}: {dtype} x {shape} needs {want:,} bytes, its offsets span "
                            f"{offs[1] - offs[0]:,}")
        spans.append((offs[0], offs[1], name))
        tensors[name] = {"shape": shape, "dtype": SAFETENSORS_TO_TORCH[dtype], "numel": numel}
    if problems:
        return {"complete": False, "malformed": True, "problem": problems[0],
                "problems": problems[:10], "tensors": len(header)}
    spans.sort()
    end = 0
    for begin, stop, name in spans:
        if begin < end:
            return {"complete": False, "malformed": True,
                    "problem": f"{name} overlaps the tensor before it (bytes {begin:,}-{stop:,})"}
        if begin > end:
            return {"complete": False, "malformed": True,
                    "problem": f"a {begin - end:,}-byte hole before {name} (the format has none)"}
        end = stop
    out: dict[str, Any] = {"header_len": n, "tensors": len(spans), "data_bytes": end,
                           "complete": True, "specs": tensors}
    if meta:
        out["metadata"] = {k: v[:200] for k, v in list(meta.items())[:20]}
    if end > data_len:
        out.update(complete=False, problem=f"tensor data ends at byte {end} but only {data_len} "
                                           "bytes follow the header")
    elif end < data_len:
        out["trailing_bytes"] = data_len - end
    return out


# --- npy -----------------------------------------------------------------------------------------

def npy_header(f: BinaryIO) -> dict[str, Any]:
    """The header of a .npy stream at the current position; 'data_offset' is where the array
    (or, for object arrays, the pickle) starts, relative to the stream start."""
    start = f.tell()
    magic = f.read(8)
    if len(magic) < 8 or not magic.startswith(NPY_MAGIC):
        return {"problem": "not an npy header"}
    major = magic[6]
    if major == 1:
        raw = f.read(2)
        hlen = struct.unpack("<H", raw)[0] if len(raw) == 2 else None
    elif major in (2, 3):
        raw = f.read(4)
        hlen = struct.unpack("<I", raw)[0] if len(raw) == 4 else None
    else:
        return {"problem": f"unknown npy format version {major}"}
    if hlen is None or hlen > 1 << 20:
        return {"problem": "npy header length is broken"}
    text = f.read(hlen)
    if len(text) < hlen:
        return {"problem": "npy header is cut short"}
    try:
        header = ast.literal_eval(text.decode("utf-8" if major == 3 else "latin-1"))
        descr, shape = header["descr"], tuple(header["shape"])
        fortran = bool(header.get("fortran_order"))
    except (ValueError, SyntaxError, KeyError, TypeError, MemoryError, RecursionError) as exc:
        return {"problem": f"npy header is not a valid dict: {exc}"}
    if not all(isinstance(d, int) and d >= 0 for d in shape):
        return {"problem": f"npy shape {shape!r} is invalid"}
    has_object = "O" in repr(descr)
    itemsize = None
    if isinstance(descr, str):
        m = re.match(r"^[<>|=]?([a-zA-Z])(\d*)$", descr)
        if m and m.group(1) in "biufcSUV" and m.group(2):
            itemsize = int(m.group(2)) * (4 if m.group(1) == "U" else 1)
        elif m and m.group(1) == "?":
            itemsize = 1
    numel = 1
    for d in shape:
        numel *= d
    return {"descr": descr if isinstance(descr, str) else repr(descr)[:200], "shape": list(shape),
            "fortran_order": fortran, "object": has_object, "numel": numel,
            "itemsize": itemsize, "data_offset": f.tell() - start}
