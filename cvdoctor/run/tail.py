"""What `cvdoctor run` keeps of a command's output, in memory that does not grow with the output.

The command may print for days (a 10 GB training log); matching needs the end of it, where the
error is, plus the tracebacks that scrolled out earlier (the first failure of a multi-rank job is
often far above the end). Symptoms that do not end the run (NaN losses, a failed AMP check,
DataLoader workers dying) are counted on the way, with the first line that showed each.

Costs are linear in the output and small: a few `bytes.find`-speed scans per chunk, nothing per
line unless a line holds one of the literal markers.
"""
from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

TAIL = 1024 * 1024  # bytes of the end of the output kept for matching
SCAN_BATCH = 256 * 1024  # bytes scanned at once for symptoms and line counts
BLOCK = 16 * 1024  # bytes kept from one earlier traceback
EARLIER = 8  # earlier tracebacks kept (the first one is kept on top of these)
_TRACEBACK = b"Traceback (most recent call last)"
_CARRY = 4096  # bytes of an unfinished line carried into the next chunk's symptom scan


@dataclass(frozen=True)
class SymptomKind:
    recipe: str
    what: str  # "the loss became NaN"
    line: re.Pattern  # the line that shows it (searched on the decoded line)


# Literal markers, case-sensitive: one alternation of literals scans at memory speed. A line with
# a marker is then checked against the kinds' own patterns.
_MARKERS = re.compile(
    rb"nan|NaN|AMP: checks failed|AMP checks failed|DataLoader worker|NMS time limit|"
    rb"estarting worker|worker group")

KINDS = (
    SymptomKind("nan-loss", "the loss became NaN", re.compile(
        r"(?<![a-z])loss\w*[ \t]*[=:][ \t]*(?:tensor\()?-?nan\b|\bLoss is -?nan\b|\bloss(?:es)? "
        r"(?:is|are|became|becomes|turned) -?nan\b|Loss became infinite or NaN|\bnan loss\b|"
        r"\bNaN loss\b|returned nan values", re.I)),
    SymptomKind("ultralytics-amp-check", "ultralytics' AMP check failed: training runs without "
                "mixed precision", re.compile(r"\bAMP:? checks failed")),
    SymptomKind("dataloader-worker-crash", "a DataLoader worker died", re.compile(
        r"DataLoader worker \(pids?\(?s?\)? ?[\d, ]+\)? (?:is killed by signal|exited "
        r"unexpectedly)")),
    SymptomKind("torchrun-child-failed", "torchrun restarted its workers", re.compile(
        r"[Rr]estarting worker group|[Rr]estarting workers|worker group failed")),
    SymptomKind("ultralytics-nms-time-limit", "validation NMS ran past its time limit",
                re.compile(r"NMS time limit [\d.]+ ?s exceeded")),
)


@dataclass
class Symptom:
    kind: SymptomKind
    count: int
    first_line_number: int
    first_line: str

    def to_dict(self) -> dict:
        return {"recipe": self.kind.recipe, "what": self.kind.what, "count": self.count,
                "first_line_number": self.first_line_number, "first_line": self.first_line}


def _block_end(data: bytes, start: int, header: int, limit: int) -> int:
    """The end of the traceback whose header line starts at `start`: the end of its exception
    line, the first line (after the header, without the header's `[rankN]: ` tag) that is not
    indented."""
    tag = data[start:header]  # what precedes "Traceback" on its line: "[rank1]: " or nothing
    pos = data.find(b"\n", header, limit) + 1
    while 0 < pos < limit:
        end = data.find(b"\n", pos, limit)
        end = limit if end == -1 else end
        line = data[pos:end]
        body = line[len(tag):] if tag and line.startswith(tag) else line
        if body.strip() and body[:1] not in (b" ", b"\t"):
            return end
        pos = end + 1
    return limit


