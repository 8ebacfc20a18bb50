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
_HEADING = re.compile(r"^## (\w+)[ \t]*$", re.M)
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

    @property
    def compiled(self) -> list[re.Pattern]:
        """The patterns, compiled (once per process, on first use: `explain` compiles only the
        patterns whose literal words occur in the text)."""
        return [compile_pattern(p) for p in self.patterns]

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


_COMPILED: dict[str, re.Pattern] = {}


def compile_pattern(pattern: str) -> re.Pattern:
    """A recipe pattern compiled as the catalog matches it (case-insensitive, multi-line)."""
    compiled = _COMPILED.get(pattern)
    if compiled is None:
        compiled = _COMPILED[pattern] = re.compile(pattern, re.IGNORECASE | re.MULTILINE)
    return compiled


def parse_recipe(text: str, path: str = "<recipe>", *, check_patterns: bool = True) -> Recipe:
    """Parse one recipe file. `check_patterns=False` leaves compiling the patterns to their
    first use (the installed catalog, whose patterns the consistency test compiles)."""
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
    for p in patterns if check_patterns else ():
        if not isinstance(p, str):
            raise RecipeError(f"{path}: pattern {p!r} must be a string")
        try:
            compile_pattern(p)
        except re.error as exc:
            raise RecipeError(f"{path}: pattern {p!r} is not a valid regex: {exc}") from None
    body = "\n".join(lines[end + 1:]).strip() + "\n"
    headings = set(_HEADING.findall(body))
    missing = [s for s in SECTIONS if s not in headings]
    if missing:
        raise RecipeError(f"{path}: missing section(s) {', '.join(missing)}")
    fix = meta.get("fix")
    if not isinstance(fix, str) or not fix.strip():
        raise RecipeError(f"{path}: front matter needs a non-empty 'fix' (the one-line fix, in "
                          "the recipe's own words)")
    return Recipe(rid, str(meta["title"]), category, list(patterns), body, path, fix=fix.strip())


@lru_cache(maxsize=1)
def load_catalog() -> dict[str, Recipe]:
    catalog: dict[str, Recipe] = {}
    root = resources.files("cvdoctor.recipes")
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".md") or entry.name.upper() == "README.MD":
            continue
        recipe = parse_recipe(entry.read_text(encoding="utf-8"), entry.name,
                              check_patterns=False)
        if entry.name != f"{recipe.id}.md":
            raise RecipeError(f"{entry.name}: file name must be {recipe.id}.md")
        catalog[recipe.id] = recipe
    return catalog


def get_recipe(recipe_id: str) -> Recipe | None:
    return load_catalog().get(recipe_id)


# --- matching -----------------------------------------------------------------------------------
#
# A message, a traceback or a whole training log goes in; recipes whose patterns occur come out,
# best first. Two things keep it fast on long logs (`explain --file train.log`, `cvdoctor run`):
# a long text is first cut to the part that can hold the error (`focus`: its end, its first
# traceback and the latest distinct error lines before it, found with one literal scan), and
# every pattern carries the literal words it cannot match without (`_needles`), looked up in the
# lower-cased text before the regex itself runs.

FULL_TEXT = 256 * 1024  # characters: texts up to this size are matched whole
TAIL = 128 * 1024  # the end of a longer log, always read
EARLIER = 128 * 1024  # error lines and tracebacks before the tail, latest first
_LINE_CAP = 2048  # one "line" of a log (a tqdm bar redrawn with \r can be megabytes)

# Case-sensitive literals only: a plain alternation of literals is scanned at memory speed,
# while IGNORECASE or classes would make this the slowest step on a 10 MB log.
_MARKER_WORDS = (
    "Traceback (most recent call last)", "Error", "ERROR", "error", "Exception", "FAIL", "Fail",
    "fail", "Killed", "killed", "WARN", "Warn", "warn", "Illegal", "illegal", "Segmentation",
    "Aborted", "Assert", "assert", "signal", "nan", "NaN", "CUDA", "NCCL", "cannot", "Cannot",
    "not found", "No module", "No such", "denied", "out of memory", "exceeds", "timed out",
    "Timeout", "Unknown", "corrupt", "truncated", "mismatch",
)
_MARKERS = re.compile("|".join(re.escape(w) for w in _MARKER_WORDS))
_TRACEBACK = "Traceback (most recent call last)"

