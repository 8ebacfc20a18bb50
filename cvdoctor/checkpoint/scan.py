"""Inspect one checkpoint file: format, safety, integrity and structure, as plain data.

Nothing here unpickles or imports torch. Every pickle that ``torch.load`` or ``numpy.load`` could
unpickle from the file is replayed by the symbolic machine (``pickle_vm``):

- torch zip archives: ``<prefix>/data.pkl`` as torch locates it, *and* every other member whose
  name equals it up to case (duplicates), plus members that look like pickles but that nothing in
  the archive explains (a hidden second payload); TorchScript archives are listed, not unpickled;
- legacy ``torch.save`` files: the magic number, protocol, system info, object and storage-key
  pickles, and the storage data sizes after them;
- the legacy tar format: the pickles in its ``storages``, ``tensors`` and ``pickle`` members;
- plain pickles (``pickle.load``, ``numpy.load(allow_pickle=True)``);
- ``.npy`` object arrays and every ``.npy`` inside an ``.npz``;
- torch.save bytes nested in a pickle (``torch.storage._load_from_bytes``, which torch loads with
  ``weights_only=False``), recursively.

The result is a dict: the keys ``facts/checkpoints.py`` has always produced (``kind``, ``zip``,
``pickle``, ``safetensors``, ...) plus ``format``, ``safety`` (one entry per global and per unsafe
event, with where it was found), ``structure`` (tensors by key) and ``integrity``.
"""
from __future__ import annotations

import io
import os
import stat
import tarfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO

from cvdoctor.checkpoint import formats, safety, structure
from cvdoctor.checkpoint.pickle_vm import (Blob, Event, Global, LongText, Machine, Obj, PList,
                                           PTuple, Run)
from cvdoctor.checkpoint.zipreader import TorchZip, ZipError, read_archive
from cvdoctor.files import special_kind

HEAD_BYTES = 4096
NESTED_DEPTH = 3
# Records torch itself writes next to data.pkl; anything else that looks like a pickle is hidden.
TORCH_RECORDS = {"version", ".data/version", "byteorder", ".format_version",
                 ".storage_alignment", ".data/serialization_id"}
PICKLE_HEADS = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
# What torch.save's legacy format starts with: PROTO 2, then the magic number as a LONG1.
LEGACY_HEAD = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"


