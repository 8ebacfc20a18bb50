"""A pickle machine that runs nothing: it replays the opcodes on a symbolic stack.

Listing opcodes is not enough to know what a pickle calls: ``STACK_GLOBAL`` takes its module and
name from the stack (pushed strings, memo entries, ``STRING`` opcodes), ``REDUCE`` calls whatever
sits below its arguments, ``BUILD`` can rewrite a class, ``APPENDS``/``SETITEMS`` call methods of
arbitrary objects. So this machine keeps the real stack and memo, with symbolic stand-ins for what
a load would create (``Global``, ``Obj``), and records every use of every global: referenced,
passed to a call, called, instantiated, modified. The safety policy (``safety.py``) judges those
uses; the structure reader (``structure.py``) reads tensors from the rebuild calls' arguments.

Semantics follow CPython's C unpickler (``_pickle.c``) where it differs from ``pickletools``:
``GLOBAL`` names are UTF-8 and not escape-decoded, ``INT``/``LONG`` accept base prefixes, a
``PROTO`` below 3 turns on the Python 2 name mapping, dotted names resolve from protocol 4, and
whatever ran before a broken opcode has already run (the "nullifAI" trick), so the uses recorded
up to the break still count.

Memory stays flat: byte strings larger than ``KEEP_BYTES`` are not kept; those that look like a
nested torch or pickle payload are spooled to a temporary file so the caller can scan them.
"""
from __future__ import annotations

import _compat_pickle
import codecs
import io
import struct
import tempfile
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable

KEEP_BYTES = 4096  # byte strings up to this size are kept verbatim
NESTED_PREFIXES = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05",
                   b"\x93NUMPY")
MAX_OPS = 50_000_000
MAX_STACK = 5_000_000
MAX_LINE = 1 << 20  # a protocol-0 argument line longer than this is not a real checkpoint
HIGHEST_PROTOCOL = 5
TRUNCATED = "pickle stream ends before its STOP opcode"


class PickleBroken(Exception):
    """The real unpickler would stop here with an error (after running what came before)."""


# --- symbolic values -----------------------------------------------------------------------------

@dataclass(eq=False)
class Global:
    module: str
    name: str
    pos: int

    @property
    def ref(self) -> str:
        return f"{self.module}.{self.name}"

    def __repr__(self) -> str:
        return self.ref


@dataclass(eq=False)
class Obj:
    """What a call, an instantiation or a persistent id would produce."""

    how: str  # "call" | "new" | "persistent"
    func: Any  # the callable or class (a Global, or something computed)
    args: Any
    pos: int
    state: Any = None  # BUILD argument
    items: list = field(default_factory=list)  # SETITEM(S) on it
    appended: list = field(default_factory=list)  # APPEND(S) on it
    info: Any = None  # filled by listeners (tensor specs, nested scans, ...)

    def __repr__(self) -> str:
        return f"<{self.how} {self.func!r}>"


@dataclass(eq=False)
class PList:
    items: list


@dataclass(eq=False)
class PTuple:
    items: list


@dataclass(eq=False)
class PDict:
    items: list  # (key, value) pairs, in order


@dataclass(eq=False)
class PSet:
    items: list
    frozen: bool = False


@dataclass(eq=False)
class Blob:
    """A large byte string: its length, its first bytes, and a spooled copy when it may be a
    nested checkpoint or pickle."""

    length: int
    head: bytes
    spool: Any = None  # a file object with the full bytes, or None

    def open(self) -> BinaryIO | None:
        if self.spool is None:
            return None
        self.spool.seek(0)
        return self.spool


@dataclass(eq=False)
class LongText:
    """A long text string (protocol 2 stores bytes as text for ``_codecs.encode``)."""

    length: int
    head: str
    spool: Any = None  # latin-1 encoded bytes, when they may be a nested payload


class _Mark:
    pass


MARK = _Mark()


# --- uses ----------------------------------------------------------------------------------------

@dataclass
class Use:
    """One way a global is used: 'ref' (pushed, stored), 'passed' (argument of a call), 'call',
    'new' (instantiated without __init__), 'build' (BUILD applied to it), 'mutate'."""

    how: str
    pos: int
    detail: str = ""


