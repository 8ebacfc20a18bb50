"""The matcher behind `cvdoctor explain` and `cvdoctor run` (cvdoctor.catalog): what a long log
is cut to, which exception decides, and the literal prefilter that must never hide a match.

Speed itself is measured in bench/bench_explain.py; here only the properties that make it
linear (a bounded window whatever the log's size) and the correctness of the shortcuts.
"""
from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from cvdoctor.catalog import (EARLIER, FULL_TEXT, TAIL, _decisive, _literal_runs,
                              _parsed_needles, error_line, focus, load_catalog, match_text,
                              needles)
from cvdoctor.cli import cli

OOM = ("Traceback (most recent call last):\n  File \"train.py\", line 9, in <module>\n"
       "    out = model(x)\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 "
       "GiB. GPU 0 has a total capacity of 23.55 GiB of which 1.00 GiB is free.\n")
PROGRESS = "".join(f"\rEpoch 3: {i:3d}%|{'#' * (i // 10):10s}| loss=0.41{i % 10}" for i in range(100))


def training_log(mb: float) -> str:
    line = PROGRESS + "\nEpoch 3: train_loss=0.4123 val_loss=0.5012 acc=0.871\n"
    return line * int(mb * 1_000_000 / len(line))


# --- the literal prefilter ---------------------------------------------------------------------

def _mandatory_runs(pattern: str) -> list[str]:
    """Every run of literal characters the regex parser says a match must contain."""
    from re import _constants as C, _parser as P

    runs: list[str] = []

    def walk(items) -> None:
        run = ""
        for op, av in list(items) + [(None, None)]:
            if op is C.LITERAL:
                run += chr(av)
                continue
            if run:
                runs.append(run)
            run = ""
            if op is C.SUBPATTERN:
                walk(av[-1])
            elif op in (C.MAX_REPEAT, C.MIN_REPEAT) and av[0] >= 1:
                walk(av[2])

    walk(P.parse(pattern, re.IGNORECASE).data)
    return [r.lower() for r in runs]


def test_every_quick_needle_is_a_literal_the_parser_finds_mandatory():
    """The quick reading of the pattern text (used for every pattern on every explain) never
    claims a word a match could lack: each word is inside a run the regex parser itself finds
    mandatory, or (for top-level alternations) each branch's word is in that branch."""
    checked = 0
    for recipe in load_catalog().values():
        for pattern in recipe.patterns:
            runs = _literal_runs(pattern)
            if runs is None:
                continue
            mandatory = _mandatory_runs(pattern)
            for run in runs:
                assert any(run.lower() in m for m in mandatory), (recipe.id, pattern, run)
                checked += 1
    assert checked > 200


@pytest.mark.parametrize("pattern,expected", [
    (r"\b(?:CUDA|HIP|XPU) out of memory\b", [" out of memory"]),
    (r"abc?def", ["def"]),
    (r"ab*cdef", ["cdef"]),
    (r"abcd{0,2}ef", ["abc"]),
    (r"abcd{2}ef", ["abcd"]),
    (r"Target (?!255\b)-?\d+ is out of bounds", ["Target ", " is out of bounds"]),
    (r"a\.b\.c[xyz]+def", ["a.b.c", "def"]),
    (r"lazy??x", ["laz"]),
    (r"Unable to load any of \{libcudnn", ["Unable to load any of {libcudnn"]),
    (r"foo|bar", None),
    (r"(?x) verbose pattern", None),
])
def test_literal_runs(pattern, expected):
    assert _literal_runs(pattern) == expected


def test_alternations_need_one_word_per_branch():
    assert needles(r"GatedRepoError|Cannot access gated repo") == ("cannot access gated repo",
                                                                    "gatedrepoerror")
    assert needles(r"abc|\d+") == _parsed_needles(r"abc|\d+") == ()


def test_a_match_is_never_skipped_by_the_prefilter():
    """Every realistic message of the pattern tables matches the same with and without it."""
    import importlib

    texts = []
    for name in ("test_recipe_patterns_breadth", "test_recipe_patterns_common"):
        module = importlib.import_module(name)
        texts += [t for _, t in module.FIRST]
    catalog = load_catalog()
    for text in texts:
        found = {m.recipe for m in match_text(text, catalog)}
        plain = {rid for rid, r in catalog.items() if any(p.search(text) for p in r.compiled)}
        assert found == plain, text[:200]


# --- long logs ---------------------------------------------------------------------------------

def test_a_short_text_is_read_whole():
    text = "x" * (FULL_TEXT - 10)
    assert focus(text) is text