# The line an exception ends a run with: `RuntimeError: ...`, `[rank1]: torch.OutOfMemoryError:
# ...`, pytest's `E   RuntimeError: ...`, a quoted `> RuntimeError: ...`, a bare `KeyError` line.
_EXC_LINE = re.compile(
    r"^[ \t>|E]*(?:\[[^\]\n]{1,80}\]:?[ \t]*)*(?:[\w.]+\.)?\w*(?:Error|Exception|Exit|Interrupt)"
    r"\b[^\n]*?(?::|$)", re.M)
_WARN_LINE = re.compile(r"^[^\n]{0,300}?\b\w*Warning:", re.M)
# Where the message of an exception ends: a blank line, a new traceback, or another log record
# (glog `E1203 10:00:00`, `INFO`/`WARNING` records, timestamps, another rank's tagged line).
_BLOCK_BREAK = re.compile(r"^(?:\s*$|Traceback \(most recent call last\)|  File \"|During handling"
                          r"|The above exception|[WEIF]\d{4} \d\d:\d\d|\[?(?:INFO|WARNING|ERROR|DEBUG)\b"
                          r"|\d{4}[-/]\d\d[-/]\d\d[ T]\d|\[rank\d+\]:)", re.M)
_RANK_TAG = re.compile(r"[ \t]*\[rank\d+\]:[ \t]*")
# A launcher's own exception (torchrun, accelerate, a subprocess wrapper): the error that ended
# the run is one of its children's, above it.
_LAUNCHER = re.compile(
    r"ChildFailedError|elastic\.multiprocessing\.api:failed \(exitcode|CalledProcessError: Command "
    r"[^\n]{0,400}(?:torchrun|torch\.distributed\.(?:run|launch)|accelerate|deepspeed)")
_ROOT_RANK = re.compile(r"Root Cause \(first observed failure\):\s*\[\d+\]:[\s\S]{0,400}?"
                        r"rank\s*:\s*(\d+)")