class Scan:
    """Everything found while scanning one file (and what it nests)."""

    def __init__(self, depth: int = 0):
        self.depth = depth
        self.streams: list[dict[str, Any]] = []  # one per pickle replayed
        self.runs: list[tuple[str, Run]] = []
        self.nested: list[tuple[str, "Scan"]] = []
        self.storages: list[structure.StorageSpec] = []

    # hooks for the machine ------------------------------------------------------------------

    def on_persistent(self, run: Run, obj: Obj) -> None:
        spec = structure.storage_from_pid(obj.args)
        obj.info = spec
        if spec is not None:
            self.storages.append(spec)

    def on_call(self, run: Run, obj: Obj) -> str | None:
        """Indirect uses, nested payloads and context: returns what vouches for this call."""
        func = obj.func
        if not isinstance(func, Global):
            return None
        ref = func.ref
        args = obj.args.items if isinstance(obj.args, PTuple) else []
        for index, how in safety.INDIRECT.get(ref, ()):
            if index >= len(args):
                continue
            target = args[index]
            if isinstance(target, Global):
                if how == "init" and target.ref == "builtins.object":
                    continue
                run.use(target, how, obj.pos, f"via {ref}")
            elif isinstance(target, Obj):
                # A value built while loading (a bound method from getattr, a partial) that
                # this function calls or instantiates: the same as calling it directly.
                run.events.append(Event(
                    "computed-call", obj.pos,
                    f"{ref} {'instantiates' if how == 'new' else 'calls'} "
                    f"{_built_value(target)}"))
        if ref == "builtins.getattr" and len(args) == 2:
            target, name = args
            if isinstance(target, Obj) and target.how in ("new", "call") and isinstance(name, str) \
                    and not name.startswith("_"):
                return f"method:{name}"
            if isinstance(target, Global) and target.ref in safety.TORCH_OP_NAMESPACES \
                    and isinstance(name, str) and name.isidentifier() and not name.startswith("_"):
                return f"torchop:{name}"  # how pickle saves a reference to torch.relu
        elif ref == "builtins.type" and len(args) == 1 and (
                args[0] is None or (isinstance(args[0], Global) and args[0].ref in (
                    "builtins.Ellipsis", "builtins.NotImplemented"))):
            return "typeof"  # how pickle saves NoneType
        elif ref in ("operator.getitem", "_operator.getitem") and args \
                and isinstance(args[0], Global) and args[0].module == "typing":
            return "typing"
        elif ref == "_codecs.encode" and args:
            obj.info = _encoded_bytes(args[0])
        elif ref == "torch.storage._load_from_bytes" and args:
            self._nested(run, obj, args[0])
        return None

    def _nested(self, run: Run, obj: Obj, arg: Any) -> None:
        label = f"bytes passed to torch.storage._load_from_bytes at byte {obj.pos}"
        if self.depth >= NESTED_DEPTH:
            run.use(Global("<unresolved>", "torch.save data nested too deep to scan", obj.pos),
                    "call", obj.pos)
            return
        stream = _bytes_stream(arg)
        if stream is None:
            run.use(Global("<unresolved>", "torch.save data that is not a byte string",
                           obj.pos), "call", obj.pos)
            return
        inner = Scan(self.depth + 1)
        data = _TempView(stream)
        size = data.size()
        head = data.read_at(0, HEAD_BYTES)
        rec: dict[str, Any] = {}
        if head.startswith(b"PK\x03\x04"):
            _scan_zip(inner, data.f, size, rec, label)
        else:
            _scan_pickle_file(inner, data.f, size, rec, label, expect_torch=True)
        self.nested.append((label, inner))

    # results ---------------------------------------------------------------------------------

    def replay(self, stream: BinaryIO, label: str) -> Run:
        machine = Machine(stream, on_call=self.on_call, on_persistent=self.on_persistent)
        run = machine.execute()
        self.runs.append((label, run))
        self.streams.append({"label": label, "ops": run.ops, "protocol": run.protocol,
                             "problem": run.problem})
        return run

    def all_runs(self) -> list[tuple[str, Run]]:
        out = list(self.runs)
        for label, inner in self.nested:
            out.extend((f"{label} > {lab}", r) for lab, r in inner.all_runs())
        return out

    def close(self) -> None:
        for _, run in self.runs:
            run.close()
        for _, inner in self.nested:
            inner.close()


def _built_value(v: Obj) -> str:
    """A value the pickle builds, in words: what an indirect call would really call."""
    func = v.func
    args = v.args.items if isinstance(v.args, PTuple) else []
    if isinstance(func, Global) and func.ref == "builtins.getattr" and len(args) == 2 \
            and isinstance(args[1], str):
        owner = args[0]
        of = (f"a {owner.func.ref} built while loading"
              if isinstance(owner, Obj) and isinstance(owner.func, Global)
              else owner.ref if isinstance(owner, Global) else "an object built while loading")
        return f"the method {args[1]!r} of {of} (fetched with getattr)"
    if isinstance(func, Global):
        return f"the result of {func.ref}(...), a value built while loading"
    return "a value built while loading, not a named function"


def _encoded_bytes(v: Any) -> Any:
    if isinstance(v, str):
        return v.encode("latin-1", "replace")
    if isinstance(v, LongText):
        return v
    return None


def _bytes_stream(v: Any) -> BinaryIO | None:
    if isinstance(v, Obj) and v.info is not None:
        v = v.info
    if isinstance(v, bytes):
        return io.BytesIO(v)
    if isinstance(v, (Blob, LongText)) and v.spool is not None:
        v.spool.seek(0)
        return v.spool
    if isinstance(v, (Blob, LongText)):
        return io.BytesIO(v.head.encode("latin-1") if isinstance(v.head, str) else v.head)
    return None


class _TempView:
    def __init__(self, f: BinaryIO):
        self.f = f

    def size(self) -> int:
        self.f.seek(0, 2)
        return self.f.tell()

    def read_at(self, pos: int, n: int) -> bytes:
        self.f.seek(pos)
        return self.f.read(n)


# --- one file ------------------------------------------------------------------------------------

