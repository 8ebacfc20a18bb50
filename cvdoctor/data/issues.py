"""Counting problems without keeping them all: a count plus the first few places per kind.

Memory stays flat in the size of the dataset: 100,000 bad rows cost one counter and five examples.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_EXAMPLES = 5
MAX_TALLY = 16  # distinct kinds counted per code; the rest count as "other"


@dataclass
class Issue:
    code: str
    count: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)
    tally: dict[str, int] = field(default_factory=dict)  # count per kind, when the kinds differ

    def count_kind(self, kind: str, n: int = 1) -> None:
        if kind not in self.tally and len(self.tally) >= MAX_TALLY:
            kind = "other"
        self.tally[kind] = self.tally.get(kind, 0) + n

    def to_dict(self) -> dict[str, Any]:
        out = {"code": self.code, "count": self.count, "examples": list(self.examples)}
        if self.tally:
            out["tally"] = dict(self.tally)
        return out


class Issues:
    """Problems by code (`row.class_out_of_range`), each with a count and the first examples."""

    def __init__(self, max_examples: int = MAX_EXAMPLES) -> None:
        self.max_examples = max_examples
        self._by_code: dict[str, Issue] = {}

    def add(self, code: str, file: str | None = None, line: int | None = None,
            detail: str = "", *, tally: str | None = None, **extra: Any) -> None:
        """Count one occurrence; `tally` names its kind when one code covers several (a FIFO
        and a device are both `fs.special`), so a message can say how many of each."""
        issue = self._by_code.get(code)
        if issue is None:
            issue = self._by_code[code] = Issue(code)
        issue.count += 1
        if tally:
            issue.count_kind(tally)
        if len(issue.examples) < self.max_examples:
            example: dict[str, Any] = {}
            if file is not None:
                example["file"] = file
            if line is not None:
                example["line"] = line
            if detail:
                example["detail"] = detail
            example.update(extra)
            issue.examples.append(example)

    def merge(self, other: "Issues") -> None:
        for code, issue in other._by_code.items():
            mine = self._by_code.setdefault(code, Issue(code))
            mine.count += issue.count
            for kind, n in issue.tally.items():
                mine.count_kind(kind, n)
            room = self.max_examples - len(mine.examples)
            if room > 0:
                mine.examples.extend(issue.examples[:room])

    def count(self, code: str) -> int:
        issue = self._by_code.get(code)
        return issue.count if issue else 0

    def get(self, code: str) -> Issue | None:
        return self._by_code.get(code)

    def codes(self) -> list[str]:
        return sorted(self._by_code)

    def __contains__(self, code: str) -> bool:
        return code in self._by_code

    def __bool__(self) -> bool:
        return bool(self._by_code)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {code: self._by_code[code].to_dict() for code in sorted(self._by_code)}


def where(example: dict[str, Any]) -> str:
    """`file:line` (or just the file) of one example, for messages."""
    file = example.get("file", "?")
    return f"{file}:{example['line']}" if example.get("line") else str(file)


def places(issue: dict[str, Any], shown: int = 3, relative_to: str | None = None,
           details: bool = False) -> str:
    """`a.txt:3, b.txt:7, c.txt:1 and 12 more` for an issue dict (as in a result's "issues");
    with `details`, each place is followed by its own detail: `a.jpg (a FIFO), b.jpg (...)`."""
    import os
    names = []
    for example in issue.get("examples", [])[:shown]:
        file = example.get("file", "?")
        if relative_to:
            try:
                rel = os.path.relpath(file, relative_to)
                file = rel if not rel.startswith("..") else file
            except ValueError:
                pass
        place = f"{file}:{example['line']}" if example.get("line") else file
        if details and example.get("detail"):
            place += f" ({example['detail']})"
        names.append(place)
    more = issue.get("count", len(names)) - len(names)
    return ", ".join(names) + (f" and {more:,} more" if more > 0 else "")
