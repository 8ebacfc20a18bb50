"""Harmless payloads and benign-but-unusual checkpoints, shared by these tests and by
bench/bench_ckpt.py (which runs picklescan, ModelScan and fickling on the same files).

Every payload would create its marker file if it were loaded (``torch.load(weights_only=False)``,
``pickle.load`` or ``numpy.load(allow_pickle=True)``, whichever the file is for); the scanner must
fail each one and the marker must never appear. The kinds cover the publicly documented bypasses
of picklescan, ModelScan and fickling: alternative execution primitives in the standard library
and in torch, ``STACK_GLOBAL`` names from ``STRING`` opcodes and the memo, ``INST``/``OBJ``/
``NEWOBJ_EX``, ``getattr``/``operator`` chains, ``functools.partial``, broken streams that run
before they fail ("nullifAI"), the legacy format's magic-number pickle, payloads nested in
``torch.storage._load_from_bytes`` bytes, numpy object arrays, and zip archives that torch reads
differently from Python's ``zipfile`` (duplicate or case-variant ``data.pkl``, local/central name
mismatch, bad CRC). Benign files (numpy arrays in ``torch.save``, Lightning checkpoints with
``argparse.Namespace``, legacy-format saves, safetensors, ...) must not fail.
"""
from __future__ import annotations

import argparse
import collections
import datetime
import io
import json
import os
import pathlib
import pickle
import struct
import sys
import types
import zipfile
from typing import Callable

import pytest

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

from cvdoctor.checkpoint import inspect_file  # noqa: E402

# --- building blocks -----------------------------------------------------------------------------


def _u(s: str) -> bytes:
    """SHORT_BINUNICODE"""
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b


def _reduce_pickle(func, args, protocol=4) -> bytes:
    class R:
        def __reduce__(self):
            return func, args

    return pickle.dumps(R(), protocol=protocol)


def _zip_member_bytes(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members:
            z.writestr(zipfile.ZipInfo(name), data)
    return buf.getvalue()


def _torch_zip_members(obj=None) -> list[tuple[str, bytes]]:
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(2)} if obj is None else obj, buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as z:
        return [(i.filename, z.read(i)) for i in z.infolist()]


def _in_torch_zip(payload_pickle: bytes, name: str = "archive/data.pkl") -> bytes:
    members = [(n, d) for n, d in _torch_zip_members() if not n.endswith("data.pkl")]
    return _zip_member_bytes([(name, payload_pickle)] + members)


