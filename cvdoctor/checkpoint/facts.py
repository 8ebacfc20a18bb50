"""The facts of `cvdoctor ckpt FILE...`: each file inspected once (format, safety, integrity,
structure, known name, hash), loaded with ``weights_only=True`` in a probe, fitted to the model
given with ``--model``, and repaired into ``--fix OUT`` when asked.

`ckpt_context` checks the input before anything runs: a path that is not a readable regular file
(missing, a directory, a FIFO, a device, a symlink loop), a model that cannot be built, an OUT
that exists (without ``--force``) or is the input itself: one line, exit 2. A file that exists but
is broken (empty, truncated, an HTML page) is a finding, not a usage error.
"""
from __future__ import annotations

import importlib.util
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from cvdoctor.checkpoint import fit, records, safety
from cvdoctor.errors import TargetError, UsageError
from cvdoctor.factgraph import Context, fact
from cvdoctor.files import special_kind

FIX_TIMEOUT_S = 600.0
FIXABLE = ("fits", "prefix", "head")


@dataclass
class CkptOptions:
    files: list[str] = field(default_factory=list)
    model: Any = None  # a TARGET string or an nn.Module (Python API)
    num_classes: int | None = None
    deep: bool = False
    fix: str | None = None
    force: bool = False
    skip_head: bool = False
    timeout_s: float = 60.0
    model_specs: dict[str, Any] | None = None  # built by ckpt_context, before the run


class CkptContext(Context):
    fact_packages = ("cvdoctor.checkpoint.facts",)
    parallel = True  # the load probe (seconds: it imports torch) overlaps the static work

    def __init__(self, options: CkptOptions, recorded: dict[str, Any] | None = None,
                 progress: Callable[[str], None] | None = None):
        super().__init__(options, recorded)
        self.label = " ".join(options.files)
        self.progress = progress


