"""Read a zip archive the way torch's ``PyTorchStreamReader`` (miniz) does, not the way Python's
``zipfile`` does, and say where the two disagree.

Scanners built on ``zipfile`` have been bypassed by exactly these differences, so each one is
handled here the way torch handles it (verified against torch 2.x in tests/test_checkpoint_zip.py):

- **Which member is ``data.pkl``.** torch takes the folder of the *first* central-directory entry
  as the archive name and looks records up as ``<folder>/<record>``, *case-insensitively*, by a
  binary search over names sorted with miniz's heap sort. With duplicate names (or names that only
  differ in case) that search picks one of them, not necessarily the one ``zipfile`` returns
  (``zipfile`` keeps the last). :meth:`TorchZip.locate` replays the sort and the search.
- **Local headers.** miniz finds a member's data from the local header's name and extra lengths
  and ignores the local name; ``zipfile`` refuses a local name that differs from the central one.
- **Flag bits.** miniz refuses members whose *central* flags say encrypted (bit 0, bit 6), patched
  (bit 5) or masked directory (bit 13); local flags are ignored.
- **CRC.** torch builds miniz without CRC checks, so a flipped bit in a tensor loads silently.
  CRCs are only computed on request (``--deep``), as an integrity check.
- **Offsets.** miniz reads every offset as an absolute file position; ``zipfile`` shifts them when
  bytes sit between the members and the central directory.

Everything here reads bounded slices of the file; member data is streamed, never loaded whole.
"""
from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

EOCD_SIG = b"PK\x05\x06"
EOCD64_SIG = b"PK\x06\x06"
EOCD64_LOCATOR_SIG = b"PK\x06\x07"
CENTRAL_SIG = b"PK\x01\x02"
LOCAL_SIG = b"PK\x03\x04"
MAX_COMMENT = 65535
MAX_ENTRIES = 2_000_000  # a torch archive has one member per storage: 10^5 is already huge
MAX_CENTRAL_DIR_BYTES = 512 * 1024 ** 2

FLAG_ENCRYPTED = 0x0001
FLAG_PATCHED = 0x0020
FLAG_STRONG_ENCRYPTION = 0x0040
FLAG_UTF8 = 0x0800
FLAG_MASKED_DIRECTORY = 0x2000
# Central flags that make miniz refuse to read the member (and so torch.load fails).
MINIZ_REFUSED_FLAGS = FLAG_ENCRYPTED | FLAG_PATCHED | FLAG_STRONG_ENCRYPTION
STORED, DEFLATED = 0, 8


class ZipError(Exception):
    """The archive cannot be read at all (no end record, directory outside the file, ...)."""


@dataclass
class Entry:
    index: int  # position in the central directory
    raw_name: bytes
    flags: int
    method: int
    crc: int
    compressed_size: int
    size: int
    header_offset: int
    central_offset: int
    data_offset: int | None = None  # from the local header; None when it is unreadable
    local_name: bytes | None = None
    local_problem: str | None = None

    @property
    def name(self) -> str:
        if self.flags & FLAG_UTF8:
            return self.raw_name.decode("utf-8", "replace")
        return self.raw_name.decode("cp437")

    @property
    def refused_by_miniz(self) -> str | None:
        if self.flags & (FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION):
            return "flagged as encrypted"
        if self.flags & FLAG_PATCHED:
            return "flagged as patched data"
        if self.method not in (STORED, DEFLATED):
            return f"compression method {self.method}"
        return None