def _legacy_with(obj_pickle: bytes) -> bytes:
    """The legacy torch.save layout with `obj_pickle` as the object."""
    return (pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + pickle.dumps(1001, protocol=2)
            + pickle.dumps({"protocol_version": 1001, "little_endian": True,
                            "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2)
            + obj_pickle + pickle.dumps([], protocol=2))


def _npy_object(payload_obj) -> bytes:
    buf = io.BytesIO()
    arr = np.empty(1, dtype=object)
    arr[0] = payload_obj
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


class _Reduce:
    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args

    def __call__(self, *args):  # pickle wants the callable of a reduce tuple to be callable
        raise RuntimeError("never called here")


def touch_cmd(marker) -> str:
    return f"touch {marker}"


def py_code(marker) -> str:
    return f"open({str(marker)!r}, 'w').close()"


# --- payloads: name -> (what it is, builder(marker) -> (file name, bytes)) ------------------------

def _p_os_system(proto):
    return lambda m: (f"os_system_p{proto}.pkl", _reduce_pickle(os.system, (touch_cmd(m),), proto))


def _p_torch_zip(m):
    return "os_system.pt", _in_torch_zip(_reduce_pickle(os.system, (touch_cmd(m),), 2))


def _p_torch_save_dict(m):
    buf = io.BytesIO()
    torch.save({"weight": torch.zeros(3), "cfg": _Reduce(os.system, (touch_cmd(m),))}, buf)
    return "in_state_dict.pt", buf.getvalue()


def _p_legacy(m):
    return "legacy.pth", _legacy_with(_reduce_pickle(os.system, (touch_cmd(m),), 2))


def _p_legacy_magic_bypass(m):
    """picklescan's 'pytorch_magic_bypass': the magic number itself is computed by eval."""
    first = _reduce_pickle(eval, ("0x1950A86A20F9469CFC6C",), 2)
    rest = (pickle.dumps(1001, protocol=2) + pickle.dumps({}, protocol=2)
            + _reduce_pickle(os.system, (touch_cmd(m),), 2) + pickle.dumps([], protocol=2))
    return "magic_bypass.pth", first + rest


def _p_exec(m):
    return "exec.pkl", _reduce_pickle(exec, (py_code(m),))


def _p_eval_proto0(m):
    return "eval_p0.pkl", (b"c__builtin__\neval\n(V" + py_code(m).encode() + b"\ntR.")


def _p_compile_exec(m):
    code = _Reduce(compile, (py_code(m), "<x>", "exec"))
    return "compile_exec.pkl", pickle.dumps(_Reduce(exec, (code,)), protocol=2)


def _p_subprocess(m):
    import subprocess

    return "subprocess_run.pkl", _reduce_pickle(subprocess.run, (["touch", str(m)],))


def _p_subprocess_getoutput(m):
    import subprocess

    return "getoutput.pkl", _reduce_pickle(subprocess.getoutput, (touch_cmd(m),))


def _p_commands_py2(m):
    """Protocol 0 with a Python 2 module name the unpickler maps (commands -> subprocess)."""
    return "commands_p0.pkl", b"ccommands\ngetoutput\n(V" + touch_cmd(m).encode() + b"\ntR."


def _p_path_touch_p4(m):
    return "path_touch_p4.pkl", _reduce_pickle(pathlib.Path.touch, (pathlib.Path(m),), 4)


def _p_path_touch_p2(m):
    return "path_touch_p2.pkl", _reduce_pickle(pathlib.Path.touch, (pathlib.Path(m),), 2)


def _p_getattr_import(m):
    """getattr(__import__('os'), 'system')(cmd): every GLOBAL is builtins."""
    body = (b"\x80\x02cbuiltins\ngetattr\ncbuiltins\n__import__\nX\x02\x00\x00\x00os\x85R"
            b"X\x06\x00\x00\x00system\x86RX" + struct.pack("<I", len(touch_cmd(m)))
            + touch_cmd(m).encode() + b"\x85R.")
    return "getattr_import.pkl", body


def _p_builtins_introspection(m):
    """ModelScan #338's introspection chain: a dotted builtins name."""
    body = (b"\x80\x04" + _u("builtins") + _u("print.__self__.exec") + b"\x93"
            + _u(py_code(m)) + b"\x85R.")
    return "builtins_dotted.pkl", body


def _p_attrgetter(m):
    return "attrgetter.pkl", _attrgetter_body(m)


def _attrgetter_body(m) -> bytes:
    # attrgetter('system')(__import__('os'))(cmd)
    return (b"\x80\x04" + _u("operator") + _u("attrgetter") + b"\x93" + _u("system") + b"\x85R"
            + _u("builtins") + _u("__import__") + b"\x93" + _u("os") + b"\x85R\x85R"
            + _u(touch_cmd(m)) + b"\x85R.")


def _p_methodcaller(m):
    """GHSA-84r2-jw7c-4r5q: methodcaller('system', cmd)(pydoc.locate('os'))."""
    return "methodcaller.pkl", (b"\x80\x04" + _u("operator") + _u("methodcaller") + b"\x93"
                                + _u("system") + _u(touch_cmd(m)) + b"\x86R" + _u("pydoc")
                                + _u("locate") + b"\x93" + _u("os") + b"\x85R\x85R.")


def _p_partial(m):
    import functools

    return "partial.pkl", pickle.dumps(_Reduce(functools.partial(os.system, touch_cmd(m)), ()),
                                       protocol=4)


def _p_partial_torch_load(m, tmp=None):
    """picklescan's Malicious19: functools.partial(torch.load, other_file, weights_only=False)."""
    import functools

    return "partial_torch_load.pkl", pickle.dumps(
        _Reduce(functools.partial(torch.load, str(m) + ".other", weights_only=False), ()),
        protocol=4)


def _p_string_stack_global(m):
    """GHSA-9gvj-pp9x-gcfr: STACK_GLOBAL's names pushed with protocol-0 STRING opcodes."""
    return "string_stack_global.pkl", (b"S'os'\nS'system'\n\x93S'" + touch_cmd(m).encode()
                                       + b"'\n\x85R.")


def _p_memo_decoy(m):
    """picklescan's malicious11: names stored in the memo, a torch decoy last on the stack."""
    return "memo_decoy.pkl", (b"Vos\np2\n0Vsystem\np3\n0Vtorch\np0\n0VLongStorage\np1\n0"
                              b"g2\ng3\n\x93(V" + touch_cmd(m).encode() + b"\ntR.")


def _p_pop_decoy(m):
    """STACK_GLOBAL after a POP: a scanner that tracks 'the last two strings' sees x/system."""
    return "pop_decoy.pkl", (b"\x80\x04" + _u("os") + _u("x") + b"0" + _u("system") + b"\x93"
                             + _u(touch_cmd(m)) + b"\x85R.")


def _p_dup_memoize(m):
    return "dup_memoize.pkl", (b"\x80\x04\x95\x00\x01\x00\x00\x00\x00\x00\x00" + _u("posix")
                               + b"\x94" + _u("system") + b"\x94\x68\x00\x68\x01\x93"
                               + _u(touch_cmd(m)) + b"\x85R.")


def _p_long_binget(m):
    cmd = touch_cmd(m).encode()
    return "long_binget.pkl", (b"\x80\x03X\x02\x00\x00\x00osr\x05\x00\x00\x00"
                               b"X\x06\x00\x00\x00systemr\x06\x00\x00\x0000"
                               b"j\x05\x00\x00\x00j\x06\x00\x00\x00\x93"
                               + b"X" + struct.pack("<I", len(cmd)) + cmd + b"\x85R.")


def _p_inst(m):
    return "inst.pkl", b"(S'" + touch_cmd(m).encode() + b"'\nios\nsystem\n."


def _p_obj(m):
    return "obj.pkl", (b"\x80\x02(cos\nsystem\nX" + struct.pack("<I", len(touch_cmd(m)))
                       + touch_cmd(m).encode() + b"o.")


def _p_newobj_reconstructor(m):
    """copyreg._reconstructor(cls, base, state) runs base.__init__(obj, state)."""
    return "reconstructor.pkl", (b"\x80\x02ccopyreg\n_reconstructor\ncsubprocess\nPopen\n"
                                 b"csubprocess\nPopen\n](X\x05\x00\x00\x00touchX"
                                 + struct.pack("<I", len(str(m))) + str(m).encode()
                                 + b"e\x87R.")


def _p_nullifai(m):
    """The 'nullifAI' trick: the payload runs, then the stream breaks before STOP."""
    good = _reduce_pickle(os.system, (touch_cmd(m),), 2)
    return "nullifai.pkl", good[:-1] + b"X\xff\xff\xff\x7f"  # BINUNICODE claiming 2 GB


def _p_keyerror_memo(m):
    """picklescan's keyerror-exploit: the payload runs, then BINGET of a missing memo key."""
    return "keyerror_memo.pkl", (b"\x80\x04cos\nsystem\nV" + touch_cmd(m).encode() + b"\n\x85R0"
                                 + _u("os") + b"\x94h\x03h\x00\x93K\x42.")


def _p_nested_load_from_bytes(m):
    inner = io.BytesIO()
    torch.save({"x": _Reduce(os.system, (touch_cmd(m),))}, inner)
    return "nested_bytes.pkl", pickle.dumps(_Reduce(torch.storage._load_from_bytes,
                                                    (inner.getvalue(),)), protocol=4)


def _p_nested_protocol2(m):
    """Protocol 2 stores the nested bytes as text through _codecs.encode."""
    inner = io.BytesIO()
    torch.save({"x": _Reduce(os.system, (touch_cmd(m),))}, inner,
               _use_new_zipfile_serialization=False)
    return "nested_p2.pkl", pickle.dumps(_Reduce(torch.storage._load_from_bytes,
                                                 (inner.getvalue(),)), protocol=2)


def _p_npy_object(m):
    return "object.npy", _npy_object(_Reduce(os.system, (touch_cmd(m),)))


def _p_npz_member(m):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("ok.npy", _npy_buf(np.arange(3)))
        z.writestr("evil.npy", _npy_object(_Reduce(os.system, (touch_cmd(m),))))
    return "arrays.npz", buf.getvalue()


def _npy_buf(arr) -> bytes:
    b = io.BytesIO()
    np.save(b, arr)
    return b.getvalue()


def _p_numpy_in_torch(m):
    """A payload inside a numpy object array inside a torch.save file."""
    arr = np.empty(2, dtype=object)
    arr[0] = 1
    arr[1] = _Reduce(os.system, (touch_cmd(m),))
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(1), "stats": arr}, buf)
    return "numpy_object_in_torch.pt", buf.getvalue()