def usable_file(path: str) -> None:
    """UsageError unless `path` is a regular file this process can open (never opens a FIFO)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        dangling = os.path.islink(path)
        raise UsageError(f"{path}: {'a link to a missing file' if dangling else 'no such file'}"
                         ) from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{path} is a directory; give checkpoint files "
                         "(`cvdoctor env --checkpoints DIR` searches a folder)")
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{path} is {special_kind(st.st_mode)}, not a checkpoint file")
    if not os.access(path, os.R_OK):
        raise UsageError(f"{path}: cannot read it (permission denied)")


def _fix_format(out: str) -> str:
    suffix = Path(out).suffix.lower()
    have = importlib.util.find_spec("safetensors") is not None
    if suffix == ".safetensors":
        if not have:
            raise UsageError(f"--fix {out}: writing .safetensors needs the safetensors package "
                             "(pip install safetensors), or give a .pt name")
        return "safetensors"
    if suffix in (".pt", ".pth", ".bin", ".ckpt"):
        return "torch"
    return "safetensors" if have else "torch"


def check_fix_target(files: list[str], out: str, force: bool) -> None:
    if len(files) != 1:
        raise UsageError("--fix repairs one checkpoint at a time; give a single FILE")
    src = os.path.realpath(files[0])
    if os.path.realpath(out) == src:
        raise UsageError(f"--fix {out} is the input itself; cvdoctor never overwrites it")
    if os.path.isdir(out):
        raise UsageError(f"--fix {out} is a directory; give the file name to write")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise UsageError(f"--fix {out}: the folder {parent} does not exist")
    if os.path.lexists(out) and not force:
        raise UsageError(f"--fix {out} exists; add --force to replace it")


def ckpt_context(target: Any, values: dict[str, Any], *,
                 recorded: dict[str, Any] | None = None,
                 progress: Callable[[str], None] | None = None) -> CkptContext:
    """The context of `cvdoctor ckpt FILE...` (declared in cvdoctor/commands/ckpt.py)."""
    recorded = recorded or {}
    files = [os.fspath(target)] if isinstance(target, (str, os.PathLike)) else \
        [os.fspath(t) for t in (target or ())]
    if not files:
        raise UsageError("cvdoctor ckpt needs at least one FILE")
    if "ckpt_files" not in recorded:
        for f in files:
            usable_file(f)
    opts = CkptOptions(files=files, model=values.get("model"),
                       num_classes=values.get("num_classes"), deep=bool(values.get("deep")),
                       fix=values.get("fix"), force=bool(values.get("force")),
                       skip_head=bool(values.get("skip_head")))
    if opts.fix is not None:
        opts.fix = os.fspath(opts.fix)
        if opts.model is None:
            raise UsageError("--fix needs --model TARGET: the repaired keys are those of the "
                             "model, and the result is verified against it")
        check_fix_target(files, opts.fix, opts.force)
        _fix_format(opts.fix)
    elif opts.skip_head or opts.force:
        raise UsageError(f"{'--skip-head' if opts.skip_head else '--force'} goes with --fix OUT")
    if opts.model is not None and "ckpt_model" not in recorded:
        from cvdoctor.checkpoint.models import model_specs

        if progress and isinstance(opts.model, str):
            progress(f"building {opts.model} ...")
        try:
            opts.model_specs = model_specs(opts.model, opts.num_classes)
        except TargetError as exc:
            raise TargetError(f"--model {opts.model}: {str(exc).removeprefix(f'{opts.model}: ')}"
                              ) from None
    return CkptContext(opts, recorded=recorded, progress=progress)


# --- facts ---------------------------------------------------------------------------------------

@fact("ckpt_files")
def gather_files(ctx) -> list[dict[str, Any]]:
    """Each FILE inspected from its bytes, with what its name promises and its hash prefix."""
    opts = ctx.options
    recs = records.file_records([(Path(f), "argument") for f in opts.files], deep=opts.deep)
    note = records.attach_hashes(recs, opts.deep, getattr(ctx, "progress", None))
    if note:
        for rec in recs:
            rec.setdefault("hash_cache_note", note)
    return recs


@fact("ckpt_loads", needs=["ckpt_files"])
def gather_loads(ctx) -> dict[str, Any]:
    """torch.load(weights_only=True) of every file whose pickles are plain data, in a probe."""
    opts = ctx.options
    recs = [dict(r) for r in ctx.fact("ckpt_files")]
    records.attach_loads(recs, opts.deep, opts.timeout_s)
    return {r["path"]: r["load"] for r in recs if "load" in r}


@fact("ckpt_model")
def gather_model(ctx) -> dict[str, Any] | None:
    """Keys, shapes and dtypes of the --model's state dict (built before the run)."""
    return ctx.options.model_specs


@fact("ckpt_fit", needs=["ckpt_files", "ckpt_model"])
def gather_fit(ctx) -> dict[str, Any]:
    """Per file: the best container and key alignment against the model, what would load."""
    model = ctx.fact("ckpt_model")
    if not model:
        return {}
    out = {}
    for rec in ctx.fact("ckpt_files"):
        st = rec.get("structure") or {}
        if not st.get("tensors"):
            continue
        d = fit.diagnose(st["tensors"], model["tensors"], containers=st.get("containers", []),
                         top=st.get("top"), param_keys=model.get("params"))
        result = d.to_dict()
        result["code"] = loading_code_for(rec, d, rec["path"])
        result["model"] = model.get("label")
        out[rec["path"]] = result
    return out


def loading_code_for(rec: dict[str, Any], d: fit.Diagnosis, path: str) -> list[str]:
    """The lines that load this file into the model: weights_only=True for plain data, with the
    exact library classes allowed when they are safe to allow, else weights_only=False with the
    warning that only a trusted file may be loaded so."""
    verdict = (rec.get("safety") or {}).get("verdict", safety.DATA)
    allowed = _safe_globals(rec) if verdict == safety.LIBRARY else None
    return fit.loading_code(
        d, path, fmt=rec.get("format") or "", weights_only=verdict == safety.DATA,
        safe_globals=[g.replace(":", ".") for g in allowed] if allowed else None)


