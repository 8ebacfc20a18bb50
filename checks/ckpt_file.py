"""ckpt.format, ckpt.safety, ckpt.integrity, ckpt.known, ckpt.loadable: one checkpoint file at a
time, from the facts of `cvdoctor/checkpoint/facts.py` (nothing here reads or loads a file)."""
from __future__ import annotations

from cvdoctor.checkpoint import verdicts as v
from cvdoctor.finding import Problem, report_problems, skipped
from cvdoctor.registry import register

FILES = "ckpt_files"


def _each(ctx, title, judge):
    """One finding (or a few, one per cause) per file: judge(rec) -> (problems, pass sentence)
    or a skip reason (str)."""
    out = []
    for rec in ctx.fact(FILES):
        result = judge(rec)
        if isinstance(result, str):
            out.append(skipped(title, result, path=rec["path"]))
            continue
        problems, ok = result
        out.extend(report_problems(title, problems, ok, path=rec["path"]))
    return out


FORMAT_TITLE = "Format"


@register("ckpt.format", order=10, title=FORMAT_TITLE, recipes=[v.NOT_A_CHECKPOINT],
          needs=[FILES])
def check_format(ctx):
    """Identifies each file from its bytes, not its name: torch zip archive (and the data.pkl
    member torch reads), legacy torch.save, TorchScript, safetensors, .npy/.npz, plain pickle.
    Fails for what no loader can read as weights: an empty file, an HTML or XML error page, a
    Git-LFS pointer, a text file, an image, a re-zipped archive without data.pkl."""
    def judge(rec):
        p = v.format_problem(rec)
        return ([p] if p else []), v.format_sentence(rec)

    return _each(ctx, FORMAT_TITLE, judge)


SAFETY_TITLE = "Safe to load"


@register("ckpt.safety", order=20, title=SAFETY_TITLE,
          recipes=[v.UNSAFE, v.FOREIGN_CODE, v.LIBRARY_CODE, v.ZIP_DISAGREE], needs=[FILES])
def check_safety(ctx):
    """Replays every pickle torch or numpy could load from the file (all data.pkl candidates,
    nested torch.save bytes, the legacy format's pickles, .npy object arrays) on a symbolic stack,
    without running anything, and judges each global by an allowlist. Fails when a pickle would
    call anything that can run code or reach the OS (naming it and where); warns for classes of
    well-known libraries (loading runs that library's code) and for code outside them, and when
    torch and Python's zipfile would read the archive differently."""
    def judge(rec):
        if v.format_problem(rec) and not rec.get("safety"):
            return "not a checkpoint (ckpt.format); nothing to scan"
        if rec.get("kind") == "zip" and not rec.get("safety") and \
                not (rec.get("zip") or {}).get("eocd"):
            return "the archive has no directory to read (ckpt.integrity); nothing was scanned"
        return v.safety_problems(rec), v.safety_sentence(rec)

    return _each(ctx, SAFETY_TITLE, judge)


INTEGRITY_TITLE = "Integrity"


@register("ckpt.integrity", order=30, title=INTEGRITY_TITLE, recipes=[v.TRUNCATED],
          needs=[FILES])
def check_integrity(ctx):
    """Checks structure against size without reading tensor data: the zip end record and
    directory, every storage member's size against what data.pkl expects, pickles that end
    (STOP), the legacy format's storage bytes, safetensors headers (length, offsets inside the
    file, no overlaps or holes, dtype x shape = bytes, nothing after the last tensor), .npy
    sizes. Under --deep, every zip member's CRC (torch never checks them). Fails on a cut or
    damaged file; warns on bytes appended after a safetensors file's data."""
    deep = bool(ctx.option("deep", False))

    def judge(rec):
        if v.format_problem(rec):
            return "not a checkpoint (ckpt.format)"
        return v.integrity_problems(rec), v.integrity_sentence(rec, deep)

    return _each(ctx, INTEGRITY_TITLE, judge)


KNOWN_TITLE = "Known file"


@register("ckpt.known", order=40, title=KNOWN_TITLE, recipes=[v.HASH_MISMATCH], needs=[FILES])
def check_known(ctx):
    """For published names (SAM sam_vit_*_<md5 prefix>.pth, YOLOv8 yolov8n.pt..., torch.hub
    <name>-<sha256 prefix>.pth): the exact size, the hash prefix (full hash under --deep, cached
    by path, size and mtime), and for SAM the encoder the shapes say. Reports an ultralytics
    checkpoint's task, class count and names, read without running it. Fails when size, hash or
    shapes contradict the name; warns when a YOLOv8 file is far from the release size."""
    def judge(rec):
        if v.is_damaged(rec):
            return "the file is damaged (ckpt.format, ckpt.integrity); its name is not checked"
        problems, ok = v.known_problems(rec)
        if ok is None and not problems:
            return "not a published SAM, YOLOv8 or torch.hub file name, nor a YOLO or SAM layout"
        return problems, f"{v.name(rec)}: {ok}"

    return _each(ctx, KNOWN_TITLE, judge)


LOAD_TITLE = "Loads with weights_only"


@register("ckpt.loadable", order=50, title=LOAD_TITLE,
          recipes=[v.LOAD_FAILED, v.CUDA_SAVED],
          needs=[FILES, "ckpt_loads"])
def check_loadable(ctx):
    """Loads each file whose pickles hold only plain data with torch.load(weights_only=True,
    map_location='cpu') in a subprocess with a timeout (safetensors with safetensors). Warns when
    weights_only refuses the file (quoting the global, with the fix that keeps weights_only) and
    when it was saved from a CUDA device on a machine without CUDA; fails when loading raises or
    kills the process."""
    loads = ctx.fact("ckpt_loads")

    def judge(rec):
        if v.is_damaged(rec):
            return "the file is damaged (ckpt.format, ckpt.integrity); not loaded"
        if (rec.get("safety") or {}).get("verdict") == "denied":
            return "not loaded: it fails the safety scan (ckpt.safety)"
        fmt = rec.get("format")
        if fmt == "torchscript":
            return "a TorchScript archive: torch.jit.load reads it, torch.load(weights_only=True) does not"
        if fmt in ("npy", "npz"):
            return "a numpy file: numpy.load reads it (torch.load does not)"
        if fmt == "plain-pickle":
            problems = [Problem("warn", v.LOAD_FAILED,
                                f"{v.name(rec)} is a plain pickle: torch.load raises 'Invalid magic "
                                "number; corrupt file?' on it",
                                "Load it with pickle.load only if you trust it, and re-save the "
                                "tensors with torch.save or safetensors")]
            return problems, ""
        problems, ok = v.load_problems(rec, loads.get(rec["path"]))
        if not problems and not ok:
            return "not loaded"
        return problems, ok

    return _each(ctx, LOAD_TITLE, judge)
