"""Which globals a checkpoint may use, judged by how the pickle uses them: an allowlist.

Four answers, from the uses the pickle machine recorded (``pickle_vm.Use``):

- ``data``: plain data and the functions that rebuild it (torch's tensor and storage rebuild
  functions, dtypes, ``collections.OrderedDict``, numpy's array reconstruction, ...): the set
  torch's ``weights_only`` unpickler accepts, plus numpy arrays and a few standard value types.
- ``library``: a class of a well-known library (``torch.nn`` modules of a pickled model,
  ultralytics modules, ``argparse.Namespace``, Lightning's ``AttributeDict``, ``pathlib`` paths),
  or a library function that is only referenced, never called: loading runs that library's code,
  fine if you trust the source.
- ``foreign``: a class from code cvdoctor does not know (your ``__main__.Net``): fine for a file
  you saved yourself, a risk for one from elsewhere.
- ``denied``: anything that can execute code or reach the OS, and anything this policy cannot
  vouch for: every standard-library name outside the allowlist (``os``, ``subprocess``,
  ``builtins.eval``, ``importlib``, ``runpy``, ``pickle``, ``marshal``, ``types.FunctionType``,
  ``operator.attrgetter``, ``webbrowser``, ``socket``, ...), torch's loaders and compilers
  (``torch.load``, ``torch.jit``, ``torch.hub``, ``torch.fx``, ...), a lower-case function that is
  *called*, dotted names that reach into a class (``pathlib.Path.touch``), names the machine could
  not resolve, calls of computed values, and changes to a class or module itself.

Context matters for two standard names that real checkpoints use harmlessly: ``builtins.getattr``
on an object the pickle built (a bound method a fused model keeps, ``getattr(conv, 'forward_fuse')``)
is ``library``; on a global it is ``denied``. ``operator.getitem`` of a ``typing`` form (how
``typing.Optional[int]`` pickles) is ``data``.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Iterable

DATA, LIBRARY, FOREIGN, DENIED = "data", "library", "foreign", "denied"
RANK = {DATA: 0, LIBRARY: 1, FOREIGN: 2, DENIED: 3}

TENSOR_REBUILD = {
    "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_tensor_v3", "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state", "torch._utils._rebuild_qtensor",
    "torch._utils._rebuild_sparse_tensor", "torch._utils._rebuild_meta_tensor_no_storage",
    "torch._utils._rebuild_nested_tensor", "torch._utils._rebuild_wrapper_subclass",
    "torch._utils._rebuild_device_tensor_from_numpy",
    "torch._utils._rebuild_device_tensor_from_cpu_tensor",
    "torch._utils._rebuild_xla_tensor", "torch._utils._rebuild_mtia_tensor",
    "torch._tensor._rebuild_from_type_v2", "torch._tensor._rebuild_from_type",
}
NUMPY_RECONSTRUCT = {
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
    "numpy.core.numeric._frombuffer", "numpy._core.numeric._frombuffer",
    "numpy.ma.core._mareconstruct",
}
# Calls that hand one of their arguments to another call or instantiation: (argument index, use).
INDIRECT = {
    "torch._tensor._rebuild_from_type_v2": ((0, "call"), (1, "new")),
    "torch._tensor._rebuild_from_type": ((0, "call"), (1, "new")),
    "torch._utils._rebuild_wrapper_subclass": ((0, "new"),),
    "copyreg._reconstructor": ((0, "new"), (1, "init")),
    "copyreg.__newobj__": ((0, "new"),),
    "copyreg.__newobj_ex__": ((0, "new"),),
    "numpy.core.multiarray._reconstruct": ((0, "new"),),
    "numpy._core.multiarray._reconstruct": ((0, "new"),),
}
DATA_EXACT = {
    "collections.OrderedDict", "collections.Counter", "collections.defaultdict",
    "collections.deque", "torch.nn.parameter.Parameter", "torch.nn.parameter.Buffer",
    "torch.serialization._get_layout", "torch.Size", "torch.Tensor", "torch.device",
    "torch.storage.TypedStorage", "torch.storage.UntypedStorage", "torch.memory_format",
    "torch.contiguous_format", "torch.channels_last", "torch.preserve_format",
    "_codecs.encode", "copyreg._reconstructor", "copyreg.__newobj__", "copyreg.__newobj_ex__",
    "builtins.set", "builtins.frozenset", "builtins.bytearray", "builtins.bytes",
    "builtins.complex", "builtins.slice", "builtins.range", "builtins.dict", "builtins.list",
    "builtins.tuple", "builtins.int", "builtins.float", "builtins.str", "builtins.bool",
    "builtins.object", "builtins.NoneType", "builtins.Ellipsis", "builtins.NotImplemented",
    "numpy.ndarray", "numpy.dtype", "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar", "numpy.random._pickle.__randomstate_ctor",
    "numpy.random._pickle.__bit_generator_ctor", "numpy.random._pickle.__generator_ctor",
    "datetime.datetime", "datetime.date", "datetime.time", "datetime.timedelta",
    "datetime.timezone", "decimal.Decimal", "fractions.Fraction", "uuid.UUID", "typing.Any",
    "typing.Union", "typing.Optional", "typing.List", "typing.Dict", "typing.Tuple",
    "typing.Callable", "typing.Sequence", "typing.Mapping",
} | TENSOR_REBUILD | NUMPY_RECONSTRUCT
_DTYPE = (r"u?int\d*|float\d*(?:_e\d+m\d+\w*)?|bfloat16|complex\d*|c?half|cfloat|cdouble|chalf"
          r"|double|short|long|bool|q(?:u)?int\d+(?:x\d+)?|bits\w+|float4_e2m1fn_x2")
DATA_RE = re.compile(
    r"^torch\.(?:(?:cuda\.|sparse\.)?[A-Z]\w*Storage"
    r"|(?:cuda\.|sparse\.)?[A-Z]\w*Tensor"
    r"|per_(?:tensor|channel)_\w+"
    rf"|(?:{_DTYPE}))$"
    r"|^numpy\.dtypes\.\w+DType$"
    r"|^numpy\.(?:u?int\d+|float\d+|complex\d+|bool_?|str_|bytes_|object_|longlong|ulonglong"
    r"|intc|uintc|half|single|double|longdouble|datetime64|timedelta64)$")
# Namespaces pickle reaches with getattr to save a reference to a builtin torch op (torch.relu).
TORCH_OP_NAMESPACES = {"torch._C._VariableFunctionsClass", "torch._C._VariableFunctions",
                       "torch._C._nn", "torch._C._fft", "torch._C._linalg", "torch._C._special"}
LIBRARY_EXACT = {
    "argparse.Namespace", "pathlib.Path", "pathlib.PosixPath", "pathlib.WindowsPath",
    "pathlib.PurePath", "pathlib.PurePosixPath", "pathlib.PureWindowsPath",
    "types.SimpleNamespace", "functools.partial", "torch.storage._load_from_bytes",
    "enum.Enum", "re._compile", "collections.UserDict", "collections.UserList",
} | TORCH_OP_NAMESPACES
# Standard-library exceptions and warnings are harmless values (a saved error message).
_EXCEPTION = re.compile(r"^builtins\.[A-Z]\w*(?:Error|Exception|Warning)$")

# Third-party packages whose names alone mean code execution, I/O or the network.
DENIED_ROOTS = {
    "dill", "cloudpickle", "joblib", "requests", "httpx", "aiohttp", "urllib3", "pip",
    "setuptools", "pkg_resources", "paramiko", "fabric", "invoke", "sh", "pexpect", "boto3",
    "botocore", "docker", "IPython", "jupyter_client", "nbconvert", "fsspec", "smart_open",
    "gdown", "wget", "mlflow", "dask", "ray", "celery", "fickling", "picklescan", "modelscan",
}
DENIED_SUBTREES = (
    "torch.hub", "torch.jit", "torch.package", "torch.ops", "torch._ops", "torch._C",
    "torch.classes", "torch.utils.cpp_extension", "torch.fx", "torch._dynamo", "torch._inductor",
    "torch.serialization", "torch.storage", "torch.multiprocessing", "torch.distributed",
    "torch.utils.collect_env", "torch.utils.bottleneck", "torch.utils.data.datapipes",
    "torch.utils._config_module", "torch.testing", "torch.export", "torch._export",
    "torch.compiler", "torch.onnx", "torch.utils.tensorboard", "torch.utils.benchmark",
    "torch.utils.hipify", "torch.backends", "torch._functorch", "torch._higher_order_ops",
    "numpy.testing", "numpy.f2py", "numpy.distutils", "numpy.ctypeslib", "numpy.lib.npyio",
    "numpy.lib.format", "numpy.lib.utils", "numpy.core._internal", "numpy._core._internal",
    "numpy.random._pickle", "ultralytics.utils.downloads", "ultralytics.hub",
    "transformers.dynamic_module_utils", "huggingface_hub", "timm.models._hub",
    "torchvision.datasets.utils", "lightning.pytorch.cli", "pytorch_lightning.cli",
)
DENIED_EXACT = {"torch.load", "torch.save", "torch.compile", "torch.from_file",
                "torch.set_default_device", "torch.use_deterministic_algorithms",
                "numpy.load", "numpy.save", "numpy.fromfile", "numpy.loadtxt", "numpy.genfromtxt",
                "numpy.memmap", "numpy.DataSource"}
# Library classes whose constructor loads files, downloads or starts work: a pickle that *calls*
# one (REDUCE, not the NEWOBJ a pickled object uses) runs that with arguments from the file
# (`ultralytics.YOLO("inner.pt")` loads another pickle without weights_only,
# `torchvision.datasets.MNIST(root, download=True)` reaches the network).
LOADER_SUBTREES = (
    "ultralytics.models", "ultralytics.engine", "ultralytics.data",
    "torchvision.datasets", "torchvision.io", "transformers.pipelines", "diffusers.pipelines",
    "lightning.pytorch.trainer", "pytorch_lightning.trainer", "lightning.fabric.fabric",
    "lightning.pytorch.loggers", "pytorch_lightning.loggers", "lightning.pytorch.callbacks",
    "pytorch_lightning.callbacks", "segment_anything.build_sam", "timm.models._builder",
    "torch.utils.data", "PIL.Image", "PIL.ImageFile", "pandas.io",
)
# ultralytics' top level re-exports its model classes (ultralytics.YOLO); its other submodules
# (ultralytics.nn, ultralytics.utils) keep the 'library' rule.
_LOADER_EXACT_MODULES = {"ultralytics"}
# Well-known libraries: their classes build objects ('library'); their functions may be
# referenced (a model keeps `torch.nn.functional.relu`), but a *call* of one is denied unless it
# is in the data list above.
KNOWN_LIBRARIES = {
    "torch", "torchvision", "torchaudio", "torchtext", "timm", "ultralytics", "segment_anything",
    "sam2", "lightning", "pytorch_lightning", "lightning_fabric", "lightning_utilities",
    "omegaconf", "numpy", "transformers", "tokenizers", "mmcv", "mmdet", "mmengine", "mmseg",
    "mmpretrain", "detectron2", "fvcore", "yacs", "easydict", "scipy", "sklearn", "pandas", "PIL",
    "albumentations", "kornia", "einops", "accelerate", "torchmetrics", "monai", "segmentation_models_pytorch",
    "open_clip", "clip", "diffusers", "peft", "typing_extensions",
}
_STDLIB = frozenset(getattr(sys, "stdlib_module_names", ())) | {"__builtin__", "copy_reg"}
_CLASSLIKE = re.compile(r"^_*[A-Z]")
_IDENT = re.compile(r"^[A-Za-z_][\w.]*$")


def _under(module: str, prefixes: Iterable[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


@dataclass
class Verdict:
    category: str
    reason: str


def classify(module: str, name: str, hows: set[str] | frozenset[str] = frozenset({"call"}),
             details: set[str] | frozenset[str] = frozenset()) -> Verdict:
    """The category of global ``module.name`` given how the pickle uses it."""
    ref = f"{module}.{name}"
    called = bool(hows & {"call", "init"})
    root = module.split(".", 1)[0]
    if module == "<unresolved>":
        return Verdict(DENIED, f"{name}: a name cvdoctor cannot resolve without running the pickle")
    if not _IDENT.match(module) or not _IDENT.match(name) or module.startswith("."):
        return Verdict(DENIED, "not a valid Python name")
    if hows & {"build", "mutate"}:
        return Verdict(DENIED, "the pickle modifies it in place")
    # `details` holds what vouched for each call ("" for a call nothing vouched for).
    if ref == "builtins.getattr" and details and all(d.startswith(("method:", "torchop:"))
                                                      for d in details):
        names = ", ".join(sorted(d.split(":", 1)[1] for d in details))[:80]
        return Verdict(LIBRARY, f"a bound method or torch operator it keeps ({names})")
    if ref == "builtins.type" and details == {"typeof"}:
        return Verdict(DATA, "the type of None (how pickle saves NoneType)")
    if ref in ("operator.getitem", "_operator.getitem") and details == {"typing"}:
        return Verdict(DATA, "a typing annotation")
    if "." in name:
        return Verdict(DENIED, f"reaches the attribute {name.split('.', 1)[1]} of "
                       f"{module}.{name.split('.', 1)[0]}")
    if ref in DATA_EXACT or DATA_RE.match(ref):
        return Verdict(DATA, "plain data")
    if module.startswith("torch") and name.endswith("Storage") and _CLASSLIKE.match(name):
        return Verdict(DATA, "a storage type")
    if ref in LIBRARY_EXACT:
        return Verdict(LIBRARY, "a library class")
    if root == "math" and name.islower():
        return Verdict(DATA, "a pure math function or constant")
    if _under(module, ("torch._C",)) and hows <= {"ref", "passed"}:
        return Verdict(LIBRARY, "a torch operator it keeps a reference to (not called)")
    if ref in DENIED_EXACT or _under(module, DENIED_SUBTREES) or root in DENIED_ROOTS:
        return Verdict(DENIED, "can run code or reach the OS")
    if _EXCEPTION.match(ref):
        return Verdict(LIBRARY, "an exception value")
    if name.startswith("__") and name.endswith("__"):
        return Verdict(DENIED, "a special name")
    if root in _STDLIB:
        return Verdict(DENIED, "standard-library code outside the data allowlist"
                       + (" (can run code or reach the OS)" if called else ""))
    classlike = bool(_CLASSLIKE.match(name))
    if called and classlike and (module in _LOADER_EXACT_MODULES
                                 or _under(module, LOADER_SUBTREES)):
        return Verdict(DENIED, f"calls {ref}(...), a class whose constructor loads files or "
                       "reaches the network, with arguments from the file")
    if root in KNOWN_LIBRARIES:
        if classlike:
            return Verdict(LIBRARY, f"a {root} class")
        if called:
            return Verdict(DENIED, f"calls {ref}, a {root} function, not a data constructor")
        return Verdict(LIBRARY, f"a {root} function it keeps a reference to (not called)")
    if classlike or not called:
        return Verdict(FOREIGN, "code outside the libraries cvdoctor knows")
    return Verdict(DENIED, f"calls {ref}, a function outside the libraries cvdoctor knows")


def allowable(findings: list[dict]) -> tuple[list[str], list[str]]:
    """(what a weights_only load of a 'library' file may allow, what it must not).

    Allowing a class lets torch's weights_only unpickler build it the way the pickle says. That
    is safe for a class the pickle only instantiates without __init__ (NEWOBJ, as a pickled
    object does) or merely references, and for the value classes of LIBRARY_EXACT. It is not
    for ``builtins.getattr`` (it fetches any attribute of anything the pickle builds) nor for a
    library class the pickle *calls*: its constructor then runs with arguments from the file.
    Neither is ever put in a ``safe_globals`` line or used by ``--fix``."""
    allow, refuse = [], []
    for x in findings:
        ref = x.get("global")
        if x.get("category") != LIBRARY or not ref:
            continue
        called = bool(set(x.get("uses") or ()) & {"call", "init"})
        if ref == "builtins.getattr" or (called and ref not in LIBRARY_EXACT):
            refuse.append(ref)
        else:
            allow.append(ref)
    return allow, refuse


def classify_ref(ref: str) -> str:
    """Category of a dotted reference on its own (assumed called): the pre-machine interface."""
    if ref.startswith("<"):
        return DENIED
    module, _, name = ref.rpartition(".")
    return classify(module, name).category


LEGACY_NAMES = {DATA: "allowed", LIBRARY: "library", FOREIGN: "foreign", DENIED: "denied"}