def _safe_globals(rec: dict[str, Any]) -> list[str] | None:
    """The library classes a weights_only load of this file must allow, or None when the file
    names foreign or denied code, or library code no safe_globals line may allow (getattr, a
    library class it calls): then cvdoctor does not load it at all."""
    entries = (rec.get("safety") or {}).get("findings", [])
    if any(x["category"] in (safety.FOREIGN, safety.DENIED) for x in entries):
        return None
    allow, refuse = safety.allowable(entries)
    if refuse:
        return None
    return [f"{ref.rpartition('.')[0]}:{ref.rpartition('.')[2]}" for ref in allow]


@fact("ckpt_fix", needs=["ckpt_files", "ckpt_fit", "ckpt_model"])
def gather_fix(ctx) -> dict[str, Any] | None:
    """`--fix OUT`: write the repaired state dict and verify it against the model, in a probe."""
    opts = ctx.options
    if not opts.fix:
        return None
    rec = ctx.fact("ckpt_files")[0]
    diag = ctx.fact("ckpt_fit").get(rec["path"])
    model = ctx.fact("ckpt_model") or {}
    base = {"out": opts.fix, "input": rec["path"]}

    def refuse(kind: str, why: str) -> dict[str, Any]:
        return {**base, "ok": False, "refused": why, "refused_kind": kind}

    globals_ = _safe_globals(rec)
    if globals_ is None:
        refused = safety.allowable((rec.get("safety") or {}).get("findings", []))[1]
        why = (f"loading it would run library code with arguments from the file "
               f"({', '.join(sorted(set(refused))[:3])}), which a weights_only load must not "
               "allow" if refused else "the file names code outside the libraries cvdoctor "
               "knows")
        return refuse("unsafe", f"{why}; it is not loaded (see ckpt.safety)")
    problem = (rec.get("pickle") or {}).get("problem") or (rec.get("zip") or {}).get("problem")
    if problem:
        return refuse("damaged", f"the file is damaged: {problem}")
    if diag is None:
        return refuse("empty", "the file holds no tensors cvdoctor can read")
    if diag["verdict"] not in FIXABLE:
        return refuse(diag["verdict"], f"nothing to repair: {diag['summary']}")
    if diag["verdict"] == "head" and not opts.skip_head:
        return refuse("head", f"the head differs ({diag['summary']}); add --skip-head to write "
                      "it without the head (the model keeps its own)")
    head = (diag.get("head") or {}).get("keys", []) if opts.skip_head else []
    req = {"path": rec["path"], "out": opts.fix, "format": _fix_format(opts.fix),
           "input_format": "safetensors" if rec.get("format") == "safetensors" else "torch",
           "container": diag["container"], "container_kind": diag["container_kind"],
           "strip": diag["strip"], "add": diag["add"], "drop": head,
           "keep": list(model.get("tensors", {})),
           "model_shapes": {k: v["shape"] for k, v in model.get("tensors", {}).items()},
           "safe_globals": globals_, "num_classes": opts.num_classes,
           "model_target": model.get("target") if model.get("kind") == "zoo" else None}
    from cvdoctor.probes import describe_failure, run_probe

    res = run_probe("ckpt_fix_probe", [], timeout_s=FIX_TIMEOUT_S + rec.get("size", 0) / 50e6,
                    stdin=json.dumps(req))
    info = res.pop("_probe")
    if not info.get("ok") and "ok" not in res:
        return {**base, "ok": False, "error": describe_failure(info, "writing the repaired file")}
    return {**base, **res, "skip_head": bool(head), "dropped": head, "strip": diag["strip"],
            "add": diag["add"], "container": diag["container"]}
