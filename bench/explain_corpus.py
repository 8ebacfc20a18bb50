"""How well `cvdoctor explain` recognises real error messages (issue 11, "breadth and precision").

    .venv/bin/python bench/explain_corpus.py [--misses | --no-misses] [--category CAT] [--json]
                                             [--recipes DIR]

Loads tests/corpus/errors.jsonl (real errors, each with the category whose recipes should
explain it) and tests/corpus/unrelated.jsonl (real errors cvdoctor should not claim), runs
`cvdoctor.catalog.match_text` on every text and prints:

- the share of related entries whose FIRST match has the expected category, overall and per
  category (plus how many matched nothing at all);
- the share of unrelated entries that match nothing (precision on foreign errors);
- the misses: source, expected category, what the first match was (category/recipe or None),
  and the first line of the error that ends the text;
- the time per message (mean, median, max), after one untimed warm-up that loads the catalog.

`--recipes DIR` matches against the recipes in DIR instead of the installed catalog (e.g. a
`git archive` of an older commit, to compare before and after a change).

`--lines even|odd` keeps every other entry of both files (a split to tune on one half and check
the other); `--errors FILE` / `--unrelated FILE` read other JSON-lines files of the same fields
(a held-out set collected after tuning).

It only measures; it never fails. tests/test_error_corpus.py asserts issue 11's targets (right
category first for >= 95% of the related entries, >= 95% and >= 50 unrelated ones unmatched).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cvdoctor.catalog import (CATEGORIES, RecipeError, load_catalog, match_text,  # noqa: E402
                              parse_recipe)

CORPUS = ROOT / "tests" / "corpus"


def load(name: str | Path) -> list[dict]:
    with open(CORPUS / name, encoding="utf-8") as f:  # an absolute path replaces CORPUS
        return [json.loads(line) for line in f if line.strip()]


def headline(text: str) -> str:
    """The line a reader would quote: the last line that looks like an exception or error,
    else the last non-empty line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        head = ln.split(":", 1)[0]
        if ("Error" in head or "Exception" in head or "error" in head.lower()
                or ln.startswith(("RuntimeError", "AssertionError", "WARNING", "ERROR"))):
            return ln[:160]
    return (lines[-1] if lines else "")[:160]


def catalog_from(folder: Path) -> dict:
    """The recipes in `folder`, parsed the way `load_catalog` parses the installed ones."""
    catalog = {}
    for path in sorted(folder.glob("*.md")):
        if path.name.upper() == "README.MD":
            continue
        recipe = parse_recipe(path.read_text(encoding="utf-8"), path.name)
        if path.name != f"{recipe.id}.md":
            raise RecipeError(f"{path.name}: file name must be {recipe.id}.md")
        catalog[recipe.id] = recipe
    return catalog