@dataclass
class TorchZip:
    """The central directory of one archive, read with miniz's rules."""

    size: int
    entries: list[Entry]
    eocd_offset: int
    cd_offset: int
    cd_size: int
    zip64: bool
    gap_before_directory: int  # bytes between the data and the directory (zipfile shifts offsets)
    problems: list[str] = field(default_factory=list)  # torch cannot open the archive
    _sorted: list[int] | None = None

    # --- torch's view -----------------------------------------------------------------------

    @property
    def prefix(self) -> bytes | None:
        """The archive folder torch uses: the first entry's name up to its first '/'."""
        if not self.entries:
            return None
        name = self.entries[0].raw_name
        return name.split(b"/", 1)[0] if b"/" in name else None

    def outside_prefix(self) -> list[Entry]:
        """Entries whose names do not start with '<prefix>/': torch.load stops with 'file in
        archive is not in a subdirectory' before it reads any pickle."""
        p = self.prefix
        if p is None:
            return list(self.entries)
        return [e for e in self.entries if not e.raw_name.startswith(p + b"/")]

    def _sorted_indices(self) -> list[int]:
        """miniz's heap sort of the directory by lower-cased name (not stable: the order of
        equal names is what the binary search below then depends on)."""
        if self._sorted is not None:
            return self._sorted
        keys = [e.raw_name.lower() for e in self.entries]
        idx = list(range(len(keys)))
        size = len(idx)

        def sift(root: int, end: int) -> None:
            while True:
                child = 2 * root + 1
                if child >= end:
                    return
                if child + 1 < end and keys[idx[child]] < keys[idx[child + 1]]:
                    child += 1
                if not keys[idx[root]] < keys[idx[child]]:
                    return
                idx[root], idx[child] = idx[child], idx[root]
                root = child

        if size > 1:
            for start in range((size - 2) >> 1, -1, -1):
                sift(start, size)
            for end in range(size - 1, 0, -1):
                idx[0], idx[end] = idx[end], idx[0]
                sift(0, end)
        self._sorted = idx
        return idx

    def locate(self, record: str) -> Entry | None:
        """The entry torch reads for ``<prefix>/<record>`` (miniz's binary search)."""
        p = self.prefix
        if p is None:
            return None
        want = (p + b"/" + record.encode("utf-8")).lower()
        idx = self._sorted_indices()
        lo, hi = 0, len(idx) - 1
        while lo <= hi:
            mid = lo + ((hi - lo) >> 1)
            have = self.entries[idx[mid]].raw_name.lower()
            if have == want:
                return self.entries[idx[mid]]
            if have < want:
                lo = mid + 1
            else:
                hi = mid - 1
        return None

    def candidates(self, record: str) -> list[Entry]:
        """Every entry that names ``<prefix>/<record>`` up to case: the one torch reads depends
        on the sort, and another torch build or loader may pick another, so all are scanned."""
        p = self.prefix
        if p is None:
            return []
        want = (p + b"/" + record.encode("utf-8")).lower()
        return [e for e in self.entries if e.raw_name.lower() == want]

    def records(self) -> list[str]:
        """Names after '<prefix>/', as torch's get_all_records lists them."""
        p = self.prefix
        if p is None:
            return []
        n = len(p) + 1
        return [e.raw_name[n:].decode("utf-8", "replace") for e in self.entries
                if e.raw_name.startswith(p + b"/")]

    def zipfile_pick(self, name: bytes) -> Entry | None:
        """What Python's zipfile returns for an exact name: the last entry with it."""
        found = [e for e in self.entries if e.raw_name == name]
        return found[-1] if found else None

    # --- differences worth reporting --------------------------------------------------------

    def anomalies(self) -> list[str]:
        out = []
        seen: dict[bytes, list[Entry]] = {}
        for e in self.entries:
            seen.setdefault(e.raw_name.lower(), []).append(e)
        for group in seen.values():
            if len(group) > 1:
                names = sorted({e.name for e in group})
                out.append(f"{len(group)} members named {' / '.join(names)} (torch and Python's "
                           "zipfile may read different ones)")
        for e in self.entries:
            if e.local_name is not None and e.local_name != e.raw_name:
                out.append(f"member {e.name}: its local header says "
                           f"{e.local_name.decode('utf-8', 'replace')!r} (Python's zipfile "
                           "refuses it, torch reads it)")
            if e.local_problem:
                out.append(f"member {e.name}: {e.local_problem}")
        if self.gap_before_directory:
            out.append(f"{self.gap_before_directory} bytes between the members and the central "
                       "directory (Python's zipfile shifts every offset, torch does not)")
        return out

    # --- member data ------------------------------------------------------------------------

    def open(self, f: BinaryIO, entry: Entry, limit: int | None = None) -> BinaryIO:
        """A stream of the member's uncompressed bytes (at most `limit`), read the way miniz
        reads it: data start from the local header, sizes and method from the directory."""
        if entry.data_offset is None:
            raise ZipError(entry.local_problem or "local header unreadable")
        want = entry.size if limit is None else min(entry.size, limit)
        if entry.method == STORED:
            return _Slice(f, entry.data_offset, min(entry.compressed_size, want))
        if entry.method == DEFLATED:
            return _Inflate(f, entry.data_offset, entry.compressed_size, want)
        raise ZipError(f"compression method {entry.method} is not stored or deflate")

    def crc_ok(self, f: BinaryIO, entry: Entry) -> bool | None:
        """Does the member's data match its CRC-32? None when it cannot be read."""
        try:
            stream = self.open(f, entry)
            crc = 0
            got = 0
            for block in iter(lambda: stream.read(4 * 1024 ** 2), b""):
                crc = zlib.crc32(block, crc)
                got += len(block)
        except (ZipError, OSError, zlib.error):
            return None
        if got != entry.size:
            return None
        return crc == entry.crc