def _p_lightning_hparams(m):
    buf = io.BytesIO()
    torch.save({"state_dict": {"w": torch.zeros(2)}, "epoch": 1,
                "hyper_parameters": {"lr": 0.1, "cb": _Reduce(os.system, (touch_cmd(m),))}}, buf)
    return "lightning_hparams.ckpt", buf.getvalue()


def _p_bound_method_into_rebuild(m):
    """torch's _rebuild_from_type_v2(func, ...) calls func: here a bound method fetched with
    getattr from a Path the pickle builds, so no named global is ever called directly."""
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(2),
                "meta": _Reduce(torch._tensor._rebuild_from_type_v2,
                                (pathlib.PosixPath(str(m)).touch, torch.Tensor, (), {}))}, buf)
    return "bound_method_rebuild.pt", buf.getvalue()


def _p_library_loader_class(m):
    """A library class whose constructor loads another file: ultralytics.YOLO('inner.pt')
    would unpickle inner.pt without weights_only. Named, not imported (ultralytics is heavy)."""
    body = (b"\x80\x02" + b"c" + b"ultralytics\nYOLO\n" + _u(str(m) + ".pt")
            + b"\x85R.")
    return "yolo_loader.pt", _in_torch_zip(body)


def _p_dataset_download_class(m):
    """torchvision.datasets.MNIST(root, download=True): a directory and the network."""
    body = (b"\x80\x02" + b"c" + b"torchvision.datasets.mnist\nMNIST\n" + _u(str(m))
            + b"\x88\x86R.")
    return "mnist_download.pt", _in_torch_zip(body)


def _p_dup_data_pkl(m):
    """Two data.pkl members: torch reads the first here, Python's zipfile the last."""
    evil = _reduce_pickle(os.system, (touch_cmd(m),), 2)
    members = [(n, d) for n, d in _torch_zip_members() if not n.endswith("data.pkl")]
    benign = dict(_torch_zip_members())["archive/data.pkl"]
    # This order makes miniz's heap sort put the first copy where its binary search lands.
    data = _zip_member_bytes([("archive/data.pkl", evil)] + members[:4]
                             + [("archive/data.pkl", benign)] + members[4:])
    return "duplicate_data_pkl.pt", data


