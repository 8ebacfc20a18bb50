"""What a checkpoint holds, read from the pickle machine's result without running anything.

Every tensor's dotted key, shape, dtype and saved device come from the arguments of its rebuild
call (``_rebuild_tensor_v2(storage, offset, size, stride, ...)``) and its storage's persistent id
(``('storage', torch.HalfStorage, '12', 'cuda:0', numel)``); tensor bytes are never read, so a
multi-GB file is described from its few-KB ``data.pkl``. Pickled ``nn.Module`` objects are
unfolded into the keys their ``state_dict()`` would have (parameters, persistent buffers,
submodules), which is what the fit check compares with a model.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from cvdoctor.checkpoint.pickle_vm import Blob, Global, LongText, Obj, PDict, PList, PSet, PTuple

# torch's legacy storage classes name their dtype.
STORAGE_DTYPES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8",
    "BoolStorage": "bool", "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128", "QInt8Storage": "qint8", "QUInt8Storage": "quint8",
    "QInt32Storage": "qint32", "QUInt4x2Storage": "quint4x2", "QUInt2x4Storage": "quint2x4",
    "UntypedStorage": "uint8", "Float8_e4m3fnStorage": "float8_e4m3fn",
    "Float8_e5m2Storage": "float8_e5m2",
}
ELEMENT_SIZE = {
    "float32": 4, "float64": 8, "float16": 2, "bfloat16": 2, "int64": 8, "int32": 4, "int16": 2,
    "int8": 1, "uint8": 1, "bool": 1, "complex64": 8, "complex128": 16, "qint8": 1, "quint8": 1,
    "qint32": 4, "quint4x2": 1, "quint2x4": 1, "float8_e4m3fn": 1, "float8_e5m2": 1,
    "uint16": 2, "uint32": 4, "uint64": 8,
}
_NUMPY_DTYPES = {
    "f2": "float16", "f4": "float32", "f8": "float64", "i1": "int8", "i2": "int16", "i4": "int32",
    "i8": "int64", "u1": "uint8", "u2": "uint16", "u4": "uint32", "u8": "uint64", "b1": "bool",
    "c8": "complex64", "c16": "complex128", "O8": "object", "O4": "object",
}
FLOAT_DTYPES = {"float32", "float64", "float16", "bfloat16"}
MAX_NODES = 2_000_000
MAX_CONTAINERS = 400
MAX_META_NODES = 4000


@dataclass
class StorageSpec:
    dtype: str
    key: str
    location: str
    numel: int | None


@dataclass
class TensorSpec:
    shape: list[int]
    dtype: str
    device: str | None = None
    storage: str | None = None
    storage_offset: int = 0
    numel: int = 0
    kind: str = "tensor"  # tensor | parameter | ndarray | meta | sparse | quantized
    requires_grad: bool | None = None

    @property
    def nbytes(self) -> int:
        return self.numel * ELEMENT_SIZE.get(self.dtype, 0)


def storage_from_pid(pid: Any) -> StorageSpec | None:
    """A storage persistent id: ('storage', type, key, location, numel[, view])."""
    items = pid.items if isinstance(pid, PTuple) else None
    if not items or len(items) < 5 or items[0] not in ("storage", b"storage"):
        return None
    stype, key, location, numel = items[1], items[2], items[3], items[4]
    dtype = "unknown"
    if isinstance(stype, Global):
        dtype = STORAGE_DTYPES.get(stype.name, "unknown")
    if isinstance(location, bytes):
        location = location.decode("ascii", "replace")
    return StorageSpec(dtype, str(key), str(location), numel if isinstance(numel, int) else None)


def _ints(v: Any) -> list[int] | None:
    if isinstance(v, Obj) and isinstance(v.func, Global) and v.func.ref == "torch.Size":
        inner = v.args.items if isinstance(v.args, PTuple) else []
        v = inner[0] if inner else None
    if isinstance(v, (PTuple, PList)) and all(isinstance(x, int) and not isinstance(x, bool)
                                              for x in v.items):
        return list(v.items)
    return None


def _prod(shape: list[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def tensor_of(obj: Any) -> TensorSpec | None:
    """The tensor a rebuild call produces, from its arguments; None for anything else."""
    if not isinstance(obj, Obj):
        return None
    if isinstance(obj.info, TensorSpec):
        return obj.info
    spec = _tensor_of(obj)
    obj.info = spec if spec is not None else obj.info
    return spec


def _tensor_of(obj: Obj) -> TensorSpec | None:
    if obj.how == "persistent":
        return None
    func = obj.func
    ref = func.ref if isinstance(func, Global) else ""
    args = obj.args.items if isinstance(obj.args, PTuple) else []
    if ref in ("torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2",
               "torch._utils._rebuild_tensor_v3", "torch._utils._rebuild_qtensor") and len(args) >= 4:
        storage = args[0].info if isinstance(args[0], Obj) else None
        shape = _ints(args[2])
        if shape is None:
            return None
        dtype = storage.dtype if isinstance(storage, StorageSpec) else "unknown"
        if ref == "torch._utils._rebuild_tensor_v3" and len(args) >= 7 and isinstance(args[6], Global):
            dtype = args[6].name
        spec = TensorSpec(shape, dtype, storage.location if isinstance(storage, StorageSpec) else None,
                          storage.key if isinstance(storage, StorageSpec) else None,
                          args[1] if isinstance(args[1], int) else 0, _prod(shape),
                          "quantized" if ref.endswith("qtensor") else "tensor")
        if len(args) >= 5 and isinstance(args[4], bool):
            spec.requires_grad = args[4]
        return spec
    if ref in ("torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state",
               "torch.nn.parameter.Parameter", "torch.nn.parameter.Buffer") and args:
        inner = tensor_of(args[0])
        if inner is None:
            return None
        out = replace(inner)
        out.kind = "parameter" if "Buffer" not in ref else "tensor"
        if len(args) >= 2 and isinstance(args[1], bool):
            out.requires_grad = args[1]
        return out
    if ref in ("torch._tensor._rebuild_from_type_v2", "torch._tensor._rebuild_from_type") and len(args) >= 3:
        fake = Obj("call", args[0], args[2], obj.pos)
        return tensor_of(fake)
    if ref == "torch._utils._rebuild_meta_tensor_no_storage" and len(args) >= 2:
        shape = _ints(args[1])
        dtype = args[0].name if isinstance(args[0], Global) else "unknown"
        return TensorSpec(shape or [], dtype, "meta", None, 0, _prod(shape or []), "meta")
    if ref in ("torch._utils._rebuild_device_tensor_from_numpy",
               "torch._utils._rebuild_device_tensor_from_cpu_tensor") and len(args) >= 3:
        inner = tensor_of(args[0])
        if inner is None:
            return None
        out = replace(inner)
        out.device = args[2] if isinstance(args[2], str) else out.device
        return out
    if ref == "torch._utils._rebuild_sparse_tensor":
        return TensorSpec([], "unknown", None, None, 0, 0, "sparse")
    if ref in ("numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct"):
        state = obj.state.items if isinstance(obj.state, PTuple) else None
        if state and len(state) >= 3:
            shape = _ints(state[1]) or []
            return TensorSpec(shape, numpy_dtype(state[2]), "cpu", None, 0, _prod(shape), "ndarray")
    return None


def numpy_dtype(v: Any) -> str:
    if isinstance(v, Obj) and isinstance(v.func, Global) and v.func.name == "dtype":
        args = v.args.items if isinstance(v.args, PTuple) else []
        if args and isinstance(args[0], str):
            code = args[0]
            state = v.state.items if isinstance(v.state, PTuple) else []
            order = state[1] if len(state) > 1 and isinstance(state[1], str) else "<"
            return _NUMPY_DTYPES.get(code, code) + ("" if order in "<|=" else " (big-endian)")
    if isinstance(v, Global) and v.module.startswith("numpy.dtypes"):
        return v.name.replace("DType", "").lower()
    return "unknown"


# --- walking the result --------------------------------------------------------------------------

def _class_of(obj: Obj) -> str | None:
    func = obj.func
    if obj.how == "call" and isinstance(func, Global) and func.ref == "copyreg._reconstructor":
        args = obj.args.items if isinstance(obj.args, PTuple) else []
        func = args[0] if args else None
    return func.ref if isinstance(func, Global) else None


def _state_pairs(obj: Obj) -> list[tuple[Any, Any]]:
    state = obj.state
    if isinstance(state, PTuple) and len(state.items) == 2:  # (dict state, slot state)
        pairs = []
        for part in state.items:
            pairs.extend(_pairs(part))
        return pairs
    return _pairs(state)


def _pairs(v: Any) -> list[tuple[Any, Any]]:
    """Key/value pairs of anything dict-like the pickle builds."""
    if isinstance(v, PDict):
        return list(v.items)
    if isinstance(v, Obj):
        pairs = list(v.items)
        args = v.args.items if isinstance(v.args, PTuple) else []
        ref = v.func.ref if isinstance(v.func, Global) else ""
        if ref == "collections.OrderedDict" and args and isinstance(args[0], PList):
            for item in args[0].items:  # protocol 0/1: OrderedDict([[k, v], ...])
                if isinstance(item, (PList, PTuple)) and len(item.items) == 2:
                    pairs.append((item.items[0], item.items[1]))
        if not pairs and ref == "collections.OrderedDict" and args and isinstance(args[0], PDict):
            pairs = list(args[0].items)
        return pairs
    return []


def _is_dictlike(v: Any) -> bool:
    if isinstance(v, PDict):
        return True
    if isinstance(v, Obj) and v.items:
        return True
    return isinstance(v, Obj) and isinstance(v.func, Global) and v.func.ref in (
        "collections.OrderedDict", "builtins.dict", "collections.defaultdict",
        "lightning.fabric.utilities.data.AttributeDict",
        "pytorch_lightning.utilities.parsing.AttributeDict")


def _key(k: Any) -> str:
    if isinstance(k, str):
        return k
    if isinstance(k, (int, float, bool)) or k is None:
        return str(k)
    if isinstance(k, bytes):
        return k.decode("utf-8", "replace")
    return f"<{type(k).__name__}>"


def _is_module_state(pairs: list[tuple[Any, Any]]) -> bool:
    keys = {k for k, _ in pairs if isinstance(k, str)}
    return "_parameters" in keys and "_modules" in keys


@dataclass
class Structure:
    tensors: dict[str, TensorSpec] = field(default_factory=dict)
    containers: list[dict[str, Any]] = field(default_factory=list)
    top: dict[str, Any] = field(default_factory=dict)
    meta: Any = None
    truncated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"tensors": {k: dict(v.__dict__) for k, v in self.tensors.items()},
                "containers": self.containers, "top": self.top, "meta": self.meta,
                "truncated": self.truncated}


def read(result: Any) -> Structure:
    """Tensors (dotted key -> spec), container layout and small values of a pickle result."""
    out = Structure()
    out.top = describe(result)
    budget = [MAX_NODES]
    seen: set[int] = set()

    def container(path: str, kind: str, cls: str | None, keys: list[str]) -> None:
        if len(out.containers) < MAX_CONTAINERS:
            out.containers.append({"path": path, "type": kind, "class": cls,
                                   "keys": keys[:24], "n_keys": len(keys)})

    def walk(v: Any, path: str, depth: int) -> None:
        budget[0] -= 1
        if budget[0] <= 0 or depth > 64:
            out.truncated = True
            return
        spec = tensor_of(v)
        if spec is not None:
            out.tensors[path] = spec
            return
        if isinstance(v, (PDict, PList, PTuple, PSet, Obj)):
            if id(v) in seen:
                return
            seen.add(id(v))
        if isinstance(v, Obj) and v.how in ("new", "call") and not _is_dictlike(v):
            cls = _class_of(v)
            pairs = _state_pairs(v)
            if _is_module_state(pairs):
                walk_module(v, cls, pairs, path, depth)
                return
            if pairs:
                container(path, "object", cls, [_key(k) for k, _ in pairs])
                for k, val in pairs:
                    walk(val, _join(path, _key(k)), depth + 1)
            for i, val in enumerate(v.appended):
                walk(val, _join(path, str(i)), depth + 1)
            return
        if _is_dictlike(v):
            pairs = _pairs(v)
            cls = _class_of(v) if isinstance(v, Obj) else None
            container(path, "dict", cls, [_key(k) for k, _ in pairs])
            for k, val in pairs:
                walk(val, _join(path, _key(k)), depth + 1)
            if isinstance(v, Obj) and isinstance(v.state, PDict):  # AttributeDict attributes
                for k, val in v.state.items:
                    walk(val, _join(path, _key(k)), depth + 1)
        elif isinstance(v, (PList, PTuple)):
            if any(isinstance(x, (Obj, PDict, PList, PTuple)) for x in v.items[:64]):
                container(path, "list", None, [str(i) for i in range(len(v.items))])
                for i, val in enumerate(v.items):
                    walk(val, _join(path, str(i)), depth + 1)

    def walk_module(v: Obj, cls: str | None, pairs, path: str, depth: int) -> None:
        state = {k: val for k, val in pairs if isinstance(k, str)}
        non_persistent = set()
        nps = state.get("_non_persistent_buffers_set")
        if isinstance(nps, PSet) or (isinstance(nps, Obj) and nps.args):
            items = nps.items if isinstance(nps, PSet) else _flat_items(nps.args)
            non_persistent = {x for x in items if isinstance(x, str)}
        children = _pairs(state.get("_modules"))
        container(path, "module", cls, [_key(k) for k, _ in children])
        for k, val in _pairs(state.get("_parameters")):
            if val is not None:
                walk(val, _join(path, _key(k)), depth + 1)
        for k, val in _pairs(state.get("_buffers")):
            if val is not None and _key(k) not in non_persistent:
                walk(val, _join(path, _key(k)), depth + 1)
        for k, val in children:
            if val is not None:
                walk(val, _join(path, _key(k)), depth + 1)

    walk(result, "", 0)
    out.meta = plain(result, MAX_META_NODES)
    return out


def _flat_items(v: Any) -> list[Any]:
    if isinstance(v, (PTuple, PList, PSet)):
        out = []
        for x in v.items:
            out.extend(x.items if isinstance(x, (PList, PSet, PTuple)) else [x])
        return out
    return []


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def describe(v: Any) -> dict[str, Any]:
    """One line about the top-level object: its type and first keys."""
    if tensor_of(v) is not None:
        return {"type": "tensor"}
    if isinstance(v, Obj) and v.how in ("new", "call") and not _is_dictlike(v):
        pairs = _state_pairs(v)
        kind = "module" if _is_module_state(pairs) else "object"
        return {"type": kind, "class": _class_of(v)}
    if _is_dictlike(v):
        keys = [_key(k) for k, _ in _pairs(v)]
        return {"type": "dict", "class": _class_of(v) if isinstance(v, Obj) else None,
                "keys": keys[:24], "n_keys": len(keys)}
    if isinstance(v, (PList, PTuple)):
        return {"type": "list", "n": len(v.items)}
    return {"type": type(v).__name__}


def plain(v: Any, budget: int = MAX_META_NODES) -> Any:
    """A small JSON-able copy of the non-tensor values (names, epochs, hyper-parameters):
    tensors become their shape, objects their class and attributes; big parts are cut."""
    left = [budget]
    seen: set[int] = set()

    def conv(x: Any, depth: int) -> Any:
        left[0] -= 1
        if left[0] <= 0 or depth > 8:
            return "..."
        if x is None or isinstance(x, (bool, int, float)):
            return x
        if isinstance(x, str):
            return x if len(x) <= 200 else x[:200] + "..."
        if isinstance(x, bytes):
            return f"<{len(x)} bytes>"
        if isinstance(x, (Blob, LongText)):
            return f"<{x.length} bytes>"
        if isinstance(x, Global):
            return f"<{x.ref}>"
        spec = tensor_of(x)
        if spec is not None:
            return {"__tensor__": spec.shape, "dtype": spec.dtype}
        if isinstance(x, (PDict, PList, PTuple, PSet, Obj)):
            if id(x) in seen:
                return "<cycle>"
            seen.add(id(x))
        if _is_dictlike(x):
            out = {}
            pairs = _pairs(x)
            for k, val in pairs[:1000]:
                out[_key(k)] = conv(val, depth + 1)
            if len(pairs) > 1000:
                out["..."] = f"{len(pairs) - 1000} more"
            return out
        if isinstance(x, (PList, PTuple, PSet)):
            items = [conv(i, depth + 1) for i in x.items[:32]]
            return items + (["..."] if len(x.items) > 32 else [])
        if isinstance(x, Obj):
            if x.how == "persistent":
                return "<storage>"
            cls = _class_of(x)
            pairs = _state_pairs(x)
            if _is_module_state(pairs):
                keep = {k: val for k, val in pairs if isinstance(k, str) and not k.startswith("_")
                        and k not in ("training",)}
                return {"__class__": cls, **{k: conv(val, depth + 1)
                                             for k, val in list(keep.items())[:32]}}
            if pairs:
                return {"__class__": cls, **{_key(k): conv(val, depth + 1)
                                             for k, val in pairs[:32]}}
            args = x.args.items if isinstance(x.args, PTuple) else []
            if cls in ("pathlib.PosixPath", "pathlib.Path", "pathlib.WindowsPath") and args:
                return "/".join(str(a) for a in args if isinstance(a, str))
            return {"__class__": cls, "args": [conv(a, depth + 1) for a in args[:8]]}
        return f"<{type(x).__name__}>"

    return conv(v, 0)