def read_archive(f: BinaryIO, size: int) -> TorchZip:
    """Parse the end record and the central directory; raises ZipError when torch could not
    even open the archive (a truncated download lacks the end record)."""
    if size < 22:
        raise ZipError("too short for a zip end record")
    tail_len = min(size, MAX_COMMENT + 22)
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    pos = tail.rfind(EOCD_SIG)
    while pos >= 0 and len(tail) - pos < 22:
        pos = tail.rfind(EOCD_SIG, 0, pos)
    if pos < 0:
        raise ZipError("no end-of-central-directory record: the file stops before its end")
    eocd_at = size - tail_len + pos
    (_, disk, cd_disk, n_disk, n_total, cd_size, cd_offset, _clen) = struct.unpack(
        "<4sHHHHIIH", tail[pos:pos + 22])
    zip64 = False
    gap_extra = 0
    if eocd_at >= 20:
        f.seek(eocd_at - 20)
        loc = f.read(20)
        if loc[:4] == EOCD64_LOCATOR_SIG:
            zip64 = True
            rec = None
            if eocd_at >= 76:  # miniz first tries right before the locator
                f.seek(eocd_at - 76)
                rec = f.read(56)
                if rec[:4] != EOCD64_SIG:
                    rec = None
            if rec is None:
                (at,) = struct.unpack("<Q", loc[8:16])
                if at > size - 56:
                    raise ZipError("zip64 end record points outside the file")
                f.seek(at)
                rec = f.read(56)
                if rec[:4] != EOCD64_SIG:
                    raise ZipError("zip64 end record missing")
            (n_disk, n_total, cd_size, cd_offset) = struct.unpack("<QQQQ", rec[24:56])
            gap_extra = 76
    if n_disk != n_total:
        raise ZipError("multi-disk archive")
    if n_total > MAX_ENTRIES:
        raise ZipError(f"{n_total:,} members: more than any checkpoint has")
    if cd_offset + cd_size > size:
        raise ZipError(f"central directory claims bytes up to {cd_offset + cd_size:,} but the "
                       f"file has {size:,}: the file stops before its end")
    if eocd_at < cd_offset + cd_size:
        raise ZipError("central directory overlaps its end record")
    if cd_size > MAX_CENTRAL_DIR_BYTES or cd_size < 46 * n_total:
        raise ZipError("central directory size does not fit its entry count")
    f.seek(cd_offset)
    cd = f.read(cd_size)
    if len(cd) != cd_size:
        raise ZipError("central directory cut short")
    entries = []
    p = 0
    for i in range(n_total):
        if len(cd) - p < 46 or cd[p:p + 4] != CENTRAL_SIG:
            raise ZipError(f"central directory entry {i} is damaged")
        (flags, method, _t, _d, crc, csize, usize, nlen, xlen, clen, _ds, _ia, _ea,
         lofs) = struct.unpack("<HHHHIIIHHHHHII", cd[p + 8:p + 46])
        name = cd[p + 46:p + 46 + nlen]
        extra = cd[p + 46 + nlen:p + 46 + nlen + xlen]
        if max(csize, usize, lofs) == 0xFFFFFFFF:
            usize, csize, lofs = _zip64_extra(extra, usize, csize, lofs)
        total = 46 + nlen + xlen + clen
        if total > len(cd) - p:
            raise ZipError(f"central directory entry {i} runs past the directory")
        entries.append(Entry(i, name, flags, method, crc, csize, usize, lofs, cd_offset + p))
        p += total
    gap = eocd_at - (cd_offset + cd_size) - gap_extra
    archive = TorchZip(size, entries, eocd_at, cd_offset, cd_size, zip64, max(gap, 0))
    for e in entries:  # miniz's own per-entry checks when it opens the archive
        if e.method == STORED and e.size != e.compressed_size:
            archive.problems.append(f"member {e.name}: stored but sizes differ")
        if e.header_offset + 30 + e.compressed_size > size:
            archive.problems.append(f"member {e.name}: its data runs past the end of the file")
        if e.flags & FLAG_MASKED_DIRECTORY:
            archive.problems.append(f"member {e.name}: masked directory (encrypted archive)")
        _read_local(f, e, size, cd_offset)
    return archive