def _p_case_data_pkl(m):
    """miniz looks names up case-insensitively: torch reads archive/DATA.PKL as data.pkl."""
    evil = b"cos\nsystem\n(V" + touch_cmd(m).encode() + b"\ntR."  # protocol 0: no pickle header
    return "case_variant.pt", _in_torch_zip(evil, name="archive/DATA.PKL")


def _p_local_name_mismatch(m):
    """The local header names another file: Python's zipfile refuses, torch reads it."""
    data = bytearray(_in_torch_zip(_reduce_pickle(os.system, (touch_cmd(m),), 2)))
    lh = data.find(b"PK\x03\x04")
    n = struct.unpack("<H", data[lh + 26:lh + 28])[0]
    data[lh + 30:lh + 30 + n] = b"archive/xata.pkl"
    return "local_name.pt", bytes(data)


def _p_bad_crc(m):
    """CVE-2025-10156: a wrong CRC makes zipfile-based scanners give up; torch does not check."""
    data = bytearray(_in_torch_zip(_reduce_pickle(os.system, (touch_cmd(m),), 2)))
    cd = data.find(b"PK\x01\x02")
    data[cd + 16:cd + 20] = b"\x00\x00\x00\x00"
    lh = data.find(b"PK\x03\x04")
    data[lh + 14:lh + 18] = b"\x00\x00\x00\x00"
    return "bad_crc.pt", bytes(data)


def _p_deflated_data_pkl(m):
    evil = _reduce_pickle(os.system, (touch_cmd(m),), 2)
    members = [(n, d) for n, d in _torch_zip_members() if not n.endswith("data.pkl")]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(zipfile.ZipInfo("archive/data.pkl"), evil, compress_type=zipfile.ZIP_DEFLATED)
        for n, d in members:
            z.writestr(zipfile.ZipInfo(n), d)
    return "deflated.pt", buf.getvalue()


def _p_pt_named_bin(m):
    """CVE-2025-10155: a payload under an extension scanners skip."""
    return "pytorch_model.txt", _in_torch_zip(_reduce_pickle(os.system, (touch_cmd(m),), 2))


def _stdlib(name, func_path, args):
    def build(m):
        mod_name, _, attr = func_path.rpartition(".")
        return f"{name}.pkl", (b"\x80\x04" + _u(mod_name) + _u(attr) + b"\x93"
                               + b"".join(_u(a(m)) for a in args)
                               + {1: b"\x85", 2: b"\x86", 3: b"\x87"}[len(args)] + b"R.")
    return build


def _p_logging_filehandler(m):
    import logging

    return "filehandler.pkl", _reduce_pickle(logging.FileHandler, (str(m),))


def _p_fileio(m):
    return "fileio.pkl", _reduce_pickle(io.FileIO, (str(m), "w"))


def _p_open(m):
    return "open.pkl", _reduce_pickle(open, (str(m), "w"))


def _p_zipfile_create(m):
    return "zipfile_create.pkl", _reduce_pickle(zipfile.ZipFile, (str(m), "w"))


def _p_torch_save_call(m):
    return "torch_save_call.pkl", (b"\x80\x04" + _u("torch") + _u("save") + b"\x93" + b"K\x01"
                                   + _u(str(m)) + b"\x86R.")


def _p_numpy_save_call(m):
    return "numpy_savetxt.pkl", (b"\x80\x04" + _u("numpy") + _u("savetxt") + b"\x93"
                                 + _u(str(m)) + b"]\x86R.")


def _p_pickle_loads(m):
    inner = _reduce_pickle(os.system, (touch_cmd(m),), 2)
    return "pickle_loads.pkl", _reduce_pickle(pickle.loads, (inner,))


def _p_marshal_function(m):
    """types.FunctionType(marshal.loads(code), {})() : a function built from bytecode."""
    import marshal

    code = marshal.dumps(compile(py_code(m), "<x>", "exec"))
    return "marshal_function.pkl", (b"\x80\x04" + _u("types") + _u("FunctionType") + b"\x93"
                                    + _u("marshal") + _u("loads") + b"\x93B"
                                    + struct.pack("<I", len(code)) + code + b"\x85R}\x86R)R.")


def _p_rebuild_from_type(m):
    """torch's own tensor-subclass rebuild hands its first argument a call."""
    return "rebuild_from_type.pt", _in_torch_zip(
        b"\x80\x02ctorch._tensor\n_rebuild_from_type_v2\ncos\nsystem\nctorch\nTensor\n"
        b"X" + struct.pack("<I", len(touch_cmd(m))) + touch_cmd(m).encode() + b"\x85}tR.")


def _p_sys_modules(m):
    """operator.getitem(sys.modules, 'os').system(cmd)."""
    return "sys_modules.pkl", (b"\x80\x04" + _u("builtins") + _u("getattr") + b"\x93"
                               + _u("_operator") + _u("getitem") + b"\x93" + _u("sys")
                               + _u("modules") + b"\x93" + _u("os") + b"\x86R" + _u("system")
                               + b"\x86R" + _u(touch_cmd(m)) + b"\x85R.")


