"""The real-error corpus (tests/corpus/, issue 11) stays well-formed.

Only the files are checked here: how well `cvdoctor explain` does on them is measured by
bench/explain_corpus.py, and is not asserted (the matcher and recipes improve in a later phase).
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