def _zip64_extra(extra: bytes, usize: int, csize: int, lofs: int) -> tuple[int, int, int]:
    p = 0
    while p + 4 <= len(extra):
        tag, n = struct.unpack("<HH", extra[p:p + 4])
        body = extra[p + 4:p + 4 + n]
        if tag == 0x0001:
            q = 0
            vals = []
            while q + 8 <= len(body):
                vals.append(struct.unpack("<Q", body[q:q + 8])[0])
                q += 8
            it = iter(vals)
            if usize == 0xFFFFFFFF:
                usize = next(it, usize)
            if csize == 0xFFFFFFFF:
                csize = next(it, csize)
            if lofs == 0xFFFFFFFF:
                lofs = next(it, lofs)
            break
        p += 4 + n
    return usize, csize, lofs


def _read_local(f: BinaryIO, e: Entry, size: int, cd_offset: int) -> None:
    if e.header_offset + 30 > size:
        e.local_problem = "local header outside the file"
        return
    f.seek(e.header_offset)
    head = f.read(30)
    if head[:4] != LOCAL_SIG:
        e.local_problem = "no local header where the directory points"
        return
    nlen, xlen = struct.unpack("<HH", head[26:30])
    e.local_name = f.read(nlen)
    start = e.header_offset + 30 + nlen + xlen
    if start + e.compressed_size > size:
        e.local_problem = "data runs past the end of the file"
        return
    e.data_offset = start


class _Slice(io.RawIOBase):
    """A bounded window of the file; reads never go past it."""

    def __init__(self, f: BinaryIO, start: int, length: int):
        self._f, self._start, self._len, self._pos = f, start, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._len}[whence]
        self._pos = max(0, min(self._len, base + pos))
        return self._pos

    def read(self, n: int = -1) -> bytes:
        left = self._len - self._pos
        n = left if n is None or n < 0 else min(n, left)
        if n <= 0:
            return b""
        self._f.seek(self._start + self._pos)
        data = self._f.read(n)
        self._pos += len(data)
        return data

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def readline(self, limit: int = -1) -> bytes:
        out = bytearray()
        while limit < 0 or len(out) < limit:
            chunk = self.read(256 if limit < 0 else min(256, limit - len(out)))
            if not chunk:
                break
            nl = chunk.find(b"\n")
            if nl >= 0:
                out += chunk[:nl + 1]
                self._pos -= len(chunk) - nl - 1
                break
            out += chunk
        return bytes(out)


class _Inflate(io.RawIOBase):
    """Streaming raw-deflate of one member, capped at its declared size."""

    def __init__(self, f: BinaryIO, start: int, compressed: int, limit: int):
        self._src = _Slice(f, start, compressed)
        self._z = zlib.decompressobj(-15)
        self._limit, self._out, self._buf, self._given = limit, 0, b"", 0

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._given

    def _fill(self, want: int) -> None:
        while len(self._buf) < want and self._out < self._limit:
            raw = self._src.read(256 * 1024)
            if not raw:
                tail = self._z.flush()
                self._buf += tail[: self._limit - self._out]
                self._out += len(tail)
                break
            chunk = self._z.decompress(raw, max(0, self._limit - self._out))
            self._buf += chunk
            self._out += len(chunk)

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self._limit
        self._fill(n)
        data, self._buf = self._buf[:n], self._buf[n:]
        self._given += len(data)
        return data

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def readline(self, limit: int = -1) -> bytes:
        out = bytearray()
        while limit < 0 or len(out) < limit:
            self._fill(256)
            if not self._buf:
                break
            nl = self._buf.find(b"\n")
            take = len(self._buf) if nl < 0 else nl + 1
            if limit >= 0:
                take = min(take, limit - len(out))
            out += self._buf[:take]
            self._buf = self._buf[take:]
            self._given += take
            if nl >= 0 and take == nl + 1:
                break
        return bytes(out)


def iter_entries(archive: TorchZip) -> Iterator[Entry]:
    return iter(archive.entries)