def _p_build_class(m):
    """BUILD on a class: rewrites argparse.Namespace.__reduce__ for whoever pickles next."""
    return "build_class.pkl", (b"\x80\x02cargparse\nNamespace\nN}X\x0a\x00\x00\x00__reduce__"
                               b"cos\nsystem\nsbN\x86b.")


def _p_torch_op_call(m):
    """getattr(torch._C._VariableFunctionsClass, 'from_file')(path, ...): a kept reference to a
    torch op is fine, calling it is not."""
    return "torch_op_call.pkl", (b"\x80\x02cbuiltins\ngetattr\nctorch._C\n_VariableFunctionsClass\n"
                                 b"X\t\x00\x00\x00from_file\x86R" + b"X"
                                 + struct.pack("<I", len(str(m))) + str(m).encode() + b"\x85R.")


PAYLOADS: dict[str, tuple[str, Callable]] = {
    **{f"os.system protocol {p}": ("__reduce__ to os.system", _p_os_system(p)) for p in range(6)},
    "torch.save zip": ("data.pkl of a torch zip", _p_torch_zip),
    "torch.save dict entry": ("a payload object next to tensors", _p_torch_save_dict),
    "legacy torch.save": ("the object pickle of the legacy format", _p_legacy),
    "legacy magic bypass": ("magic number computed by eval", _p_legacy_magic_bypass),
    "builtins.exec": ("exec of Python source", _p_exec),
    "builtins.eval protocol 0": ("c__builtin__ eval", _p_eval_proto0),
    "compile + exec": ("exec(compile(...))", _p_compile_exec),
    "subprocess.run": ("a process", _p_subprocess),
    "subprocess.getoutput": ("a shell", _p_subprocess_getoutput),
    "commands (py2 name)": ("protocol 0 name mapped to subprocess", _p_commands_py2),
    "pathlib.Path.touch p4": ("dotted STACK_GLOBAL name", _p_path_touch_p4),
    "pathlib.Path.touch p2": ("getattr(Path, 'touch')", _p_path_touch_p2),
    "getattr(__import__)": ("only builtins globals", _p_getattr_import),
    "builtins dotted name": ("print.__self__.exec (ModelScan #338)", _p_builtins_introspection),
    "operator.attrgetter": ("attrgetter('system')(os)", _p_attrgetter),
    "operator.methodcaller": ("GHSA-84r2-jw7c-4r5q", _p_methodcaller),
    "functools.partial": ("partial(os.system, cmd)()", _p_partial),
    "bound method into _rebuild_from_type_v2": ("getattr(Path(m), 'touch') called by torch's "
                                                "rebuild (audit of issue 8)",
                                                _p_bound_method_into_rebuild),
    "ultralytics.YOLO(path)": ("a library class whose constructor loads a file",
                               _p_library_loader_class),
    "torchvision MNIST(download=True)": ("a dataset class that downloads",
                                         _p_dataset_download_class),
    "partial(torch.load)": ("picklescan Malicious19", _p_partial_torch_load),
    "STRING + STACK_GLOBAL": ("GHSA-9gvj-pp9x-gcfr", _p_string_stack_global),
    "memo decoy": ("picklescan malicious11", _p_memo_decoy),
    "POP decoy": ("names around a POP", _p_pop_decoy),
    "FRAME + MEMOIZE": ("protocol 4 frame and memo", _p_dup_memoize),
    "LONG_BINGET": ("protocol 3 long memo", _p_long_binget),
    "INST": ("INST opcode", _p_inst),
    "OBJ": ("OBJ opcode", _p_obj),
    "copyreg._reconstructor": ("base.__init__ of Popen", _p_newobj_reconstructor),
    "nullifAI (broken stream)": ("payload, then a broken opcode", _p_nullifai),
    "missing memo key": ("picklescan keyerror-exploit", _p_keyerror_memo),
    "nested _load_from_bytes": ("torch.save bytes inside a pickle", _p_nested_load_from_bytes),
    "nested via _codecs.encode": ("protocol 2 nested legacy bytes", _p_nested_protocol2),
    "npy object array": ("numpy.load(allow_pickle=True)", _p_npy_object),
    "npz member": ("an object array inside .npz", _p_npz_member),
    "numpy array in torch.save": ("object array element", _p_numpy_in_torch),
    "Lightning hyper_parameters": ("payload in hparams", _p_lightning_hparams),
    "duplicate data.pkl": ("torch and zipfile read different members", _p_dup_data_pkl),
    "case-variant DATA.PKL": ("miniz's case-insensitive lookup", _p_case_data_pkl),
    "local/central name mismatch": ("zipfile refuses, torch reads", _p_local_name_mismatch),
    "bad CRC": ("CVE-2025-10156", _p_bad_crc),
    "deflated data.pkl": ("compressed member", _p_deflated_data_pkl),
    "unusual extension": ("CVE-2025-10155", _p_pt_named_bin),
    "logging.FileHandler": ("creates a file", _p_logging_filehandler),
    "io.FileIO": ("opens a file", _p_fileio),
    "builtins.open": ("opens a file", _p_open),
    "zipfile.ZipFile": ("creates a file", _p_zipfile_create),
    "torch.save call": ("writes a file", _p_torch_save_call),
    "numpy.savetxt call": ("writes a file", _p_numpy_save_call),
    "pickle.loads": ("a nested pickle", _p_pickle_loads),
    "marshal + FunctionType": ("bytecode to a function", _p_marshal_function),
    "_rebuild_from_type_v2(os.system)": ("torch plumbing calls its argument", _p_rebuild_from_type),
    "sys.modules lookup": ("getitem(sys.modules, 'os')", _p_sys_modules),
    "BUILD on a class": ("monkey-patches argparse.Namespace", _p_build_class),
    "timeit.timeit": ("stdlib primitive", _stdlib("timeit", "timeit.timeit", [lambda m: "", py_code])),
    "cProfile.run": ("GHSA-49gj-c84q-6qm9", _stdlib("cprofile", "cProfile.run", [py_code])),
    "runpy._run_code": ("picklescan Malicious14", _stdlib("runpy", "runpy._run_code", [py_code, lambda m: ""])),
    "pydoc.pipepager": ("picklescan Malicious18", _stdlib("pipepager", "pydoc.pipepager", [lambda m: "", touch_cmd])),
    "uuid._get_command_stdout": ("GHSA-g38g-8gr9-h9xp", _stdlib("uuid_cmd", "uuid._get_command_stdout", [lambda m: "touch", str])),
    "imaplib.IMAP4_stream": ("GHSA-g38g-8gr9-h9xp", _stdlib("imaplib", "imaplib.IMAP4_stream", [touch_cmd])),
    "code.InteractiveInterpreter.runcode": ("GHSA-cj3c-v495-4xqh", _stdlib("interp", "code.InteractiveInterpreter.runcode", [lambda m: "", py_code])),
    "torch.utils.collect_env.run": ("GHSA-f745-w6jp-hpxx", _stdlib("collect_env", "torch.utils.collect_env.run", [touch_cmd])),
    "numpy.testing runstring": ("picklescan Malicious22", _stdlib("runstring", "numpy.testing._private.utils.runstring", [py_code, lambda m: ""])),
    "pty.spawn": ("GHSA-vqmv-47xg-9wpr", _stdlib("pty", "pty.spawn", [touch_cmd])),
    "pkgutil.resolve_name": ("GHSA-vvpj-8cmc-gx39", _stdlib("resolve_name", "pkgutil.resolve_name", [lambda m: "os:system"])),
    "asyncio subprocess": ("CVE-2025-10157", _stdlib("asyncio", "asyncio.unix_events._UnixSubprocessTransport._start", [lambda m: "", touch_cmd, lambda m: ""])),
    "idlelib runcode": ("GHSA-m869-42cg-3xwr", _stdlib("idlelib", "idlelib.run.Executive.runcode", [lambda m: "", py_code])),
    "ctypes.CDLL": ("GHSA-4675-36f9-wf6r", _stdlib("ctypes", "ctypes.CDLL", [lambda m: ""])),
    "webbrowser.open": ("reaches the network", _stdlib("webbrowser", "webbrowser.open", [lambda m: "file://" + str(m)])),
    "antigravity import": ("an import with side effects", _stdlib("antigravity", "antigravity.geohash", [lambda m: "1"])),
    "multiprocessing spawnv_passfds": ("SaferPickle #18", _stdlib("spawnv", "multiprocessing.util.spawnv_passfds", [lambda m: "/bin/sh", touch_cmd, lambda m: ""])),
    "pandas read_csv": ("exfiltration, SaferPickle #18", _stdlib("read_csv", "pandas.io.parsers.readers.read_csv", [lambda m: "/etc/hostname"])),
    "mlflow _run_entry_point": ("SaferPickle #18", _stdlib("mlflow", "mlflow.projects.backend.local._run_entry_point", [touch_cmd, lambda m: "."])),
    "transformers getattribute_from_module": ("indirect model loading", _stdlib("hf_indirect", "transformers.models.auto.auto_factory.getattribute_from_module", [lambda m: "x", lambda m: "from_pretrained"])),
    "unknown package function": ("a function outside known libraries, called", _stdlib("unknown_fn", "mytools.shell.run", [touch_cmd])),
    "getattr on a torch op namespace, called": ("torch.from_file via getattr", _p_torch_op_call),
}