def _line_bounds(text: str, pos: int, lo: int = 0, hi: int | None = None) -> tuple[int, int]:
    """Start and end of the line around `pos` (\\n or \\r bounded, at most _LINE_CAP wide)."""
    # Searched only within the cap around `pos`: the result is capped there anyway, and an
    # unbounded search for a "\r" that a log never holds made every call read to the end of the
    # text (120 s for focus() on a 21 MB log of repeated assert lines).
    hi = len(text) if hi is None else hi
    lo, hi = max(lo, pos - _LINE_CAP // 2), min(hi, pos + _LINE_CAP // 2)
    start = max(text.rfind("\n", lo, pos), text.rfind("\r", lo, pos)) + 1
    start = max(start, lo)
    ends = [e for e in (text.find("\n", pos, hi), text.find("\r", pos, hi)) if e != -1]
    return start, (min(ends) if ends else hi)


def focus(text: str) -> str:
    """The part of `text` that matching reads. Short texts are read whole; of a long log, its
    last 128 KiB, its first traceback, and the latest distinct error lines (each traceback up to
    its exception) before the tail, up to 128 KiB more. One literal scan: linear in the size."""
    if len(text) <= FULL_TEXT:
        return text
    cut = text.find("\n", len(text) - TAIL) + 1 or len(text) - TAIL
    regions: list[tuple[int, int]] = []
    budget = EARLIER

    def block(start: int) -> tuple[int, int]:
        """A traceback from its header to the end of its exception line (bounded)."""
        limit = min(start + 16384, cut)
        exc = _EXC_LINE.search(text, text.find("\n", start, limit) + 1 or limit, limit)
        end = text.find("\n", exc.end(), limit) if exc else -1
        return start, (end if end != -1 else limit)

    first = text.find(_TRACEBACK, 0, cut)
    if first != -1:
        regions.append(block(_line_bounds(text, first, 0, cut)[0]))
        budget -= regions[-1][1] - regions[-1][0]
    seen: set[str] = set()
    hits = [m.start() for m in _MARKERS.finditer(text, 0, cut)]
    last_start = cut
    for pos in reversed(hits):
        if budget <= 0:
            break
        if pos >= last_start:  # another hit on a line already taken
            continue
        start, end = _line_bounds(text, pos, 0, cut)
        last_start = start
        line = text[start:end]
        if line in seen:
            continue
        seen.add(line)
        if line.lstrip().startswith(_TRACEBACK):
            start, end = block(start)
        regions.append((start, end))
        budget -= end - start
    regions.sort()
    merged: list[list[int]] = []
    for start, end in regions:
        if merged and start <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return "\n".join([*(text[s:e] for s, e in merged), text[cut:]])


_CHAINED = re.compile(r"(?:The above exception was the direct cause of the following exception|"
                      r"During handling of the above exception, another exception occurred):"
                      r"\s*(?:\[rank\d+\]:\s*)*\Z")


def _message_span(text: str, exc: re.Match) -> tuple[int, int]:
    """An exception line and the lines that continue its message (a wrapped message, the
    state_dict key list), up to a blank line, a new traceback or another log record."""
    start = _line_bounds(text, exc.start())[0]
    limit = min(len(text), start + 4096)
    pos = text.find("\n", exc.start()) + 1 or len(text)
    tag = _RANK_TAG.match(text, start)
    if tag:  # the message goes on while the lines carry the same rank's tag
        prefix = tag.group(0).strip()
        while pos < limit and text.startswith(prefix, pos) and not text.startswith(
                (f"{prefix} Traceback", f"{prefix}   File"), pos):
            pos = text.find("\n", pos) + 1 or len(text)
        end = pos
    else:
        brk = _BLOCK_BREAK.search(text, pos, limit)
        end = brk.start() if brk else limit
    return start, max(end, _line_bounds(text, exc.start())[1])


def _decisive(text: str, warnings: bool = True) -> list[tuple[int, int]]:
    """The spans of the exception that ended the run: the last exception line (with the lines
    that continue its message) and the exceptions chained before it ("The above exception was
    the direct cause of ..."), or, when the last one is a launcher's summary (torchrun's
    ChildFailedError), the root-cause rank's own exception. Empty when there is no exception
    line (a bare message, a log line)."""
    lines = [m for m in _EXC_LINE.finditer(text)
             if not m.group(0).lstrip(" \t>|E").startswith(("raise ", "Traceback"))]
    if not lines:
        lines = list(_WARN_LINE.finditer(text)) if warnings else []
        if not lines:
            return []
    index = len(lines) - 1
    last = lines[index]
    if _LAUNCHER.search(text, last.start(), _line_bounds(text, last.start())[1]):
        children = [i for i, m in enumerate(lines) if not _LAUNCHER.search(
            text, m.start(), _line_bounds(text, m.start())[1])]
        rank = _ROOT_RANK.search(text)
        tagged = [i for i in children if rank and f"[rank{rank.group(1)}]" in lines[i].group(0)]
        # The root-cause rank's last exception when its lines are tagged; else the first child
        # exception (the ranks that fail later usually fail because of the first one).
        if tagged:
            index = tagged[-1]
        elif children:
            index = children[0]
    spans = [_message_span(text, lines[index])]
    # Walk up the chain: a traceback introduced by "The above exception ..." continues the
    # exception line before it.
    while index > 0:
        header = text.rfind(_TRACEBACK, lines[index - 1].end(), lines[index].start())
        if header == -1 or not _CHAINED.search(
                text, max(lines[index - 1].end(), header - 300), header):
            break
        index -= 1
        spans.append(_message_span(text, lines[index]))
    return spans


_NEEDLES: dict[str, tuple[str, ...]] = {}


def needles(pattern: str) -> tuple[str, ...]:
    """Lower-case words one of which every match of `pattern` must contain (any of them); ()
    when there is no such literal of 3+ characters (the regex then always runs). Cached."""
    found = _NEEDLES.get(pattern)
    if found is None:
        words = []
        for branch in _top_level_branches(pattern) or [None]:
            runs = _literal_runs(branch) if branch is not None else None
            if not runs:
                words = None
                break
            words.append(max(runs, key=len).lower())
        found = tuple(sorted(set(words))) if words else _parsed_needles(pattern)
        _NEEDLES[pattern] = found
    return found


def _top_level_branches(pattern: str) -> list[str] | None:
    """`pattern` split at its top-level `|` (groups and classes skipped), or None."""
    branches, start, i, n = [], 0, 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            i += 2
        elif c in "([":
            j = _skip_group(pattern, i)
            if j is None:
                return None
            i = j
        elif c == "|":
            branches.append(pattern[start:i])
            start = i = i + 1
        else:
            i += 1
    return branches + [pattern[start:]]


def _skip_group(p: str, i: int) -> int | None:
    """The index after the group or class that opens at p[i] (escapes, classes in groups and
    nested groups skipped), or None when it does not close."""
    depth, n = 0, len(p)
    while i < n:
        c = p[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":
            j = i + 1
            if j < n and p[j] == "^":
                j += 1
            if j < n and p[j] == "]":
                j += 1
            while j < n and p[j] != "]":
                j += 2 if p[j] == "\\" else 1
            if j >= n:
                return None
            i = j + 1
            if depth == 0:
                return i
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


_QUANTIFIER = re.compile(r"\{(\d*)(?:,(\d*))?\}")
_PLAIN = re.compile(r"[^\\()\[\]|.^$*?+{}]+|\{")


def _literal_runs(pattern: str) -> list[str] | None:
    """The runs of 3+ literal characters every match of `pattern` contains, read from the
    pattern text at its top level (groups, classes and optional characters end a run); None
    when the text is beyond this simple reading (a top-level `|`, inline flags), and the
    parser decides. Cheap: `explain` reads it for every pattern of the catalog."""
    if "(?x" in pattern or "(?X" in pattern:
        return None
    runs: list[str] = []
    run, i, n = "", 0, len(pattern)

    def close() -> None:
        nonlocal run
        if len(run) >= 3:
            runs.append(run)
        run = ""

    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 >= n:
                return None
            d = pattern[i + 1]
            if d.isalnum() or d == "_":  # \d \w \s \b \n \x41 \1 ...: not read here
                close()
                i += 2 + {"x": 2, "u": 4, "U": 8}.get(d, 0)
                continue
            run += d
            i += 2
        elif c in "([":
            j = _skip_group(pattern, i)
            if j is None:
                return None
            close()
            i = j
            continue
        elif c == "|":
            return None
        elif c in ")]":
            return None
        elif c in ".^$":
            close()
            i += 1
            continue
        elif c in "*?+" or (c == "{" and _QUANTIFIER.match(pattern, i)):
            q = _QUANTIFIER.match(pattern, i) if c == "{" else None
            if c in "*?" or (q and q.group(1) in ("", "0")):
                run = run[:-1]  # the character before is optional
            close()
            i = q.end() if q else i + 1
            if i < n and pattern[i] in "?+":  # lazy or possessive
                i += 1
            continue
        else:
            plain = _PLAIN.match(pattern, i)  # a stretch of ordinary characters at once
            run += plain.group(0)
            i = plain.end()
    close()
    return runs


def _parsed_needles(pattern: str) -> tuple[str, ...]:
    """Lower-case words one of which every match of `pattern` must contain (any of them); ()
    when the pattern has no such literal of 3+ characters (the regex then always runs). Read
    from the parsed pattern: its longest mandatory run of literal characters, or one run per
    branch of a mandatory alternation."""
    try:
        try:
            from re import _constants as C, _parser as P  # Python 3.11+
        except ImportError:  # pragma: no cover - Python 3.10
            import sre_constants as C  # type: ignore[no-redef]
            import sre_parse as P  # type: ignore[no-redef]
        parsed = P.parse(pattern, re.IGNORECASE)
    except Exception:  # noqa: BLE001 - no prefilter is always correct
        return ()

    def best(items) -> tuple[str, ...]:
        options: list[tuple[str, ...]] = []
        run = ""
        for op, av in list(items) + [(None, None)]:
            if op is C.LITERAL:
                run += chr(av)
                continue
            if len(run) >= 3:
                options.append((run,))
            run = ""
            if op is C.SUBPATTERN:
                options.append(best(av[-1]))
            elif op in (C.MAX_REPEAT, C.MIN_REPEAT) and av[0] >= 1:
                options.append(best(av[2]))
            elif op is C.BRANCH:
                alts = [best(alt) for alt in av[1]]
                if all(alts):
                    options.append(tuple(w for alt in alts for w in alt))
        options = [o for o in options if o]
        # The most selective requirement: the one whose shortest word is longest.
        return max(options, key=lambda o: (min(map(len, o)), -len(o)), default=())

    words = best(parsed.data if hasattr(parsed, "data") else parsed)
    return tuple(sorted({w.lower() for w in words}))


@dataclass
class Match:
    recipe: str
    category: str
    score: float
    matched_text: str
    line: str
    fix: str = ""  # the recipe's one-line fix, or the fix for this message when facts say more
    facts: dict = field(default_factory=dict)  # values read from the message (cvdoctor.errorfacts)
    said: str = ""  # those facts in words: "the checkpoint's head has 1000 classes, your model 10"
    on_error: bool = False  # it matched the exception that ended the run, not an earlier line

    def to_dict(self) -> dict:
        return {"recipe": self.recipe, "category": self.category, "score": self.score,
                "matched_text": self.matched_text, "line": self.line, "fix": self.fix,
                "facts": self.facts, "said": self.said, "on_error": self.on_error}


# Terminal colour and cursor sequences (rich, loguru, tqdm under a pty): not part of the words.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")


def match_text(text: str, catalog: dict[str, Recipe] | None = None) -> list[Match]:
    """Rank recipes whose patterns occur in `text` (a message, a log, a whole traceback).

    Score: the number of the recipe's patterns that matched (at most 3), plus 3 when one of
    them sits in the exception that ended the run (the last exception's message and those
    chained before it, or the root-cause rank's under a launcher such as torchrun: what ended
    the run outranks whatever was logged before it), plus a tiny length tie-break that favours
    more specific patterns.
    Each match carries the facts its recipe's extractor reads from the message
    (`cvdoctor.errorfacts`) and the fix they lead to.
    """
    from cvdoctor import errorfacts

    catalog = load_catalog() if catalog is None else catalog
    window = focus(text)
    if "\x1b" in window:
        window = _ANSI.sub("", window)
    if "\r\n" in window:
        window = window.replace("\r\n", "\n")
    lower = window.lower()
    if len(lower) != len(window):  # a character whose lower case is longer: no prefilter
        lower = ""
    decisive = _decisive(window)
    matches: list[Match] = []
    for recipe in catalog.values():
        hits: list[re.Match] = []
        on_decisive: list[re.Match] = []
        for source in recipe.patterns:
            words = needles(source)
            if lower and words and not any(w in lower for w in words):
                continue
            try:
                pattern = compile_pattern(source)
            except re.error:  # a broken pattern in an installed recipe: skip it, not the rest
                continue
            m = pattern.search(window)
            if not m:
                continue
            hits.append(m)
            for d_start, d_end in decisive:
                # A hit that overlaps the decisive exception (a pattern may start in the
                # traceback above it and end on its message: SAM frames ... out of memory).
                d = m
                while d and d.end() <= d_start:
                    d = pattern.search(window, d.start() + 1)
                if d and d.start() < d_end:
                    on_decisive.append(d)
                    break
        if not hits:
            continue
        longest = max(hits, key=lambda m: len(m.group(0)))
        score = (min(len(hits), 3) + (3.0 if on_decisive else 0.0)
                 + min(len(longest.group(0)), 200) / 1000)
        # Show the hit on the error that ended the run when there is one; one line of it.
        shown = on_decisive[0] if on_decisive else longest
        start, end = _line_bounds(window, shown.start())
        line = window[start:max(end, min(shown.end(), start + 300))].strip()
        match = Match(recipe.id, recipe.category, round(score, 3), shown.group(0)[:1000],
                      " ".join(line.split())[:300], recipe.fix, on_error=bool(on_decisive))
        found = errorfacts.extract(recipe.id, window, shown.start())
        if found:
            match.facts, match.said = found.values, found.said
            match.fix = found.fix or recipe.fix
        matches.append(match)
    matches.sort(key=lambda m: (-m.score, m.recipe))
    return matches


def error_line(text: str) -> str | None:
    """The line of the exception that ended the run (the root-cause rank's under torchrun), or
    None when the text holds no exception line."""
    window = _ANSI.sub("", focus(text)).replace("\r\n", "\n")
    spans = _decisive(window, warnings=False)
    if not spans:
        return None
    start, _ = spans[0]
    end = window.find("\n", start)
    return " ".join(window[start:end if end != -1 else len(window)].split())[:300] or None


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
