"""Code and recipes stay in step, both ways; every front matter parses (the consistency gate)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from cvdoctor.catalog import CATEGORIES, RecipeError, load_catalog, match_text, parse_recipe
from cvdoctor.registry import all_checks

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
REFERENCE_FILES = {"000_2619264cf068eb3f.txt", "001_735bf26414c1e3cf.txt",
                   "002_c586b4f001737296.txt", "003_e6e3b3ef51fd4082.txt",
                   "004_36a754e1d1c1a726.txt"}


def test_every_recipe_file_parses():
    files = sorted(p for p in RECIPES.glob("*.md") if p.name != "README.md")
    assert files, "no recipes found"
    for path in files:
        recipe = parse_recipe(path.read_text(encoding="utf-8"), path.name)
        assert path.name == f"{recipe.id}.md"
        assert recipe.category in CATEGORIES


def test_every_recipe_a_check_can_emit_exists():
    catalog = load_catalog()
    missing = {(spec.id, r) for spec in all_checks() for r in spec.recipes if r not in catalog}
    assert not missing, f"checks declare recipes with no file: {sorted(missing)}"


def test_every_recipe_is_reachable_from_a_check_or_an_error_pattern():
    declared = {r for spec in all_checks() for r in spec.recipes}
    orphans = [rid for rid, rec in load_catalog().items() if rid not in declared and not rec.patterns]
    assert not orphans, f"recipes no check emits and no error text reaches: {orphans}"


def test_recipes_have_their_sections_and_cite_a_reference():
    for rid, recipe in load_catalog().items():
        refs = recipe.section("References")
        assert refs, f"{rid}: empty References"
        cites = set(re.findall(r"\d{3}_[0-9a-f]{16}\.txt", refs))
        assert cites <= REFERENCE_FILES, f"{rid}: cites unknown reference files {cites - REFERENCE_FILES}"
        assert cites or "field experience" in refs.lower(), \
            f"{rid}: cite a reference file and section, or say 'field experience'"
        assert recipe.section("Fix") and recipe.section("Symptom") and recipe.section("Cause")
        assert "cvdoctor" in recipe.section("Verify"), f"{rid}: Verify names no cvdoctor command"
        opening = recipe.body.split("\n## ", 1)[0].strip()
        assert opening, f"{rid}: needs an opening paragraph before the sections"


def test_recipe_lines_wrap_near_100_columns():
    for path in RECIPES.glob("*.md"):
        in_code = False
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.startswith("```"):
                in_code = not in_code
            if not in_code and not line.lstrip().startswith(("- '", "|", "http")):
                assert len(line) <= 110, f"{path.name}:{n} is {len(line)} columns"


@pytest.mark.parametrize("text,problem", [
    ("---\nid: x\n", "not closed"),
    ("no front matter", "must start"),
    ("---\nid: Bad_Id\ntitle: t\ncategory: shm\n---\n", "lower-case"),
    ("---\nid: x\ntitle: t\ncategory: nonsense\n---\n", "category"),
    ("---\nid: x\ntitle: t\ncategory: shm\npatterns:\n  - '(unclosed'\n---\n", "not a valid regex"),
    ("---\nid: x\ntitle: t\ncategory: shm\n---\n## Symptom\n", "missing section"),
])
def test_bad_front_matter_is_reported(text, problem):
    with pytest.raises(RecipeError, match=problem):
        parse_recipe(text, "x.md")


@pytest.mark.parametrize("text", [
    "KeyError: 'lr'",
    "json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)",
    "requests.exceptions.ConnectionError: HTTPSConnectionPool(host='example.org', port=443): "
    "Max retries exceeded with url: /",
    "ZeroDivisionError: division by zero",
    "TypeError: unsupported operand type(s) for +: 'int' and 'str'",
])
def test_unrelated_errors_match_no_recipe(text):
    assert match_text(text) == []