# --- benign files: name -> builder() -> (file name, bytes) ---------------------------------------

class _TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.bn = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4, 10)


def _saved(obj, **kw) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, **kw)
    return buf.getvalue()


def _state():
    torch.manual_seed(0)
    return _TinyNet().state_dict()


def _fake_class(module: str, qualname: str, base=object, attrs=None):
    """A class that pickles under `module.qualname` without that package installed."""
    parts = module.split(".")
    for i in range(1, len(parts) + 1):
        name = ".".join(parts[:i])
        if name not in sys.modules:
            sys.modules[name] = types.ModuleType(name)
    cls = type(qualname, (base,), dict(attrs or {}))
    cls.__module__, cls.__qualname__ = module, qualname
    setattr(sys.modules[module], qualname, cls)
    return cls


def _b_lightning():
    AttributeDict = _fake_class("lightning.fabric.utilities.data", "AttributeDict", dict)
    hp = AttributeDict(lr=0.01, backbone="resnet18")
    return "lightning.ckpt", _saved({
        "epoch": 3, "global_step": 120, "pytorch-lightning_version": "2.4.0",
        "state_dict": {"model." + k: v for k, v in _state().items()},
        "hyper_parameters": hp, "hparams_name": "kwargs",
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.01, "params": [0, 1]}]}],
        "lr_schedulers": [], "callbacks": {"ModelCheckpoint": {"best_model_score": torch.tensor(0.5)}},
        "args": argparse.Namespace(data="coco.yaml", epochs=10, out=pathlib.PurePosixPath("runs/x"))})


