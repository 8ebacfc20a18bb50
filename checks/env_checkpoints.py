"""env.checkpoints: are the checkpoints lying around what their names promise, whole, and safe?

Reads the ``checkpoints`` facts (cvdoctor/facts/checkpoints.py) and gives every file one verdict.
One finding sums them up: the worst file in the message, every file in the evidence.
"""
from __future__ import annotations

import re
from typing import Any, Optional

from cvdoctor.checkpoint import verdicts
from cvdoctor.finding import FAIL, PASS, WARN, Finding, failed, passed, warned
from cvdoctor.registry import register
from cvdoctor.text import file_size

TITLE = "Checkpoints"
TRUNCATED = "checkpoint-truncated"
NOT_A_CHECKPOINT = "checkpoint-not-a-checkpoint"
HASH_MISMATCH = "checkpoint-hash-mismatch"
UNSAFE = "checkpoint-unsafe-pickle"
LOAD_FAILED = "checkpoint-load-failed"
# Which problem to name first when several files have one (same status).
_RANK = {UNSAFE: 0, TRUNCATED: 1, NOT_A_CHECKPOINT: 2, HASH_MISMATCH: 3, LOAD_FAILED: 4, None: 5}
_STATUS_RANK = {FAIL: 0, WARN: 1, PASS: 2}

_TRUNCATION_TEXT = ("failed finding central directory", "unexpected eof", "ran out of input",
                    "eoferror", "file might be corrupted", "truncated")


def _redownload(rec: dict[str, Any]) -> str:
    return verdicts.redownload(rec)


Verdict = tuple[str, Optional[str], str, str]  # (status, recipe, what is wrong or right, fix)


def _size_verdict(rec: dict[str, Any]) -> Verdict | None:
    known = rec.get("known") or {}
    size = rec.get("size")
    if known.get("expected_size") and size != known["expected_size"]:
        label = f"SAM {known['variant']}" if known.get("family") == "sam" else rec["name"]
        return (FAIL, HASH_MISMATCH,
                f"is {size:,} bytes, the official {label} file is {known['expected_size']:,}",
                _redownload(rec))
    if known.get("size_range") and not (known["size_range"][0] <= size <= known["size_range"][1]):
        lo, hi = known["size_range"]
        return (WARN, HASH_MISMATCH,
                f"is {file_size(size)}, outside the approximate {file_size(lo)}-{file_size(hi)} of the official "
                f"YOLOv8{known['variant']} release (fine if you trained and saved it yourself)",
                _redownload(rec))
    return None


# --- the rules, in order: the first that speaks decides the file's verdict ----------------------

def _denied(rec):
    pick = rec.get("pickle") or {}
    if pick.get("denied"):
        refs = ", ".join(pick["denied"][:3])
        return (FAIL, UNSAFE, f"has a pickle that calls {refs}: code that would run on load "
                "(never loaded here)",
                f"delete {rec['path']}; never torch.load it with weights_only=False")


def _unreachable(rec):
    kind = rec.get("kind")
    if kind == "missing":
        return FAIL, NOT_A_CHECKPOINT, f"is a dangling link ({rec.get('error', '')})", \
            _redownload(rec)
    if kind in ("unreadable", "special", "directory"):
        return WARN, LOAD_FAILED, f"cannot be read: {rec.get('error', '')}", \
            f"fix the permissions of {rec['path']}"


