"""The recipe catalog: Markdown files with a small front matter, and the error-text matcher.

Imports nothing heavy: `cvdoctor explain` must answer in well under half a second.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

CATEGORIES = (
    "shm", "torchvision-mismatch", "gpu-arch", "missing-module", "checkpoint", "hub-auth",
    "dtype", "device", "shape", "labels", "autograd", "oom", "nan", "yolo-sam", "training",
    "platform", "dataset", "distributed",
)
SECTIONS = ("Symptom", "Cause", "Fix", "Verify", "References")
_ID = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


class RecipeError(ValueError):
    """A recipe file that does not parse; the message names the file and the problem."""


@dataclass
class Recipe:
    id: str
    title: str
    category: str
    patterns: list[str]
    body: str
    path: str
    fix: str = ""          # the one-line fix, in the recipe's own words (front matter `fix:`)
    compiled: list[re.Pattern] = field(default_factory=list, repr=False)

    def section(self, name: str) -> str:
        m = re.search(rf"^## {re.escape(name)}\s*$(.*?)(?=^## |\Z)", self.body, re.M | re.S)
        return m.group(1).strip() if m else ""


def _scalar(raw: str, where: str) -> str:
    raw = raw.strip()
    if raw.startswith("'"):
        if len(raw) < 2 or not raw.endswith("'"):
            raise RecipeError(f"{where}: unterminated single-quoted value {raw!r}")
        return raw[1:-1].replace("''", "'")
    if raw.startswith('"'):
        raise RecipeError(f"{where}: use single quotes (regex backslashes stay literal)")
    return raw


def parse_recipe(text: str, path: str = "<recipe>") -> Recipe:
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        raise RecipeError(f"{path}: must start with '---' front matter")
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
    except StopIteration:
        raise RecipeError(f"{path}: front matter is not closed with '---'") from None
    meta: dict[str, object] = {}
    current_list: list[str] | None = None
    # A scalar may continue on indented lines (YAML folds them with one space), so a long `fix:`
    # wraps at ~100 columns like the rest of the file; it is unquoted once it is complete.
    raw: dict[str, tuple[str, str]] = {}
    current_scalar: str | None = None
    for n, line in enumerate(lines[1:end], start=2):
        where = f"{path}:{n}"
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.startswith(("  - ", "- ")) and current_list is not None:
            current_list.append(_scalar(line.split("- ", 1)[1], where))
            continue
        if line.startswith(" ") and current_scalar is not None:
            first, value = raw[current_scalar]
            raw[current_scalar] = (first, f"{value.rstrip()} {line.strip()}")
            continue
        if ":" not in line or line.startswith(" "):
            raise RecipeError(f"{where}: expected 'key: value', got {line!r}")
        key, value = line.split(":", 1)
        key = key.strip()
        if key in meta:
            raise RecipeError(f"{where}: key {key!r} appears twice")
        current_list = current_scalar = None
        if value.strip() == "[]":
            meta[key] = []
        elif value.strip():
            meta[key] = ""
            raw[key] = (where, value)
            current_scalar = key
        else:
            current_list = []
            meta[key] = current_list
    for key, (where, value) in raw.items():
        meta[key] = _scalar(value, where)
    for key in ("id", "title", "category"):
        if not isinstance(meta.get(key), str) or not meta[key]:
            raise RecipeError(f"{path}: front matter needs a non-empty {key!r}")
    rid, category = str(meta["id"]), str(meta["category"])
    if not _ID.match(rid):
        raise RecipeError(f"{path}: id {rid!r} must be lower-case words joined by '-'")
    if category not in CATEGORIES:
        raise RecipeError(f"{path}: category {category!r} is not one of {', '.join(CATEGORIES)}")
    patterns = meta.get("patterns", [])
    if not isinstance(patterns, list):
        raise RecipeError(f"{path}: 'patterns' must be a list")
    compiled = []
    for p in patterns:
        try:
            compiled.append(re.compile(p, re.IGNORECASE | re.MULTILINE))
        except re.error as exc:
            raise RecipeError(f"{path}: pattern {p!r} is not a valid regex: {exc}") from None
    body = "\n".join(lines[end + 1:]).strip() + "\n"
    missing = [s for s in SECTIONS if not re.search(rf"^## {s}\s*$", body, re.M)]
    if missing:
        raise RecipeError(f"{path}: missing section(s) {', '.join(missing)}")
    fix = meta.get("fix")
    if not isinstance(fix, str) or not fix.strip():
        raise RecipeError(f"{path}: front matter needs a non-empty 'fix' (the one-line fix, in "
                          "the recipe's own words)")
    return Recipe(rid, str(meta["title"]), category, list(patterns), body, path,
                  fix=fix.strip(), compiled=compiled)


@lru_cache(maxsize=1)
def load_catalog() -> dict[str, Recipe]:
    catalog: dict[str, Recipe] = {}
    root = resources.files("cvdoctor.recipes")
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".md") or entry.name.upper() == "README.MD":
            continue
        recipe = parse_recipe(entry.read_text(encoding="utf-8"), entry.name)
        if entry.name != f"{recipe.id}.md":
            raise RecipeError(f"{entry.name}: file name must be {recipe.id}.md")
        catalog[recipe.id] = recipe
    return catalog


def get_recipe(recipe_id: str) -> Recipe | None:
    return load_catalog().get(recipe_id)


@dataclass
class Match:
    recipe: str
    category: str
    score: float
    matched_text: str
    line: str
    fix: str = ""

    def to_dict(self) -> dict:
        return {"recipe": self.recipe, "category": self.category, "score": self.score,
                "matched_text": self.matched_text, "line": self.line, "fix": self.fix}


_EXC_LINE = re.compile(r"^\s*(?:[\w.]+\.)?\w*(?:Error|Exception|Warning)\b.*:", re.M)


def match_text(text: str, catalog: dict[str, Recipe] | None = None) -> list[Match]:
    """Rank recipes whose patterns occur in `text` (a message, a log, a whole traceback).

    Score: patterns of the recipe that matched, plus a bonus when a match sits on the last
    exception line (the error that ended the run outranks whatever was logged before it), plus a
    tiny length tie-break that favours more specific patterns.
    """
    catalog = load_catalog() if catalog is None else catalog
    exc_lines = [m for m in _EXC_LINE.finditer(text)]
    last_exc = (exc_lines[-1].start(), text.find("\n", exc_lines[-1].start())) if exc_lines else None
    matches: list[Match] = []
    for recipe in catalog.values():
        hits = []
        for pattern in recipe.compiled:
            m = pattern.search(text)
            if m:
                hits.append(m)
        if not hits:
            continue
        on_last = [m for m in hits if last_exc is not None and last_exc[0] <= m.start()
                   and (last_exc[1] == -1 or m.start() < last_exc[1])]
        longest = max(hits, key=lambda m: len(m.group(0)))
        score = len(hits) + (1.0 if on_last else 0.0) + min(len(longest.group(0)), 200) / 1000
        # Show the hit on the error that ended the run when there is one; one line of it.
        shown = on_last[0] if on_last else longest
        line_start = text.rfind("\n", 0, shown.start()) + 1
        line_end = text.find("\n", shown.start())
        line = text[line_start:line_end if line_end != -1 else len(text)].strip()
        matches.append(Match(recipe.id, recipe.category, round(score, 3), shown.group(0),
                             line[:300], recipe.fix))
    matches.sort(key=lambda m: (-m.score, m.recipe))
    return matches


def error_recipe_ids() -> list[str]:
    """Every recipe the error matcher can land on (those with patterns). A check that turns the
    user's exception into a finding registers these; a broken recipe file yields none rather
    than taking the checks down."""
    try:
        return sorted(r.id for r in load_catalog().values() if r.patterns)
    except Exception:  # noqa: BLE001
        return []


def recipe_for_error(*texts: str, allowed=None) -> Match | None:
    """The best-ranked recipe (in `allowed`, when given) for the first of `texts` that matches
    any recipe (the message first, then e.g. the whole traceback)."""
    for text in texts:
        try:
            matches = match_text(text)
        except Exception:  # noqa: BLE001 - a broken recipe file must not hide the user's error
            return None
        if matches:
            return next((m for m in matches if allowed is None or m.recipe in allowed), None)
    return None