@dataclass
class Event:
    """Something that is unsafe whatever the globals are (calling a computed value, ...)."""

    kind: str
    pos: int
    detail: str


@dataclass
class Run:
    """What one pickle stream does."""

    globals: dict[str, list[Use]] = field(default_factory=dict)
    names: dict[str, tuple[str, str]] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    call_details: dict[str, set] = field(default_factory=dict)  # ref -> what hooks said per call
    result: Any = None
    problem: str | None = None  # the stream breaks (truncated or malformed)
    stopped_at: int | None = None  # offset just after STOP
    protocol: int = 0
    ops: int = 0
    persistent_ids: int = 0
    spools: list = field(default_factory=list)

    def use(self, g: Global, how: str, pos: int, detail: str = "") -> None:
        self.names.setdefault(g.ref, (g.module, g.name))
        uses = self.globals.setdefault(g.ref, [])
        if len(uses) < 64 or how not in {u.how for u in uses}:
            uses.append(Use(how, pos, detail))

    def close(self) -> None:
        for s in self.spools:
            try:
                s.close()
            except OSError:
                pass
        self.spools.clear()


# Listener hooks: called on every call so the structure reader and the safety policy can attach
# meaning (a tensor's shape, a nested scan) without the machine knowing about torch.
CallHook = Callable[[Run, Obj], None]


# --- the machine ---------------------------------------------------------------------------------