def _not_a_checkpoint(rec):
    kind = rec.get("kind")
    name = rec["name"]
    redo = _redownload(rec)
    if kind == "empty":
        return FAIL, NOT_A_CHECKPOINT, "is empty (0 bytes): the download never wrote data", redo
    if kind == "lfs-pointer":
        real = (rec.get("lfs") or {}).get("size")
        size_note = f" for a {file_size(real)} file" if real else ""
        return (FAIL, NOT_A_CHECKPOINT,
                f"is a {rec['size']}-byte Git LFS pointer{size_note}, not the weights",
                f"git lfs install && git lfs pull --include='{name}' (in the repository it came "
                "from)")
    if kind in ("html", "xml", "text"):
        what = {"html": "an HTML page", "xml": "an XML error document", "text": "a text file"}[kind]
        return (FAIL, NOT_A_CHECKPOINT,
                f"is {what} ({rec['size']:,} bytes), saved where the weights should be: "
                f"a failed or redirected download", redo)
    if kind == "unknown":
        return (FAIL, NOT_A_CHECKPOINT,
                f"starts with bytes {rec.get('first_bytes', '')[:16]}: not zip, pickle or "
                "safetensors, so torch.load cannot read it", redo)
    if kind in verdicts.NOT_CHECKPOINT_KINDS:
        return (FAIL, NOT_A_CHECKPOINT, f"{verdicts.NOT_CHECKPOINT_KINDS[kind]} "
                f"({rec['size']:,} bytes)", redo)
    z = rec.get("zip") or {}
    if kind == "zip" and z.get("complete") and z.get("format") in ("plain-zip", "npz"):
        where = (", files not in a subdirectory: " + ", ".join(z["not_in_subdirectory"][:3])
                 if z.get("not_in_subdirectory") else "")
        return (FAIL, NOT_A_CHECKPOINT,
                f"is a zip archive without a torch data.pkl{where} (re-zipped or not a "
                "torch.save file)", redo)
    st = rec.get("safetensors") or {}
    if kind == "safetensors" and st.get("malformed"):
        return FAIL, NOT_A_CHECKPOINT, f"has a broken safetensors header: {st['problem']}", redo


def _structure(rec):
    kind = rec.get("kind")
    structural = None
    z = rec.get("zip") or {}
    if kind == "zip" and not z.get("complete"):
        structural = z.get("problem", "incomplete zip")
    elif kind == "safetensors" and not (rec.get("safetensors") or {}).get("complete"):
        structural = (rec.get("safetensors") or {}).get("problem", "incomplete safetensors file")
    if structural is None:
        structural = (rec.get("pickle") or {}).get("problem") or rec.get("npy_problem")
    if structural is not None:
        expected = (rec.get("known") or {}).get("expected_size")
        of = f" ({rec['size']:,} of {expected:,} bytes)" if expected else f" ({file_size(rec['size'])})"
        return FAIL, TRUNCATED, f"is truncated{of}: {structural}", _redownload(rec)


def _size_fail(rec):
    size = _size_verdict(rec)
    if size and size[0] == FAIL:
        return size


def _hash_mismatch(rec):
    h = rec.get("hash") or {}
    prefix = (rec.get("known") or {}).get("hash_prefix")
    if h.get("hexdigest") and prefix and not h["hexdigest"].startswith(prefix):
        return (FAIL, HASH_MISMATCH,
                f"has {h['algo'].upper().replace('SHA256', 'SHA-256')} "
                f"{h['hexdigest'][:len(prefix)]}..., the name promises {prefix}...: different or "
                "corrupted content", _redownload(rec))


def _foreign(rec):
    pick = rec.get("pickle") or {}
    if pick.get("foreign"):
        refs = ", ".join(pick["foreign"][:3])
        return (WARN, UNSAFE,
                f"pickles objects whose code lives outside the libraries cvdoctor knows ({refs}); "
                "not loaded. Fine if you saved it yourself, a risk if it came from elsewhere",
                "load it only if you trust its source; otherwise ask for a state_dict or "
                "safetensors copy")


def _size_warn(rec):
    return _size_verdict(rec)


