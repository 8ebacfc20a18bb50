"""Which declared findings the test suite must make cvdoctor emit, and the few it cannot.

Every check must pass at least once (a healthy fixture) and emit every recipe it declares with a
warn or fail (a fixture that triggers it). EXEMPT lists the exceptions, each with the reason; it
may only shrink.
"""
from __future__ import annotations

import json
from pathlib import Path

# (check, recipe or "pass") -> why the suite cannot make it here
EXEMPT: dict[tuple[str, str], str] = {
    ("model.yolo_amp", "pass"): "compares the fp16-autocast and float32 loss on a CUDA device; "
                                "this machine has none (the warn is made from a recorded GPU)",
}


def full_run(config) -> bool:
    """Only a run of the whole suite can judge coverage: no -k/-m/--deselect, no file or node
    arguments other than the configured test paths, no --lf."""
    opt = config.option
    if getattr(opt, "keyword", "") or getattr(opt, "markexpr", "") or \
            getattr(opt, "deselect", None) or getattr(opt, "lf", False) or \
            getattr(opt, "last_failed", False):
        return False
    args = [a for a in config.args]
    root = Path(config.rootpath)
    testpaths = {str((root / p).resolve()) for p in config.getini("testpaths")}
    return all(str((root / a).resolve()) in testpaths or Path(a).resolve() == root for a in args)


def emitted(folder: str) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for path in Path(folder).glob("*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec["status"] == "pass":
                out.add((rec["check"], "pass"))
            elif rec["status"] in ("warn", "fail") and rec.get("recipe"):
                out.add((rec["check"], rec["recipe"]))
    return out


def required() -> set[tuple[str, str]]:
    from cvdoctor.registry import all_checks

    need = set()
    for spec in all_checks():
        need.add((spec.id, "pass"))
        need.update((spec.id, r) for r in spec.recipes)
    return need


def missing(folder: str) -> list[str]:
    got = emitted(folder)
    return [f"{check}: {what}" for check, what in sorted(required() - got - set(EXEMPT))]