def run(entries: list[dict], catalog: dict) -> tuple[list[dict], list[float]]:
    results, times = [], []
    for e in entries:
        t0 = time.perf_counter()
        matches = match_text(e["text"], catalog)
        times.append(time.perf_counter() - t0)
        first = matches[0] if matches else None
        results.append({
            "source": e["source"],
            "expected": e["category"],
            "got": first.category if first else None,
            "recipe": first.recipe if first else None,
            "n_matches": len(matches),
            "headline": headline(e["text"]),
        })
    return results, times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--misses", dest="misses", action="store_true", default=True,
                    help="list every miss (default)")
    ap.add_argument("--no-misses", dest="misses", action="store_false")
    ap.add_argument("--category", help="only entries expected in this category")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON instead")
    ap.add_argument("--recipes", type=Path, help="match against the recipes in this folder")
    ap.add_argument("--lines", choices=("even", "odd"),
                    help="only the even (0, 2, ...) or odd entries of each file")
    ap.add_argument("--errors", type=Path, help="related entries from this file instead")
    ap.add_argument("--unrelated", type=Path, help="unrelated entries from this file instead")
    args = ap.parse_args(argv)

    related = load(args.errors.resolve() if args.errors else "errors.jsonl")
    unrelated = load(args.unrelated.resolve() if args.unrelated else "unrelated.jsonl")
    if args.lines:
        first = 0 if args.lines == "even" else 1
        related, unrelated = related[first::2], unrelated[first::2]
    if args.category:
        related = [e for e in related if e["category"] == args.category]
    # Parse the recipes once, outside the timings, and warm the regex caches.
    catalog = catalog_from(args.recipes) if args.recipes else load_catalog()
    match_text("RuntimeError: warm-up", catalog)

    rel_res, rel_t = run(related, catalog)
    unr_res, unr_t = run(unrelated, catalog)
    times = rel_t + unr_t

    per_cat: dict[str, list[dict]] = defaultdict(list)
    for r in rel_res:
        per_cat[r["expected"]].append(r)
    hits = sum(r["got"] == r["expected"] for r in rel_res)
    unmatched = sum(r["got"] is None for r in rel_res)
    clean = sum(r["got"] is None for r in unr_res)
    claimed = [r for r in unr_res if r["got"] is not None]

    summary = {
        "recipes": len(catalog),
        "related": len(rel_res),
        "related_first_match_correct": hits,
        "related_accuracy": round(hits / len(rel_res), 4) if rel_res else None,
        "related_no_match": unmatched,
        "unrelated": len(unr_res),
        "unrelated_no_match": clean,
        "unrelated_clean_share": round(clean / len(unr_res), 4) if unr_res else None,
        "per_category": {
            cat: {"n": len(rs), "correct": sum(r["got"] == cat for r in rs),
                  "no_match": sum(r["got"] is None for r in rs)}
            for cat in CATEGORIES if (rs := per_cat.get(cat))
        },
        "ms_per_message": {
            "mean": round(1000 * statistics.fmean(times), 3) if times else None,
            "median": round(1000 * statistics.median(times), 3) if times else None,
            "max": round(1000 * max(times), 3) if times else None,
        },
    }
    misses = [r for r in rel_res if r["got"] != r["expected"]]

    if args.json:
        summary["misses"] = misses
        summary["unrelated_claimed"] = claimed
        print(json.dumps(summary, indent=2))
        return 0

    print(f"recipes: {len(catalog)} ({args.recipes or 'installed catalog'})")
    pct = lambda a, b: f"{100 * a / b:5.1f}%" if b else "  n/a"  # noqa: E731
    print(f"related entries:   {len(rel_res):4d}   first match correct: {hits:4d}  "
          f"{pct(hits, len(rel_res))}   no match at all: {unmatched}")
    print(f"unrelated entries: {len(unr_res):4d}   matched nothing:     {clean:4d}  "
          f"{pct(clean, len(unr_res))}")
    ms = summary["ms_per_message"]
    print(f"time per message:  mean {ms['mean']} ms, median {ms['median']} ms, max {ms['max']} ms")
    print()
    print(f"{'category':22s} {'n':>4s} {'correct':>8s} {'share':>7s} {'no match':>9s}  wrong category")
    for cat, row in summary["per_category"].items():
        wrong = Counter(r["got"] for r in per_cat[cat] if r["got"] not in (cat, None))
        wrong_s = ", ".join(f"{k} {v}" for k, v in wrong.most_common())
        print(f"{cat:22s} {row['n']:4d} {row['correct']:8d} {pct(row['correct'], row['n']):>7s} "
              f"{row['no_match']:9d}  {wrong_s}")
    if args.misses:
        print(f"\nmisses ({len(misses)}): source | expected | got (recipe) | headline")
        for r in sorted(misses, key=lambda r: (r["expected"], str(r["got"]), r["source"])):
            got = f"{r['got']} ({r['recipe']})" if r["got"] else "None"
            print(f"  {r['source']} | {r['expected']} | {got} | {r['headline']}")
        print(f"\nunrelated entries claimed ({len(claimed)}): source | got (recipe) | headline")
        for r in claimed:
            print(f"  {r['source']} | {r['got']} ({r['recipe']}) | {r['headline']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