class Machine:
    def __init__(self, stream: BinaryIO, *, on_call: CallHook | None = None,
                 on_persistent: Callable[[Run, Obj], None] | None = None,
                 fix_imports: bool = True, spool_nested: bool = True):
        self.f = stream
        self.on_call = on_call
        self.on_persistent = on_persistent
        self.fix_imports = fix_imports
        self.spool_nested = spool_nested
        self.stack: list[Any] = []
        self.marks: list[list[Any]] = []
        self.memo: dict[int, Any] = {}
        self.run = Run()
        self.start = stream.tell() if stream.seekable() else 0

    # reading ------------------------------------------------------------------------------

    def _read(self, n: int) -> bytes:
        data = self.f.read(n)
        if len(data) != n:
            raise PickleBroken(TRUNCATED)
        return data

    def _line(self) -> bytes:
        line = self.f.readline(MAX_LINE)
        if not line.endswith(b"\n"):
            raise PickleBroken(TRUNCATED if len(line) < MAX_LINE
                               else "argument line too long")
        return line[:-1]

    def _big_bytes(self, n: int) -> bytes | Blob:
        if n <= KEEP_BYTES:
            return self._read(n)
        head = self._read(min(64, n))
        spool = None
        if self.spool_nested and head.startswith(NESTED_PREFIXES):
            spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 ** 2)
            spool.write(head)
            self.run.spools.append(spool)
        left = n - len(head)
        while left:
            chunk = self.f.read(min(left, 1 << 20))
            if not chunk:
                raise PickleBroken(TRUNCATED)
            if spool is not None:
                spool.write(chunk)
            left -= len(chunk)
        return Blob(n, head, spool)

    def _big_text(self, n: int) -> str | LongText:
        if n <= KEEP_BYTES:
            try:
                return self._read(n).decode("utf-8", "surrogatepass")
            except UnicodeDecodeError as exc:
                raise PickleBroken(f"text is not UTF-8: {exc}") from None
        dec = codecs.getincrementaldecoder("utf-8")("surrogatepass")
        head = ""
        spool = None
        left = n
        first = True
        while left:
            chunk = self.f.read(min(left, 1 << 20))
            if not chunk:
                raise PickleBroken(TRUNCATED)
            left -= len(chunk)
            try:
                text = dec.decode(chunk, final=left == 0)
            except UnicodeDecodeError as exc:
                raise PickleBroken(f"text is not UTF-8: {exc}") from None
            if first:
                head = text[:64]
                first = False
                raw = head.encode("latin-1", "replace")
                if self.spool_nested and raw.startswith(NESTED_PREFIXES):
                    spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 ** 2)
                    self.run.spools.append(spool)
            if spool is not None:
                spool.write(text.encode("latin-1", "replace"))
        return LongText(n, head, spool)

    # stack helpers -----------------------------------------------------------------------

    def _push(self, v: Any) -> None:
        if len(self.stack) >= MAX_STACK:
            raise PickleBroken("stack grows beyond any real checkpoint")
        self.stack.append(v)

    def _pop(self) -> Any:
        if not self.stack:
            raise PickleBroken("unpickling stack underflow")
        return self.stack.pop()

    def _top(self) -> Any:
        if not self.stack:
            raise PickleBroken("unpickling stack underflow")
        return self.stack[-1]

    def _pop_mark(self) -> list[Any]:
        if not self.marks:
            raise PickleBroken("could not find MARK")
        items = self.stack
        self.stack = self.marks.pop()
        return items

    # globals ------------------------------------------------------------------------------

    def _global(self, module: str, name: str, pos: int) -> Global:
        if self.run.protocol < 3 and self.fix_imports:
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        g = Global(module, name, pos)
        self.run.use(g, "ref", pos)
        return g

    def _unresolved(self, pos: int, why: str) -> Global:
        g = Global("<unresolved>", why, pos)
        self.run.use(g, "ref", pos)
        return g

    def _note_args(self, args: Any, pos: int, callee: str) -> None:
        """Globals handed to a call: the callee's code may call them."""
        for v in _shallow(args):
            if isinstance(v, Global):
                self.run.use(v, "passed", pos, callee)

    def _call(self, func: Any, args: Any, pos: int, how: str = "call") -> Obj:
        obj = Obj(how, func, args, pos)
        # The hook may vouch for this one call ("a bound method of an object the pickle built");
        # every call of a global is recorded with what the hook said, or "" when it said nothing.
        detail = (self.on_call(self.run, obj) if self.on_call is not None else None) or ""
        if isinstance(func, Global):
            self.run.use(func, how, pos, detail)
            self.run.call_details.setdefault(func.ref, set()).add(detail)
            self._note_args(args, pos, func.ref)
        else:
            self.run.events.append(Event(
                "computed-call", pos,
                f"{'instantiates' if how == 'new' else 'calls'} {_describe(func)}, a value built "
                "while loading, not a named function"))
        return obj

    def _modify(self, target: Any, pos: int, what: str) -> None:
        if isinstance(target, Global):
            self.run.use(target, "build" if what == "BUILD" else "mutate", pos, what)
            self.run.events.append(Event(
                "modifies-global", pos, f"{what} changes {target.ref} itself (monkey-patching)"))

    # main loop ----------------------------------------------------------------------------

    def execute(self) -> Run:
        run = self.run
        try:
            self._loop()
        except PickleBroken as exc:
            run.problem = str(exc)
        except (struct.error, ValueError, OverflowError, MemoryError, RecursionError) as exc:
            run.problem = f"{type(exc).__name__}: {exc}"
        return run

    def _pos(self) -> int:
        """Offset of the opcode being executed (called right after reading it)."""
        return self.f.tell() - 1 - self.start

    def _loop(self) -> None:  # noqa: C901 - one branch per opcode, like the real unpickler
        # The most frequent opcodes of torch.save pickles come first: this loop is the cost of
        # a scan (about a microsecond per opcode).
        run = self.run
        f = self.f
        read = f.read
        memo = self.memo
        unpack = struct.unpack
        ops = 0
        try:
            while True:
                code = read(1)
                if not code:
                    if ops == 0:
                        raise PickleBroken("no pickle data")
                    raise PickleBroken(TRUNCATED)
                ops += 1
                op = code[0]
                if op == 0x71:  # BINPUT
                    memo[self._read(1)[0]] = self._top()
                elif op == 0x68:  # BINGET
                    key = self._read(1)[0]
                    if key not in memo:
                        raise PickleBroken(f"memo value not found at index {key}")
                    self.stack.append(memo[key])
                elif op == 0x94:  # MEMOIZE
                    memo[len(memo)] = self._top()
                elif op == 0x28:  # MARK
                    self.marks.append(self.stack)
                    self.stack = []
                elif op == 0x58:  # BINUNICODE
                    self.stack.append(self._big_text(unpack("<I", self._read(4))[0]))
                elif op == 0x8C:  # SHORT_BINUNICODE
                    self.stack.append(self._big_text(self._read(1)[0]))
                elif op == 0x4B:  # BININT1
                    self.stack.append(self._read(1)[0])
                elif op == 0x74:  # TUPLE
                    items = self._pop_mark()
                    self.stack.append(PTuple(items))
                elif op == 0x85:
                    self.stack.append(PTuple([self._pop()]))
                elif op == 0x86:
                    b = self._pop()
                    self.stack.append(PTuple([self._pop(), b]))
                elif op == 0x87:
                    c = self._pop()
                    b = self._pop()
                    self.stack.append(PTuple([self._pop(), b, c]))
                elif op == 0x52:  # REDUCE
                    pos = self._pos()
                    args = self._pop()
                    func = self._pop()
                    self.stack.append(self._call(func, args, pos))
                elif op == 0x81:  # NEWOBJ
                    pos = self._pos()
                    args = self._pop()
                    cls = self._pop()
                    self.stack.append(self._call(cls, args, pos, how="new"))
                elif op == 0x62:  # BUILD
                    pos = self._pos()
                    state = self._pop()
                    target = self._top()
                    if isinstance(target, Obj):
                        target.state = state
                    else:
                        self._modify(target, pos, "BUILD")
                        self._note_args(state, pos, "BUILD")
                elif op == 0x63:  # GLOBAL
                    pos = self._pos()
                    module = _utf8(self._line())
                    name = _utf8(self._line())
                    self.stack.append(self._global(module, name, pos))
                elif op == 0x93:  # STACK_GLOBAL
                    pos = self._pos()
                    name = self._pop()
                    module = self._pop()
                    if isinstance(module, str) and isinstance(name, str):
                        self.stack.append(self._global(module, name, pos))
                    else:
                        self.stack.append(self._unresolved(
                            pos, f"STACK_GLOBAL of {_describe(module)} and {_describe(name)}"))
                elif op == 0x75:  # SETITEMS
                    pos = self._pos()
                    items = self._pop_mark()
                    self._setitems(self._top(), [(items[i], items[i + 1])
                                                 for i in range(0, len(items) - 1, 2)], pos)
                elif op == 0x73:  # SETITEM
                    pos = self._pos()
                    v = self._pop()
                    k = self._pop()
                    self._setitems(self._top(), [(k, v)], pos)
                elif op == 0x7D:  # EMPTY_DICT
                    self.stack.append(PDict([]))
                elif op == 0x29:  # EMPTY_TUPLE
                    self.stack.append(PTuple([]))
                elif op == 0x5D:  # EMPTY_LIST
                    self.stack.append(PList([]))
                elif op == 0x89:
                    self.stack.append(False)
                elif op == 0x88:
                    self.stack.append(True)
                elif op == 0x4E:  # NONE
                    self.stack.append(None)
                elif op == 0x51:  # BINPERSID
                    pos = self._pos()
                    self.stack.append(self._persistent(self._pop(), pos))
                elif op == 0x72:  # LONG_BINPUT
                    memo[unpack("<I", self._read(4))[0]] = self._top()
                elif op in (0x6A, 0x67):  # LONG_BINGET, GET
                    key = unpack("<I", self._read(4))[0] if op == 0x6A else _parse_int(self._line())
                    if key not in memo:
                        raise PickleBroken(f"memo value not found at index {key}")
                    self.stack.append(memo[key])
                elif op == 0x4D:  # BININT2
                    self.stack.append(unpack("<H", self._read(2))[0])
                elif op == 0x4A:  # BININT
                    self.stack.append(unpack("<i", self._read(4))[0])
                elif op == 0x47:  # BINFLOAT
                    self.stack.append(unpack(">d", self._read(8))[0])
                elif op == 0x8A:  # LONG1
                    n = self._read(1)[0]
                    self.stack.append(int.from_bytes(self._read(n), "little", signed=True))
                elif op == 0x61:  # APPEND
                    pos = self._pos()
                    v = self._pop()
                    self._append(self._top(), [v], pos)
                elif op == 0x65:  # APPENDS
                    pos = self._pos()
                    items = self._pop_mark()
                    self._append(self._top(), items, pos)
                elif op == 0x2E:  # STOP
                    run.result = self._pop()
                    run.stopped_at = f.tell() if f.seekable() else None
                    return
                elif op == 0x80:  # PROTO
                    proto = self._read(1)[0]
                    if proto > HIGHEST_PROTOCOL:
                        raise PickleBroken(f"unsupported pickle protocol: {proto}")
                    run.protocol = proto
                elif op == 0x95:  # FRAME
                    unpack("<Q", self._read(8))
                else:
                    self._rare(op, code)
                if ops > MAX_OPS:
                    raise PickleBroken("more opcodes than any real checkpoint has")
        finally:
            run.ops = ops

    def _rare(self, op: int, code: bytes) -> None:  # noqa: C901
        """Opcodes torch.save never writes (protocol 0/1 text forms and the rest)."""
        push, pop = self._push, self._pop
        pos = self._pos()
        if op == 0x49:  # INT
            s = self._line()
            if s == b"00":
                push(False)
            elif s == b"01":
                push(True)
            else:
                push(_parse_int(s))
        elif op == 0x4C:  # LONG
            s = self._line()
            push(_parse_int(s[:-1] if s.endswith(b"L") else s))
        elif op == 0x8B:  # LONG4
            (n,) = struct.unpack("<i", self._read(4))
            if n < 0 or n > 1 << 20:
                raise PickleBroken("LONG4 size out of range")
            push(int.from_bytes(self._read(n), "little", signed=True))
        elif op == 0x46:  # FLOAT
            try:
                push(float(self._line()))
            except ValueError as exc:
                raise PickleBroken(f"bad FLOAT: {exc}") from None
        elif op == 0x53:  # STRING
            s = self._line()
            if len(s) >= 2 and s[0] == s[-1] and s[:1] in (b"'", b'"'):
                s = s[1:-1]
            else:
                raise PickleBroken("the STRING opcode argument must be quoted")
            push(codecs.escape_decode(s)[0].decode("latin-1"))
        elif op == 0x54:  # BINSTRING
            (n,) = struct.unpack("<i", self._read(4))
            if n < 0:
                raise PickleBroken("BINSTRING pickle has negative byte count")
            v = self._big_bytes(n)
            push(v.decode("latin-1") if isinstance(v, bytes) else v)
        elif op == 0x55:  # SHORT_BINSTRING
            push(self._read(self._read(1)[0]).decode("latin-1"))
        elif op == 0x42:  # BINBYTES
            push(self._big_bytes(struct.unpack("<I", self._read(4))[0]))
        elif op == 0x43:  # SHORT_BINBYTES
            push(self._read(self._read(1)[0]))
        elif op in (0x8E, 0x96):  # BINBYTES8, BYTEARRAY8
            push(self._big_bytes(struct.unpack("<Q", self._read(8))[0]))
        elif op == 0x56:  # UNICODE
            push(self._line().decode("raw-unicode-escape"))
        elif op == 0x8D:  # BINUNICODE8
            push(self._big_text(struct.unpack("<Q", self._read(8))[0]))
        elif op == 0x8F:  # EMPTY_SET
            push(PSet([]))
        elif op == 0x6C:  # LIST
            push(PList(self._pop_mark()))
        elif op == 0x64:  # DICT
            items = self._pop_mark()
            push(PDict([(items[i], items[i + 1]) for i in range(0, len(items) - 1, 2)]))
        elif op == 0x91:  # FROZENSET
            push(PSet(self._pop_mark(), frozen=True))
        elif op == 0x90:  # ADDITEMS
            items = self._pop_mark()
            target = self._top()
            if isinstance(target, PSet):
                target.items.extend(items)
            else:
                self._modify(target, pos, "ADDITEMS")
                self._note_args(items, pos, "add")
        elif op == 0x30:  # POP
            if self.stack:
                self.stack.pop()
            else:
                self._pop_mark()
        elif op == 0x31:  # POP_MARK
            self._pop_mark()
        elif op == 0x32:  # DUP
            push(self._top())
        elif op == 0x70:  # PUT
            self.memo[_parse_int(self._line())] = self._top()
        elif op == 0x69:  # INST
            module = _ascii(self._line())
            name = _ascii(self._line())
            cls = self._global(module, name, pos)
            push(self._call(cls, PTuple(self._pop_mark()), pos))
        elif op == 0x6F:  # OBJ
            items = self._pop_mark()
            if not items:
                raise PickleBroken("OBJ without a class")
            push(self._call(items[0], PTuple(items[1:]), pos))
        elif op == 0x92:  # NEWOBJ_EX
            kwargs = pop()
            args = pop()
            cls = pop()
            push(self._call(cls, PTuple([args, kwargs]), pos, how="new"))
        elif op in (0x82, 0x83, 0x84):  # EXT1, EXT2, EXT4
            n = {0x82: 1, 0x83: 2, 0x84: 4}[op]
            code_no = int.from_bytes(self._read(n), "little")
            push(self._unresolved(pos, f"extension code {code_no}"))
        elif op == 0x50:  # PERSID
            pid = _ascii(self._line())
            push(self._persistent(pid, pos))
        elif op in (0x97, 0x98):  # NEXT_BUFFER, READONLY_BUFFER
            raise PickleBroken("pickle refers to out-of-band buffers, which torch.load and "
                               "numpy.load do not pass")
        else:
            raise PickleBroken(f"invalid load key {code!r} at byte {pos}")

    def _append(self, target: Any, items: list, pos: int) -> None:
        if isinstance(target, PList):
            target.items.extend(items)
        elif isinstance(target, Obj):
            target.appended.extend(items)
            self._note_args(items, pos, "append")
        else:
            self._modify(target, pos, "APPENDS")
            self._note_args(items, pos, "append")

    def _setitems(self, target: Any, pairs: list, pos: int) -> None:
        if isinstance(target, PDict):
            target.items.extend(pairs)
        elif isinstance(target, Obj):
            target.items.extend(pairs)
            self._note_args([v for p in pairs for v in p], pos, "__setitem__")
        else:
            self._modify(target, pos, "SETITEMS")
            self._note_args([v for p in pairs for v in p], pos, "__setitem__")

    def _persistent(self, pid: Any, pos: int) -> Obj:
        self.run.persistent_ids += 1
        obj = Obj("persistent", None, pid, pos)
        if self.on_persistent is not None:
            self.on_persistent(self.run, obj)
        return obj


