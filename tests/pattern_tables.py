"""The tests every recipe pattern table runs, written once: a test module lists its recipes
(MINE), realistic messages each must rank first (FIRST), unrelated messages none may claim
(UNRELATED) and messages other recipes own (OWNED_ELSEWHERE), then takes these tests with

    globals().update(pattern_table_tests(MINE, FIRST, UNRELATED, OWNED_ELSEWHERE))
"""
from __future__ import annotations

import re
from typing import Callable

import pytest

from cvdoctor.catalog import load_catalog, match_text

# a group with a quantifier inside, quantified again: the shape of catastrophic backtracking
NESTED_QUANTIFIER = re.compile(r"\((?:[^()\\]|\\.)*[+*]\)[+*{]")


def _ids(cases):
    return [f"{rid}-{n}" for n, (rid, _) in enumerate(cases)]


def pattern_table_tests(mine, first, unrelated, owned_elsewhere=(), *,
                        min_wordings: int = 3) -> dict[str, Callable]:
    def test_every_recipe_here_exists():
        assert [rid for rid in mine if rid not in load_catalog()] == []

    @pytest.mark.parametrize("recipe_id,text", first, ids=_ids(first))
    def test_realistic_message_ranks_its_recipe_first(recipe_id, text):
        matches = match_text(text)
        assert matches and matches[0].recipe == recipe_id, [(m.recipe, m.score) for m in matches]

    @pytest.mark.parametrize("text", unrelated)
    def test_unrelated_error_matches_none_of_these(text):
        assert [m.recipe for m in match_text(text) if m.recipe in mine] == []

    def test_every_recipe_here_has_several_wordings():
        counts = {rid: sum(1 for r, _ in first if r == rid) for rid in mine}
        assert {rid: n for rid, n in counts.items() if n < min_wordings} == {}

    def test_every_pattern_is_exercised_by_a_message():
        unused = [(rid, p.pattern) for rid in mine for p in load_catalog()[rid].compiled
                  if not any(p.search(t) for r, t in first if r == rid)]
        assert unused == []

    def test_patterns_stay_linear():
        assert [(rid, p) for rid in mine for p in load_catalog()[rid].patterns
                if NESTED_QUANTIFIER.search(p)] == []

    tests = dict(locals())
    if owned_elsewhere:
        @pytest.mark.parametrize("owner,text", owned_elsewhere, ids=_ids(owned_elsewhere))
        def test_problems_owned_by_other_recipes_are_not_claimed(owner, text):
            matches = match_text(text)
            assert matches and matches[0].recipe == owner, [(m.recipe, m.score) for m in matches]

        tests["test_problems_owned_by_other_recipes_are_not_claimed"] = \
            test_problems_owned_by_other_recipes_are_not_claimed
    return {name: fn for name, fn in tests.items() if name.startswith("test_")}
