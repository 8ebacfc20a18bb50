"""The real-error corpus (tests/corpus/, issue 11) stays well-formed, and `cvdoctor explain`
knows it: the right category first for at least 95% of the real errors, and at least 95% (and
at least 50) of the unrelated real errors match nothing. bench/explain_corpus.py prints the
details (every miss, per category).
"""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from cvdoctor.catalog import CATEGORIES

CORPUS = Path(__file__).resolve().parent / "corpus"
SOURCE = re.compile(r"^[\w.-]+/[\w.-]+#\d+$")
FIELDS = {"text", "category", "source", "note"}


def _load(name: str) -> list[tuple[int, dict]]:
    rows = []
    with open(CORPUS / name, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            assert line.strip(), f"{name}:{lineno}: blank line"
            try:
                rows.append((lineno, json.loads(line)))
            except json.JSONDecodeError as exc:  # pragma: no cover - the failure message
                pytest.fail(f"{name}:{lineno}: not JSON: {exc}")
    return rows


@pytest.fixture(scope="module")
def related() -> list[tuple[int, dict]]:
    return _load("errors.jsonl")


@pytest.fixture(scope="module")
def unrelated() -> list[tuple[int, dict]]:
    return _load("unrelated.jsonl")


def _check_common(name: str, rows: list[tuple[int, dict]]) -> None:
    for lineno, e in rows:
        where = f"{name}:{lineno}"
        assert isinstance(e, dict), where
        assert {"text", "category", "source"} <= set(e) <= FIELDS, f"{where}: fields {sorted(e)}"
        assert isinstance(e["text"], str) and e["text"].strip(), f"{where}: empty text"
        assert e["text"] == e["text"].strip("\n"), f"{where}: leading/trailing newlines"
        assert isinstance(e["source"], str) and SOURCE.match(e["source"]), \
            f"{where}: source {e['source']!r} is not owner/repo#number"
        assert isinstance(e.get("note", ""), str), f"{where}: note must be a string"


def test_related_entries_are_well_formed(related):
    _check_common("errors.jsonl", related)
    for lineno, e in related:
        assert e["category"] in CATEGORIES, f"errors.jsonl:{lineno}: category {e['category']!r}"


def test_unrelated_entries_are_well_formed(unrelated):
    _check_common("unrelated.jsonl", unrelated)
    for lineno, e in unrelated:
        assert e["category"] is None, f"unrelated.jsonl:{lineno}: category must be null"


def test_no_duplicate_texts(related, unrelated):
    counts = Counter(e["text"] for _, e in related + unrelated)
    dups = [t[:80] for t, n in counts.items() if n > 1]
    assert not dups, f"duplicate texts: {dups}"


def test_corpus_sizes(related, unrelated):
    assert len(related) >= 300
    assert len(unrelated) >= 50


def test_every_category_is_represented(related):
    counts = Counter(e["category"] for _, e in related)
    missing = [c for c in CATEGORIES if counts[c] == 0]
    assert not missing, f"categories with no real example: {missing}"


def test_explain_names_the_right_category_first_for_95_percent(related):
    from cvdoctor.catalog import match_text

    misses = []
    for lineno, e in related:
        matches = match_text(e["text"])
        got = matches[0].category if matches else None
        if got != e["category"]:
            misses.append(f"errors.jsonl:{lineno} {e['source']}: expected {e['category']}, "
                          f"got {got} ({matches[0].recipe if matches else 'no match'})")
    share = 1 - len(misses) / len(related)
    assert share >= 0.95, f"{share:.1%} right; misses:\n" + "\n".join(misses)


def test_unrelated_errors_match_nothing(unrelated):
    from cvdoctor.catalog import match_text

    claimed = [f"unrelated.jsonl:{lineno} {e['source']}: {[m.recipe for m in match_text(e['text'])]}"
               for lineno, e in unrelated if match_text(e["text"])]
    clean = len(unrelated) - len(claimed)
    assert clean >= 50 and clean / len(unrelated) >= 0.95, "claimed:\n" + "\n".join(claimed)