def _library(rec):
    pick = rec.get("pickle") or {}
    if not pick.get("library"):
        return None
    if any(g.startswith("ultralytics.") for g in pick["library"]):
        return (PASS, None, "is an ultralytics model pickle (YOLO() loads it with "
                "weights_only=False by design; not loaded here)", "")
    refs = ", ".join(pick["library"][:3])
    return (WARN, LOAD_FAILED,
            f"pickles whole Python objects ({refs}); torch.load(weights_only=True), the default "
            "since torch 2.6, refuses them (not loaded here)",
            "save and load a state_dict instead; if you trust the file, "
            "torch.serialization.add_safe_globals([...]) those classes")


def _torch_refuses(rec):
    refusal = (rec.get("zip") or {}).get("torch_refuses")
    if refusal:
        return (FAIL, LOAD_FAILED, f"cannot be read by torch.load: {refusal}", _redownload(rec))


def _cuda_saved(rec):
    load = rec.get("load") or {}
    cuda = [d for d in rec.get("devices") or [] if d.startswith("cuda")]
    if load.get("status") == "ok" and cuda and load.get("cuda_available") is False:
        return (WARN, LOAD_FAILED,
                f"was saved from {', '.join(cuda)}; this machine has no CUDA, so a plain "
                "torch.load raises 'Attempting to deserialize object on a CUDA device'",
                f"torch.load('{rec['path']}', map_location='cpu')")


def _load_result(rec):
    load = rec.get("load") or {}
    status = load.get("status")
    if status == "error":
        text = f"{load.get('error_type', '')}: {load.get('error', '')}"
        low = text.lower()
        first = next((ln.strip() for ln in load.get("error", "").splitlines() if ln.strip()), "")
        if "unsupported global" in low:
            m = re.search(r"unsupported global: global ([\w.]+)", text, re.I)
            glob = m.group(1).rstrip(".") if m else "the listed class"
            return (WARN, LOAD_FAILED,
                    f"is refused by torch.load(weights_only=True): unsupported global {glob}",
                    f"if you trust it: torch.serialization.add_safe_globals([{glob}]) before "
                    "torch.load, or re-save the tensors as a plain state_dict")
        if any(t in low for t in _TRUNCATION_TEXT):
            return (FAIL, TRUNCATED, f"is corrupted or truncated: torch.load raises "
                    f"{first[:160]}", _redownload(rec))
        return (FAIL, LOAD_FAILED,
                f"cannot be loaded: torch.load(weights_only=True) raises {load.get('error_type')}: "
                f"{first[:160]}",
                "check the torch version it was saved with; upgrade torch or re-save it")
    if status == "crashed":
        why = load.get("signal") or load.get("reason") or f"exit {load.get('returncode')}"
        return (FAIL, LOAD_FAILED, f"killed the probe process that loaded it ({why})",
                f"treat {rec['path']} as corrupted: {_redownload(rec)}")
    if status == "timeout":
        return (WARN, LOAD_FAILED,
                f"did not load within {load.get('timeout_s')} s (slow disk or huge file?)",
                "retry with a larger timeout, or load it by hand to see where it stalls")


# Order matters: a payload outranks everything, a broken file outranks what its name promises,
# what the name promises outranks how the classes load, and only an intact, plain file is
# judged by the load probe.
RULES = (_denied, _unreachable, _not_a_checkpoint, _structure, _size_fail, _hash_mismatch,
         _foreign, _size_warn, _library, _torch_refuses, _cuda_saved, _load_result)


def assess(rec: dict[str, Any]) -> Verdict:
    """(status, recipe, what is wrong or right, fix) for one file record: the first rule of
    RULES that speaks, else a pass."""
    for rule in RULES:
        verdict = rule(rec)
        if verdict is not None:
            return verdict
    return PASS, None, _ok_note(rec), ""