def _b_fused_method():
    net = _TinyNet()
    net.forward_fused = net.fc.forward  # a bound method kept as an attribute (fused YOLO convs)
    return "bound_method.pt", _saved(net)


BENIGN: dict[str, Callable] = {
    "state dict (zip)": lambda: ("state.pt", _saved(_state())),
    "legacy format": lambda: ("legacy.pth", _saved(_state(), _use_new_zipfile_serialization=False)),
    "fp16 state dict": lambda: ("half.pt", _saved({k: v.half() for k, v in _state().items()})),
    "bfloat16 legacy": lambda: ("bf16.pth", _saved({k: v.bfloat16() for k, v in _state().items()},
                                                   _use_new_zipfile_serialization=False)),
    "numpy arrays in torch.save": lambda: ("with_numpy.pt", _saved({
        "w": torch.zeros(2), "best": np.arange(3), "score": np.float64(0.5),
        "rng": np.random.RandomState(0).get_state()})),
    "Lightning checkpoint": _b_lightning,
    "argparse.Namespace + pathlib": lambda: ("train_args.pt", _saved({
        "model": _state(), "args": argparse.Namespace(lr=0.1, save_dir=pathlib.Path("runs/exp"))})),
    "full pickled module": lambda: ("whole_model.pt", _saved(_TinyNet())),
    "bound method attribute": _b_fused_method,
    "optimizer + scheduler": lambda: ("train_state.pt", _saved(_train_state())),
    "plain pickle of a state dict": lambda: ("pickled.pkl", pickle.dumps(_state())),
    "containers and values": lambda: ("values.pt", _saved({
        "set": {1, 2}, "frozen": frozenset({3}), "complex": 1 + 2j, "bytes": b"\x00\x01",
        "bytearray": bytearray(b"ab"), "slice": slice(1, 5), "range": range(3),
        "od": collections.OrderedDict(a=1), "counter": collections.Counter("aab"),
        "dd": collections.defaultdict(list, {"x": [1]}), "date": datetime.datetime(2024, 1, 1),
        "delta": datetime.timedelta(seconds=3), "dtype": torch.float16, "device": torch.device("cpu"),
        "size": torch.Size([2, 3])})),
    "protocol 0 pickle": lambda: ("p0.pkl", pickle.dumps(collections.OrderedDict(a=[1, 2.5, "x"]),
                                                         protocol=0)),
    "safetensors": lambda: ("model.safetensors", _safetensors(_state())),
    "npy numeric": lambda: ("array.npy", _npy_buf(np.arange(12, dtype=np.float32).reshape(3, 4))),
    "npz numeric": lambda: ("arrays.npz", _npz({"a": np.arange(3), "b": np.ones((2, 2))})),
    "npy object array of strings": lambda: ("labels.npy", _npy_object("cat")),
    "TorchScript archive": lambda: _b_torchscript(),
    "parameters with requires_grad": lambda: ("params.pt", _saved(
        {"p": torch.nn.Parameter(torch.ones(3)), "buf": torch.zeros(2, dtype=torch.int64)})),
    "EMA + optimizer container": lambda: ("ema.pt", _saved(
        {"model": _state(), "ema": _state(), "optimizer": {"state": {}, "param_groups": []},
         "epoch": 7})),
    "typing annotations": lambda: ("typing.pt", _saved({"ann": __import__("typing").Optional[int]})),
    "torch op and math references": lambda: ("op_refs.pt", _saved({
        "act": torch.relu, "gelu": __import__("functools").partial(
            torch.nn.functional.gelu, approximate="tanh"), "scale": __import__("math").sqrt,
        "init": torch.nn.init.trunc_normal_})),
}


def _train_state():
    net = _TinyNet()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    loss = net.fc(torch.ones(2, 4)).sum()
    loss.backward()
    opt.step()
    sched = torch.optim.lr_scheduler.StepLR(opt, 3)
    return {"model": net.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), "epoch": 2}


def _safetensors(state) -> bytes:
    from safetensors.torch import save

    return save({k: v.contiguous() for k, v in state.items()})


def _npz(arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _b_torchscript():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        buf = io.BytesIO()
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), buf)
    return "scripted.pt", buf.getvalue()


def write_payloads(folder: pathlib.Path, marker: pathlib.Path) -> dict[str, pathlib.Path]:
    out = {}
    for label, (_, build) in PAYLOADS.items():
        name, data = build(marker)
        path = folder / name
        path.write_bytes(data)
        out[label] = path
    return out


def write_benign(folder: pathlib.Path) -> dict[str, pathlib.Path]:
    out = {}
    for label, build in BENIGN.items():
        name, data = build()
        path = folder / name
        path.write_bytes(data)
        out[label] = path
    return out


