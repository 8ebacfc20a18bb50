"""Explain a failing test's exception with the recipe catalog (torch-free, only on failure)."""
from __future__ import annotations

import re
import traceback

_ALREADY_EXPLAINED = re.compile(r"cvdoctor explain [a-z0-9-]+")


def exception_text(exc: BaseException) -> str:
    """The exception and its causes/contexts as "Type: message" lines, outermost last, the way a
    traceback ends (the matcher gives the last exception line extra weight)."""
    chain: list[BaseException] = []
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen and len(chain) < 8:
        seen.add(id(cur))
        chain.append(cur)
        cur = cur.__cause__ or (None if cur.__suppress_context__ else cur.__context__)
    parts = ["".join(traceback.format_exception_only(type(e), e)).strip() for e in reversed(chain)]
    return "\n".join(parts)


def one_line_fix(recipe) -> str:
    """The recipe's one-line fix, in its own words (its `fix:` front matter)."""
    return recipe.fix


def explain_exception(exc: BaseException) -> str | None:
    """The text of the "cvdoctor" report section for `exc`, or None when no recipe matches (or
    the message already names a recipe: cvdoctor's own assertion messages)."""
    text = exception_text(exc)
    if not text or _ALREADY_EXPLAINED.search(text):
        return None
    from cvdoctor.catalog import get_recipe, match_text

    matches = match_text(text)
    if not matches:
        return None
    best = matches[0]
    recipe = get_recipe(best.recipe)
    title = recipe.title if recipe else best.recipe
    lines = [f"This failure matches a known problem: {title}",
             f"  matched: {best.line}"]
    fix = one_line_fix(recipe) if recipe else ""
    if fix:
        lines.append(f"  fix:     {fix}")
    lines.append(f"  more:    cvdoctor explain {best.recipe}")
    others = [m.recipe for m in matches[1:4]]
    if others:
        lines.append(f"  related: {', '.join(others)}")
    return "\n".join(lines) + "\n"
