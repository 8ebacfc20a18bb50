"""Code and recipes stay in step, both ways; every front matter parses (the consistency gate)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from cvdoctor.catalog import CATEGORIES, RecipeError, load_catalog, match_text, parse_recipe
from cvdoctor.registry import all_checks

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
# The reference documents, by the titles recipes cite them with (recipes/README.md lists each
# one's full title). Readers can look these up; the files they live in here are nobody's business.
GUIDE_TITLES = ("Computer Vision Troubleshooting Guide", "Computer Vision FAQ",
                "ML Fundamentals, Part 2", "Module Review: Computer Vision",
                "Study Material: CNNs with CIFAR10")
URL = re.compile(r"https?://[^\s)>\]]+")
PUBLIC_ISSUE = re.compile(r"\b[\w.-]+/[\w.-]+#\d+\b")
# Paths into this repository's working files; URLs are removed before looking for them.
INTERNAL_PATH = re.compile(r"\.\./shared|\bshared/reference|\d{3}_[0-9a-f]{16}\.txt|reference/")


def internal_paths(text: str) -> list[str]:
    return INTERNAL_PATH.findall(URL.sub(" ", text))


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
        assert not internal_paths(refs), \
            f"{rid}: References cite internal paths {internal_paths(refs)}; name the source instead"
        findable = (any(title in refs for title in GUIDE_TITLES) or URL.search(refs)
                    or PUBLIC_ISSUE.search(refs) or "field experience" in refs.lower())
        assert findable, (f"{rid}: cite a source a reader can find: a guide title and section "
                          f"({', '.join(GUIDE_TITLES)}), a URL, an owner/repo#N issue, or say "
                          "'field experience'")
        assert recipe.section("Fix") and recipe.section("Symptom") and recipe.section("Cause")
        assert "cvdoctor" in recipe.section("Verify"), f"{rid}: Verify names no cvdoctor command"
        opening = recipe.body.split("\n## ", 1)[0].strip()
        assert opening, f"{rid}: needs an opening paragraph before the sections"


def test_explain_prints_no_internal_path():
    """What `cvdoctor explain <id>` shows a user (title line and body) names no file of ours."""
    from click.testing import CliRunner

    from cvdoctor.cli import cli

    runner = CliRunner()
    for rid, recipe in load_catalog().items():
        result = runner.invoke(cli, ["explain", rid])
        assert result.exit_code == 0, (rid, result.output)
        assert recipe.title in result.stdout
        shown = result.stdout + "\n" + recipe.fix
        assert not internal_paths(shown), f"{rid}: explain prints {internal_paths(shown)}"


def test_internal_path_detector():
    assert internal_paths("- `../shared/reference/001_735bf26414c1e3cf.txt`, \"Error: x\"")
    assert internal_paths("see 004_36a754e1d1c1a726.txt")
    assert not internal_paths("- Hugging Face Hub documentation, “Environment variables”: "
                              "https://huggingface.co/docs/huggingface_hub/package_reference/x")
    assert not internal_paths("- pytorch/pytorch#5040 (bus error); Field experience.")


def test_every_recipe_has_a_one_line_fix_in_its_own_words():
    for rid, recipe in load_catalog().items():
        assert recipe.fix, f"{rid}: front matter needs a 'fix:' line"
        assert "\n" not in recipe.fix and len(recipe.fix) < 200, \
            f"{rid}: 'fix' must be one line under 200 characters ({len(recipe.fix)})"


def test_front_matter_reads_the_same_as_yaml():
    """The parser is a strict subset of YAML: any YAML tool reads the same values."""
    yaml = pytest.importorskip("yaml")
    for path in sorted(p for p in RECIPES.glob("*.md") if p.name != "README.md"):
        text = path.read_text(encoding="utf-8")
        recipe = parse_recipe(text, path.name)
        meta = yaml.safe_load(text.split("---\n", 2)[1])
        assert (meta["id"], meta["title"], meta["category"], meta["fix"]) == \
            (recipe.id, recipe.title, recipe.category, recipe.fix), path.name
        assert (meta.get("patterns") or []) == recipe.patterns, path.name


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


SECTIONS_TEXT = "".join(f"## {s}\n\ntext\n\n" for s in ("Symptom", "Cause", "Fix", "Verify",
                                                        "References"))


@pytest.mark.parametrize("fix_line", ["", "fix:\n", "fix: ''\n", "fix:   \n"])
def test_a_recipe_without_a_fix_is_reported_by_file_name(fix_line):
    text = f"---\nid: x\ntitle: t\ncategory: shm\n{fix_line}---\nPoint.\n\n{SECTIONS_TEXT}"
    with pytest.raises(RecipeError, match=r"^x\.md: .*non-empty 'fix'"):
        parse_recipe(text, "x.md")


@pytest.mark.parametrize("fix_lines,expected", [
    ("fix: Pass `drop_last=True` to the DataLoader.", "Pass `drop_last=True` to the DataLoader."),
    ("fix: 'Two steps: lower the rate, then clip.'", "Two steps: lower the rate, then clip."),
    ("fix: 'It''s quoted'", "It's quoted"),
    ("fix: Lower the batch size,\n  use bf16 autocast,\n  and accumulate gradients.",
     "Lower the batch size, use bf16 autocast, and accumulate gradients."),
    ("fix: 'Wrapped: and quoted,\n  on two lines'", "Wrapped: and quoted, on two lines"),
])
def test_fix_is_a_scalar_that_may_wrap(fix_lines, expected):
    text = (f"---\nid: x\ntitle: t\ncategory: shm\n{fix_lines}\npatterns:\n  - 'boom'\n---\n"
            f"Point.\n\n{SECTIONS_TEXT}")
    recipe = parse_recipe(text, "x.md")
    assert recipe.fix == expected
    assert recipe.patterns == ["boom"]


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