def open_regular(path: Path) -> tuple[BinaryIO | None, os.stat_result | None, str | None, str]:
    """Open a path for reading only if it is a regular file; never blocks on a FIFO or a device.
    Returns (file, stat, problem kind, message)."""
    try:
        st = os.stat(path)
    except FileNotFoundError as exc:  # a dangling link too
        return None, None, "missing", f"{type(exc).__name__}: {exc}"
    except OSError as exc:  # ELOOP, EACCES on a parent, ENAMETOOLONG, ...
        return None, None, "unreadable", f"{type(exc).__name__}: {exc}"
    if stat.S_ISDIR(st.st_mode):
        return None, st, "directory", "is a directory"
    if not stat.S_ISREG(st.st_mode):
        return None, st, "special", f"is {special_kind(st.st_mode)}, not a file"
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        return None, st, "unreadable", f"{type(exc).__name__}: {exc}"
    st2 = os.fstat(fd)
    if not stat.S_ISREG(st2.st_mode):  # replaced between stat and open
        os.close(fd)
        return None, st2, "special", "is not a regular file"
    return os.fdopen(fd, "rb", buffering=256 * 1024), st2, None, ""


def inspect_file(path: Path, *, deep: bool = False, structure_wanted: bool = True) -> dict[str, Any]:
    """Everything cvdoctor can say about one file without running it."""
    path = Path(path)
    rec: dict[str, Any] = {"path": str(path), "name": path.name}
    f, st, problem, message = open_regular(path)
    if f is None:
        rec.update(kind=problem, size=getattr(st, "st_size", None) if st else None, error=message)
        return rec
    with f:
        rec["size"], rec["mtime_ns"] = st.st_size, st.st_mtime_ns
        try:
            head = f.read(HEAD_BYTES)
        except OSError as exc:
            rec.update(kind="unreadable", error=f"{type(exc).__name__}: {exc}")
            return rec
        rec["first_bytes"] = head[:16].hex()
        kind = formats.sniff(head, st.st_size)
        if kind in ("unknown", "text") and path.suffix == ".safetensors" and len(head) >= 8:
            kind = "safetensors"  # a broken header: say what is wrong with it
        scan = Scan()
        try:
            if kind in ("text", "unknown") and formats.maybe_protocol0(head):
                f.seek(0)
                trial = Machine(f).execute()
                trial.close()
                if trial.problem is None and trial.ops > 1:
                    kind = "pickle"
            rec["kind"] = kind
            size = st.st_size
            if kind == "zip":
                _scan_zip(scan, f, size, rec, None, deep=deep)
            elif kind == "pickle":
                _scan_pickle_file(scan, f, size, rec, None)
            elif kind == "npy":
                f.seek(0)
                _scan_npy(scan, f, size, rec, "npy")
                rec["format"] = "npy"
            elif kind == "tar":
                _scan_tar(scan, path, rec)
            elif kind == "safetensors":
                rec["safetensors"] = formats.safetensors_header(f, size)
                rec["format"] = "safetensors"
                specs = rec["safetensors"].pop("specs", None)
                if specs and structure_wanted:
                    rec["structure"] = {"tensors": {k: {**v, "device": "cpu", "kind": "tensor"}
                                                    for k, v in specs.items()},
                                        "top": {"type": "dict", "n_keys": len(specs)}}
            elif kind == "lfs-pointer":
                rec["lfs"] = formats.read_lfs_pointer(head)
            elif kind in ("html", "xml", "text"):
                rec["text_head"] = head[:160].decode("utf-8", "replace")
            _finish(scan, rec, structure_wanted)
        except OSError as exc:
            rec["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            scan.close()
    return rec


# --- zip -----------------------------------------------------------------------------------------

def _scan_zip(scan: Scan, f: BinaryIO, size: int, rec: dict[str, Any], label: str | None,
              deep: bool = False) -> None:
    z: dict[str, Any] = {"eocd": False, "complete": False}
    rec["zip"] = z
    try:
        archive = read_archive(f, size)
    except ZipError as exc:
        z["problem"] = str(exc)
        z["eocd"] = "end-of-central-directory" not in str(exc)
        rec.setdefault("format", "zip")  # which kind of zip cannot be told without a directory
        return
    z["eocd"] = True
    z["members"] = len(archive.entries)
    anomalies = archive.anomalies()
    if anomalies:
        z["anomalies"] = anomalies[:10]
    if archive.problems:
        z["problem"] = archive.problems[0]
    else:
        z["complete"] = True
    names = [e.name for e in archive.entries]
    z["not_in_subdirectory"] = [n for n in names if "/" not in n][:5]
    outside = archive.outside_prefix()
    records = archive.records()
    prefix = archive.prefix
    if prefix is not None:
        z["prefix"] = prefix.decode("utf-8", "replace")
    npy_members = [e for e in archive.entries if e.name.lower().endswith(".npy")]
    data_pkls = archive.candidates("data.pkl")
    if "constants.pkl" in records and not outside:
        z["format"] = "torchscript"
        z["pickles"] = []
    elif data_pkls:
        z["format"] = "torch-zip"
    elif npy_members:
        z["format"] = "npz"
    else:
        z["format"] = "plain-zip"
    rec["format"] = z["format"]
    if outside and z["format"] == "torch-zip":
        z["torch_refuses"] = (f"member {outside[0].name} is outside the folder "
                              f"{z.get('prefix')}/ that torch reads")
    where = (label + " > ") if label else ""
    if z["format"] == "torch-zip":
        picked = archive.locate("data.pkl")
        z["data_pkl"] = picked.name if picked else None
        z["pickles"] = [e.name for e in data_pkls]
        if len(data_pkls) > 1:
            py = archive.zipfile_pick(data_pkls[0].raw_name)
            z["duplicate_data_pkl"] = {"torch_reads": picked.name if picked else None,
                                       "torch_reads_index": picked.index if picked else None,
                                       "zipfile_reads_index": py.index if py else None,
                                       "count": len(data_pkls)}
        refusal = picked.refused_by_miniz if picked else None
        if refusal:
            z["torch_refuses"] = f"data.pkl is {refusal}"
        version = archive.locate(".data/version") or archive.locate("version")
        if version is not None:
            z["version"] = _small_member(archive, f, version)
        runs = {}
        for e in sorted(data_pkls, key=lambda e: e is not picked):
            try:
                stream = archive.open(f, e)
            except (ZipError, zlib.error) as exc:
                scan.streams.append({"label": where + e.name, "problem": str(exc)})
                continue
            runs[e.index] = scan.replay(_buffered(stream), where + e.name)
        main = runs.get(picked.index) if picked else None
        if main is not None:
            rec["_result"] = main.result
            if main.problem:
                z.setdefault("pickle_problem", main.problem)
        _check_storages(scan, archive, f, z, main)
        _scan_hidden(scan, archive, f, z, where, {e.index for e in data_pkls})
        if deep:
            bad = [e.name for e in archive.entries if archive.crc_ok(f, e) is False]
            z["crc_checked"] = len(archive.entries)
            if bad:
                z["crc_mismatch"] = bad[:10]
    elif z["format"] == "npz":
        z["pickles"] = []
        for e in npy_members:
            try:
                stream = _buffered(archive.open(f, e))
            except (ZipError, zlib.error):
                continue
            _scan_npy(scan, stream, e.size, rec, where + e.name, member=True)
    elif z["format"] == "plain-zip":
        z["pickles"] = []
        _scan_hidden(scan, archive, f, z, where, set())


def _small_member(archive: TorchZip, f: BinaryIO, entry) -> str | None:
    try:
        return archive.open(f, entry, limit=64).read(64).decode("ascii", "replace").strip()
    except (ZipError, OSError, zlib.error):
        return None


def _check_storages(scan: Scan, archive: TorchZip, f: BinaryIO, z: dict[str, Any],
                    main: Run | None) -> None:
    """Each storage data.pkl names must exist as data/<key> with exactly numel x itemsize bytes
    (torch checks the size; a cut or swapped member fails only when the tensor is loaded)."""
    if main is None:
        return
    problems = []
    seen = set()
    for spec in scan.storages:
        if spec.key in seen:
            continue
        seen.add(spec.key)
        entry = archive.locate(f"data/{spec.key}")
        item = structure.ELEMENT_SIZE.get(spec.dtype)
        if entry is None:
            problems.append(f"storage data/{spec.key} is missing")
        elif item and spec.numel is not None and entry.size != spec.numel * item:
            problems.append(f"storage data/{spec.key} has {entry.size:,} bytes, its tensor needs "
                            f"{spec.numel * item:,}")
    z["storages"] = len(seen)
    if problems:
        z["storage_problems"] = problems[:10]
        z.setdefault("problem", problems[0])
        z["complete"] = False


def _scan_hidden(scan: Scan, archive: TorchZip, f: BinaryIO, z: dict[str, Any], where: str,
                 skip: set[int]) -> None:
    """Members that look like pickles although nothing in a torch archive explains them."""
    storage_keys = {f"data/{s.key}" for s in scan.storages}
    prefix = (z.get("prefix") or "") + "/"
    hidden = []
    for e in archive.entries:
        if e.index in skip:
            continue
        rel = e.name[len(prefix):] if e.name.startswith(prefix) else e.name
        if rel in TORCH_RECORDS or rel in storage_keys:
            continue
        try:
            head = archive.open(f, e, limit=16).read(16)
        except (ZipError, OSError, zlib.error):
            continue
        if head.startswith(PICKLE_HEADS) or (e.name.lower().endswith((".pkl", ".pickle"))
                                             and formats.maybe_protocol0(head)):
            hidden.append(e.name)
            try:
                scan.replay(_buffered(archive.open(f, e)), f"{where}{e.name} (not read by torch)")
            except (ZipError, zlib.error):
                pass
    if hidden:
        z["hidden_pickles"] = hidden[:10]


def _buffered(stream: Any) -> BinaryIO:
    return io.BufferedReader(stream, 256 * 1024)


# --- pickles -------------------------------------------------------------------------------------

def _scan_pickle_file(scan: Scan, f: BinaryIO, size: int, rec: dict[str, Any],
                      label: str | None, expect_torch: bool = False) -> None:
    """A raw pickle stream: the legacy torch.save layout (magic number first) or a plain one."""
    where = (label + " > ") if label else ""
    f.seek(0)
    legacy_head = f.read(len(LEGACY_HEAD)) == LEGACY_HEAD
    f.seek(0)
    first = scan.replay(f, where + "pickle 1")
    if legacy_head or (first.problem is None and first.result == formats.TORCH_LEGACY_MAGIC):
        rec["format"] = "torch-legacy"
        names = ["protocol version", "system info", "object", "storage keys"]
        runs = [first]
        for n in names:
            run = scan.replay(f, f"{where}legacy {n}")
            runs.append(run)
            if run.problem:
                break
        rec["_result"] = runs[3].result if len(runs) > 3 and runs[3].problem is None else None
        problem = next((r.problem for r in runs if r.problem), None)
        if problem is None and len(runs) == 5:
            problem = _legacy_storage_sizes(scan, runs[4].result, f, size, rec)
        if problem:
            rec["pickle_problem"] = problem
        return
    rec["format"] = "plain-pickle"
    rec["_result"] = first.result if first.problem is None else None
    if first.problem:
        rec["pickle_problem"] = first.problem
        return
    # pickle.load stops at STOP; np.load and torch's legacy loader read on. Several pickles back
    # to back are unusual enough to scan all of them.
    pos = f.tell()
    more = 0
    while pos < size and more < 16:
        nxt = f.read(2)
        f.seek(pos)
        if not nxt or not (nxt[0] == 0x80 or formats.maybe_protocol0(nxt)):
            break
        run = scan.replay(f, f"{where}pickle {more + 2}")
        more += 1
        if run.problem:
            break
        pos = f.tell()
    if pos < size:
        rec["trailing_bytes"] = size - pos


def _legacy_storage_sizes(scan: Scan, keys: Any, f: BinaryIO, size: int,
                          rec: dict[str, Any]) -> str | None:
    """After the storage-key pickle come the storages: an 8-byte element count and the data,
    in key order. Their total must fill the rest of the file exactly."""
    if not isinstance(keys, PList):
        return "the storage-key pickle is not a list"
    numel = {s.key: s for s in scan.storages}
    pos = f.tell()
    need = 0
    for k in keys.items:
        spec = numel.get(str(k))
        if spec is None or spec.numel is None:
            return None  # cannot tell; torch will say
        need += 8 + spec.numel * structure.ELEMENT_SIZE.get(spec.dtype, 1)
    rec["legacy_data"] = {"expected_bytes": need, "present_bytes": size - pos}
    if size - pos < need:
        return (f"storage data needs {need:,} bytes after the pickles, the file has "
                f"{size - pos:,}: it is truncated")
    return None


def _scan_npy(scan: Scan, f: BinaryIO, size: int, rec: dict[str, Any], label: str,
              member: bool = False) -> None:
    start = f.tell()
    header = formats.npy_header(f)
    arrays = rec.setdefault("npy", [])
    header["label"] = label
    arrays.append(header)
    if "problem" in header:
        rec.setdefault("pickle_problem" if not member else "npy_problem", header["problem"])
        return
    if header["object"]:
        f.seek(start + header["data_offset"])
        run = scan.replay(f, f"{label} (object array: a pickle)")
        if run.problem:
            rec.setdefault("pickle_problem", run.problem)
    elif header["itemsize"] is not None:
        want = header["numel"] * header["itemsize"]
        have = size - header["data_offset"]
        if have < want:
            rec.setdefault("npy_problem", f"{label}: array needs {want:,} bytes, {have:,} present")


def _scan_tar(scan: Scan, path: Path, rec: dict[str, Any]) -> None:
    """torch's oldest format: a tar with 'storages', 'tensors' and 'pickle' members."""
    rec["format"] = "tar"
    try:
        with tarfile.open(path, mode="r:") as tar:
            names = tar.getnames()[:1000]
            if not {"storages", "tensors", "pickle"} <= set(names):
                return
            rec["format"] = "torch-tar"
            for member in ("storages", "tensors", "pickle"):
                fobj = tar.extractfile(member)
                if fobj is None:
                    continue
                data = io.BufferedReader(fobj, 256 * 1024) if not isinstance(fobj, io.BufferedReader) else fobj
                run = scan.replay(data, f"tar member {member}")
                if member == "pickle":
                    rec["_result"] = run.result if run.problem is None else None
                if run.problem:
                    rec.setdefault("pickle_problem", run.problem)
    except (tarfile.TarError, OSError) as exc:
        rec["pickle_problem"] = f"tar archive unreadable: {exc}"


# --- verdicts ------------------------------------------------------------------------------------

def judge(scan: Scan) -> dict[str, Any]:
    """One entry per global and per unsafe event, with its category and where it was found."""
    per_ref: dict[str, dict[str, Any]] = {}
    events = []
    for label, run in scan.all_runs():
        for ref, uses in run.globals.items():
            entry = per_ref.setdefault(ref, {"ref": ref, "hows": set(), "details": set(),
                                             "where": label, "pos": uses[0].pos,
                                             "module": run.names[ref][0],
                                             "name": run.names[ref][1]})
            entry["hows"].update(u.how for u in uses)
            entry["details"].update(run.call_details.get(ref, ()))
        for ev in run.events:
            events.append({"kind": ev.kind, "detail": ev.detail, "where": label, "pos": ev.pos})
    findings = []
    for ref, e in sorted(per_ref.items()):
        v = safety.classify(e["module"], e["name"], frozenset(e["hows"]), frozenset(e["details"]))
        shown = ref if e["module"] != "<unresolved>" else f"<{e['name']}>"
        findings.append({"global": shown, "category": v.category, "reason": v.reason,
                         "uses": sorted(e["hows"]), "where": e["where"], "pos": e["pos"]})
    for ev in events:
        findings.append({"global": None, "category": safety.DENIED, "reason": ev["detail"],
                         "uses": [ev["kind"]], "where": ev["where"], "pos": ev["pos"]})
    worst = max((safety.RANK[x["category"]] for x in findings), default=0)
    verdict = {0: safety.DATA, 1: safety.LIBRARY, 2: safety.FOREIGN, 3: safety.DENIED}[worst]
    return {"verdict": verdict, "findings": findings,
            "pickles": [s["label"] for s in scan.streams]}


def _legacy_pickle_view(safety_rec: dict[str, Any], problem: str | None) -> dict[str, Any]:
    by = {safety.LEGACY_NAMES[c]: [] for c in safety.RANK}
    refs = []
    for x in safety_rec["findings"]:
        name = x["global"] or f"<{x['uses'][0]}: {x['reason']}>"
        if x["global"]:
            refs.append(name)
        by[safety.LEGACY_NAMES[x["category"]]].append(name)
    # Named globals first, then events ("<computed-call: ...>"), so messages name calls first.
    out: dict[str, Any] = {"globals": sorted(set(refs)),
                           **{k: sorted(set(v), key=lambda n: (n.startswith("<"), n))
                              for k, v in by.items()}}
    if problem:
        out["problem"] = problem
    return out


def _finish(scan: Scan, rec: dict[str, Any], structure_wanted: bool) -> None:
    result = rec.pop("_result", None)
    if not scan.runs:
        return
    verdict = judge(scan)
    rec["safety"] = verdict
    problem = rec.get("pickle_problem") or (rec.get("zip") or {}).get("pickle_problem")
    rec["pickle"] = _legacy_pickle_view(verdict, problem)
    if structure_wanted and result is not None:
        st = structure.read(result)
        rec["structure"] = st.to_dict()
        devices = sorted({s.location for s in scan.storages if s.location})
        if devices:
            rec["structure"]["devices"] = devices