def _ok_note(rec: dict[str, Any]) -> str:
    load = rec.get("load") or {}
    parts = []
    if load.get("status") == "ok":
        s = load.get("summary") or {}
        parts.append(f"loads with weights_only=True ({s.get('tensors', 0)} tensors)")
    elif load.get("status") == "skipped":
        parts.append(f"not loaded: {load.get('reason')}")
    elif rec.get("kind") == "zip" and (rec.get("zip") or {}).get("format") == "torchscript":
        parts.append("a TorchScript archive (torch.jit.load), not loaded")
    h = rec.get("hash") or {}
    if h.get("hexdigest"):
        parts.append(f"{h['algo']} prefix matches")
    elif rec.get("hash_skipped"):
        parts.append(f"hash not verified ({rec['hash_skipped']})")
    return "; ".join(parts) or "structure intact"


def _row(rec: dict[str, Any], verdict: tuple[str, str | None, str, str]) -> dict[str, Any]:
    status, recipe, note, _ = verdict
    return {"path": rec["path"], "place": rec.get("place"), "kind": rec.get("kind"),
            "format": rec.get("format") or (rec.get("zip") or {}).get("format"),
            "size": rec.get("size"), "status": status, "recipe": recipe, "verdict": note,
            "globals": (rec.get("pickle") or {}).get("globals", [])[:20],
            "load": (rec.get("load") or {}).get("status")}


@register("env.checkpoints", order=70, title=TITLE, needs=["checkpoints"],
          recipes=[TRUNCATED, NOT_A_CHECKPOINT, HASH_MISMATCH, UNSAFE, LOAD_FAILED])
def check(ctx) -> Finding:
    facts = ctx.fact("checkpoints")
    places = [p["path"] for p in facts.get("places", [])]
    files = facts.get("files", [])
    extra = {"places": facts.get("places", []), "deep": facts.get("deep", False)}
    if facts.get("ultralytics_settings"):
        extra["ultralytics_settings"] = facts["ultralytics_settings"]
    if facts.get("capped"):
        extra["note"] = f"stopped after {facts.get('max_files')} files"
    # A .bin that is neither zip, pickle nor safetensors is some other program's data, not a
    # broken checkpoint; list it, do not judge it.
    ignored = [f["path"] for f in files
               if f.get("kind") == "unknown" and f["name"].lower().endswith(".bin")]
    files = [f for f in files if f["path"] not in ignored]
    if ignored:
        extra["ignored"] = ignored
    if not files:
        return passed(TITLE, f"no checkpoints found in {', '.join(places)}", files=[], **extra)

    judged = [(rec, assess(rec)) for rec in files]
    rows = [_row(rec, v) for rec, v in judged]
    judged.sort(key=lambda rv: (_STATUS_RANK[rv[1][0]], _RANK[rv[1][1]], rv[0]["name"]))
    worst_rec, (status, recipe, note, fix) = judged[0]
    n = len(files)
    n_fail = sum(1 for _, v in judged if v[0] == FAIL)
    n_warn = sum(1 for _, v in judged if v[0] == WARN)
    n_places = len({rec.get("place") for rec in files})
    if status == PASS:
        loaded = sum(1 for r in files if (r.get("load") or {}).get("status") == "ok")
        hashed = sum(1 for r in files if (r.get("hash") or {}).get("hexdigest"))
        msg = (f"{n} checkpoint{'s' if n != 1 else ''} look whole ({loaded} loaded with "
               f"weights_only=True, {hashed} hash-verified) in {n_places} place"
               f"{'s' if n_places != 1 else ''}")
        if n == 1:
            msg = f"{worst_rec['name']}: {note}"
        return passed(TITLE, msg, files=rows, **extra)
    others = []
    if n_fail - (status == FAIL):
        others.append(f"{n_fail - (status == FAIL)} more failing")
    if n_warn - (status == WARN):
        others.append(f"{n_warn - (status == WARN)} more with warnings")
    n_ok = n - n_fail - n_warn
    if n_ok:
        others.append(f"{n_ok} ok")
    tail = f" ({'; '.join(others)}, of {n} checkpoints)" if others else ""
    message = f"{worst_rec['name']} {note}{tail}"
    make = failed if status == FAIL else warned
    return make(TITLE, message, fix, recipe, files=rows, **extra)