def _utf8(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PickleBroken(f"global name is not UTF-8: {exc}") from None


def _ascii(raw: bytes) -> str:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise PickleBroken(f"name is not ASCII: {exc}") from None


def _parse_int(raw: bytes) -> int:
    s = raw.strip()
    try:
        return int(s, 0)
    except ValueError:
        try:
            return int(s, 10)
        except ValueError:
            raise PickleBroken(f"could not convert {s[:20]!r} to int") from None


def _shallow(v: Any, limit: int = 256) -> list[Any]:
    """Values directly inside an argument tuple (one container level deep)."""
    out: list[Any] = []
    stack = [v]
    depth_seen = 0
    while stack and len(out) < limit and depth_seen < 4 * limit:
        depth_seen += 1
        x = stack.pop()
        if isinstance(x, (PTuple, PList, PSet)):
            stack.extend(x.items)
        elif isinstance(x, PDict):
            for k, val in x.items:
                stack.extend((k, val))
        else:
            out.append(x)
    return out


def _describe(v: Any) -> str:
    if isinstance(v, Global):
        return v.ref
    if isinstance(v, Obj):
        return (f"the result of {'instantiating' if v.how == 'new' else 'calling'} "
                f"{_describe(v.func)}")
    if isinstance(v, str):
        return repr(v[:40])
    if isinstance(v, (PList, PTuple, PDict, PSet)):
        return f"a {type(v).__name__[1:].lower()}"
    return type(v).__name__


def execute(stream: BinaryIO, **kw: Any) -> Run:
    """Run one pickle (up to its STOP) symbolically."""
    return Machine(stream, **kw).execute()


def execute_bytes(data: bytes, **kw: Any) -> Run:
    return execute(io.BytesIO(data), **kw)