def test_a_long_log_is_cut_to_a_bounded_window_that_keeps_what_matters():
    first = ("Traceback (most recent call last):\n  File \"data.py\", line 3, in <module>\n"
             "ValueError: the first failure\n")
    warning = "UserWarning: Failed to load image Python extension\n"
    for mb in (2, 8, 32):
        log = first + training_log(mb / 2) + warning + training_log(mb / 2) + OOM
        window = focus(log)
        assert len(window) <= TAIL + EARLIER + 40_000, (mb, len(window))
        assert window.endswith(OOM)
        assert "ValueError: the first failure" in window and warning.strip() in window


def test_the_oom_at_the_end_of_a_10_mb_log_is_found():
    log = training_log(10) + OOM
    best = match_text(log)[0]
    assert (best.recipe, best.on_error) == ("cuda-oom", True)
    assert best.said.startswith("GPU 0: tried to allocate 2.00 GiB")


def test_explain_file_reads_a_long_log(tmp_path):
    path = tmp_path / "train.log"
    path.write_text(training_log(3) + OOM)
    result = CliRunner().invoke(cli, ["explain", "--file", str(path)])
    assert result.exit_code == 0
    assert result.stdout.splitlines()[1].startswith("Recipe:  cuda-oom [oom]")


def test_terminal_colours_and_crlf_do_not_hide_an_error():
    coloured = "\x1b[1;31mRuntimeError\x1b[0m: CUDA error: out of memory\r\n"
    assert match_text(coloured)[0].recipe == "cuda-oom"


# --- which exception decides -------------------------------------------------------------------

def test_the_last_exception_outranks_earlier_log_lines():
    text = ("WARNING: Dataset not found, missing paths\n" + OOM)
    ranking = [m.recipe for m in match_text(text)]
    assert ranking[0] == "cuda-oom" and "yolo-dataset-path" in ranking


def test_chained_exceptions_count_as_the_error_that_ended_the_run():
    text = ("Traceback (most recent call last):\n  File \"x.py\", line 1\nRuntimeError: DataLoader "
            "worker (pid 41) is killed by signal: Bus error. It is possible that dataloader's "
            "workers are out of shared memory. Please try to raise your shared memory limit.\n\n"
            "The above exception was the direct cause of the following exception:\n\n"
            "Traceback (most recent call last):\n  File \"train.py\", line 9\nRuntimeError: "
            "DataLoader worker (pid(s) 41) exited unexpectedly\n")
    assert len(_decisive(text)) == 2
    assert match_text(text)[0].recipe == "shm-docker-ipc"


def test_an_unrelated_final_exception_leaves_earlier_matches_off_the_error():
    text = ("UserWarning: Failed to load image Python extension: image.so: undefined symbol: "
            "_ZN3c10\nTraceback (most recent call last):\n  File \"cfg.py\", line 2\n"
            "KeyError: 'batch_size'\n")
    assert error_line(text) == "KeyError: 'batch_size'"
    assert all(not m.on_error for m in match_text(text))


def test_error_line_ignores_warnings_and_plain_logs():
    assert error_line("epoch 3 loss=0.41\nall good\n") is None
    assert error_line("UserWarning: something odd\n") is None


def test_line_bounds_searched_within_the_cap_are_the_same_as_searched_to_the_ends():
    """_line_bounds searches only within _LINE_CAP around the position (a search for a "\\r"
    that a log never holds used to read to the end of the text on every call). The bounds it
    returns must be exactly those of an unbounded search, capped."""
    import random

    from cvdoctor import catalog

    def reference(text, pos, lo=0, hi=None):
        hi = len(text) if hi is None else hi
        start = max(text.rfind("\n", lo, pos), text.rfind("\r", lo, pos)) + 1
        start = max(start, lo, pos - catalog._LINE_CAP // 2)
        ends = [e for e in (text.find("\n", pos, hi), text.find("\r", pos, hi)) if e != -1]
        return start, min(min(ends) if ends else hi, pos + catalog._LINE_CAP // 2)

    rng = random.Random(0)
    cap = catalog._LINE_CAP
    for _ in range(400):
        n = rng.randint(1, 4 * cap)
        text = "".join(rng.choice("ab\n\r") if rng.random() < rng.choice([0.001, 0.05, 0.5])
                       else "x" for _ in range(n))
        pos = rng.randint(0, n)
        lo = rng.randint(0, pos)
        hi = rng.choice([None, rng.randint(pos, n)])
        assert catalog._line_bounds(text, pos, lo, hi) == reference(text, pos, lo, hi), \
            (n, pos, lo, hi)