class OutputTail:
    """Feed it the output's chunks in order (stdout and stderr interleaved as they arrive)."""

    def __init__(self, tail: int = TAIL):
        self.tail_size = tail
        self.buf = bytearray()
        self.total = 0  # bytes seen
        self.lines = 0  # newlines seen before the current chunk
        self.first_block: bytes | None = None  # the first traceback that left the tail
        self.blocks: deque[bytes] = deque(maxlen=EARLIER)  # the latest ones that left it
        self.symptoms: dict[str, Symptom] = {}
        self._carry = b""
        self._pending = 0  # bytes at the end of buf not scanned yet
        self._batch = min(SCAN_BATCH, max(1, tail // 4))

    def feed(self, chunk: bytes) -> None:
        """Called for every chunk the command writes, so it only appends; the scans run on
        batches of SCAN_BATCH bytes (fewer, larger passes cost less than one per 8 KiB write)."""
        self.total += len(chunk)
        self.buf += chunk
        self._pending += len(chunk)
        if self._pending >= self._batch:
            self._flush()
            if len(self.buf) > 2 * self.tail_size:
                cut = len(self.buf) - self.tail_size
                cut = self.buf.find(b"\n", cut) + 1 or cut  # keep whole lines
                self._keep_tracebacks(bytes(self.buf[:cut]))
                del self.buf[:cut]

    def _flush(self) -> None:
        if self._pending:
            data = bytes(self.buf[len(self.buf) - self._pending:])
            self._pending = 0
            self._scan_symptoms(data)
            self.lines += data.count(b"\n")

    def close(self) -> None:
        """The output has ended: scan what is left, the last line even without a newline."""
        self._flush()
        if self._carry:
            self._scan_symptoms(b"", final=True)

    def _scan_symptoms(self, chunk: bytes, final: bool = False) -> None:
        """Look at the complete lines (ended by \\n or \\r) of carry + chunk; an unfinished
        line waits for the next chunk (at most _CARRY bytes of it), so each line is judged once
        and whole."""
        data = self._carry + chunk
        cut = len(data) if final else max(data.rfind(b"\n"), data.rfind(b"\r")) + 1
        complete, self._carry = data[:cut], data[cut:][-_CARRY:]
        last_end = -1
        for m in _MARKERS.finditer(complete):
            if m.start() < last_end:
                continue  # another marker on a line already looked at
            start = max(complete.rfind(b"\n", 0, m.start()),
                        complete.rfind(b"\r", 0, m.start())) + 1
            ends = [e for e in (complete.find(b"\n", m.end()), complete.find(b"\r", m.end()))
                    if e != -1]
            end = min(ends) if ends else len(complete)
            last_end = end
            line = complete[start:end].decode("utf-8", "replace")
            for kind in KINDS:
                if kind.line.search(line):
                    found = self.symptoms.get(kind.recipe)
                    if found:
                        found.count += 1
                    else:
                        # The carry holds no newline: lines before it are all counted.
                        number = self.lines + complete.count(b"\n", 0, start) + 1
                        self.symptoms[kind.recipe] = Symptom(kind, 1, number,
                                                             " ".join(line.split())[:200])
                    break

    def _keep_tracebacks(self, evicted: bytes) -> None:
        pos = evicted.find(_TRACEBACK)
        while pos != -1:
            start = evicted.rfind(b"\n", 0, pos) + 1
            block = evicted[start:_block_end(evicted, start, pos, min(len(evicted),
                                                                      start + BLOCK))]
            if self.first_block is None:
                self.first_block = block
            else:
                self.blocks.append(block)
            pos = evicted.find(_TRACEBACK, pos + len(_TRACEBACK))

    def text(self) -> str:
        """What matching reads: the kept earlier tracebacks, then the tail."""
        self._flush()
        parts = ([self.first_block] if self.first_block else []) + list(self.blocks)
        parts.append(bytes(self.buf))
        return b"\n".join(parts).decode("utf-8", "replace")

    def symptom_list(self) -> list[Symptom]:
        self.close()
        return sorted(self.symptoms.values(), key=lambda s: s.first_line_number)