# --- tests ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def payload_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("payloads")
    marker = folder / "PAYLOAD-RAN"
    return write_payloads(folder, marker), marker


@pytest.fixture(scope="module")
def benign_files(tmp_path_factory):
    return write_benign(tmp_path_factory.mktemp("benign"))


@pytest.mark.parametrize("label", list(PAYLOADS))
def test_every_payload_fails_the_scan_and_never_runs(payload_files, label):
    files, marker = payload_files
    rec = inspect_file(files[label])
    safety = rec.get("safety") or {}
    denied = [x for x in safety.get("findings", []) if x["category"] == "denied"]
    assert safety.get("verdict") == "denied", (label, safety.get("findings"), rec.get("zip"))
    assert denied and all(x["reason"] for x in denied)
    assert not marker.exists()


@pytest.mark.parametrize("label", list(BENIGN))
def test_benign_files_do_not_fail(benign_files, label):
    rec = inspect_file(benign_files[label])
    safety = rec.get("safety") or {"verdict": "data", "findings": []}
    denied = [x for x in safety["findings"] if x["category"] == "denied"]
    assert not denied, (label, denied)
    problems = [rec.get("pickle_problem"), (rec.get("zip") or {}).get("problem"),
                (rec.get("safetensors") or {}).get("problem"), rec.get("npy_problem")]
    assert not any(problems), (label, problems)


def test_a_few_payloads_are_live_so_the_suite_means_something(tmp_path):
    """Controls: the same builders do run their code when unpickled for real."""
    marker = tmp_path / "ran"
    for label in ("os.system protocol 2", "STRING + STACK_GLOBAL", "logging.FileHandler"):
        _, data = PAYLOADS[label][1](marker)
        try:
            pickle.loads(data)
        except Exception:  # noqa: BLE001 - some return odd objects after running
            pass
        assert marker.exists(), label
        marker.unlink()
    _, data = PAYLOADS["duplicate data.pkl"][1](marker)
    (tmp_path / "dup.pt").write_bytes(data)
    torch.load(tmp_path / "dup.pt", weights_only=False)
    assert marker.exists()  # torch really reads the first, malicious data.pkl


def test_benign_verdicts_are_the_expected_ones(benign_files):
    verdict = {label: (inspect_file(path).get("safety") or {}).get("verdict", "data")
               for label, path in benign_files.items()}
    assert verdict["state dict (zip)"] == "data"
    assert verdict["legacy format"] == "data"
    assert verdict["numpy arrays in torch.save"] == "data"
    assert verdict["Lightning checkpoint"] == "library"  # AttributeDict, Namespace, PurePosixPath
    assert verdict["full pickled module"] == "foreign"  # tests' own _TinyNet class
    assert verdict["plain pickle of a state dict"] == "library"  # _load_from_bytes
    assert verdict["containers and values"] == "data"
    assert verdict["typing annotations"] == "data"


def test_denied_findings_name_the_call_and_where(payload_files):
    files, _ = payload_files
    rec = inspect_file(files["duplicate data.pkl"])
    assert rec["zip"]["duplicate_data_pkl"]["count"] == 2
    assert rec["zip"]["duplicate_data_pkl"]["torch_reads_index"] != \
        rec["zip"]["duplicate_data_pkl"]["zipfile_reads_index"]
    denied = [x for x in rec["safety"]["findings"] if x["category"] == "denied"]
    assert denied[0]["global"] in ("posix.system", "os.system")
    rec = inspect_file(files["nested _load_from_bytes"])
    where = [x["where"] for x in rec["safety"]["findings"] if x["category"] == "denied"]
    assert any("_load_from_bytes" in w for w in where)
    rec = inspect_file(files["getattr(__import__)"])
    reasons = {x["global"]: x["reason"] for x in rec["safety"]["findings"]}
    assert "builtins.__import__" in reasons and "builtins.getattr" in reasons


def test_what_a_weights_only_load_may_allow(benign_files):
    """Value classes the pickle calls (Namespace, Path) or only instantiates may be allowed;
    builtins.getattr never: a pickle that may call getattr can fetch any method."""
    from cvdoctor.checkpoint import safety

    def split(label):
        return safety.allowable(inspect_file(benign_files[label])["safety"]["findings"])

    allow, refuse = split("argparse.Namespace + pathlib")
    assert {"argparse.Namespace", "pathlib.PosixPath"} <= set(allow) and not refuse
    allow, refuse = split("bound method attribute")
    assert refuse == ["builtins.getattr"] and "builtins.getattr" not in allow
    called_library_class = {"global": "omegaconf.DictConfig", "category": safety.LIBRARY,
                            "uses": ["call"]}
    assert safety.allowable([called_library_class]) == ([], ["omegaconf.DictConfig"])
    assert safety.allowable([{**called_library_class, "uses": ["new"]}]) == (
        ["omegaconf.DictConfig"], [])


def test_bench_sets_are_json_describable():
    assert json.dumps({k: v[0] for k, v in PAYLOADS.items()})
    assert len(PAYLOADS) >= 75 and len(BENIGN) >= 22
