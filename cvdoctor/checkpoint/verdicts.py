"""What a checkpoint record means, in words: one function per question the checks ask (format,
safety, integrity, known name, loading). Shared by the `ckpt.*` checks and `env.checkpoints`
(checks may not import each other). Each returns `Problem`s (plus the sentence for a pass), so a
check is a few lines."""
from __future__ import annotations

import pickletools
import re
from typing import Any

from cvdoctor.checkpoint import fit, known, safety
from cvdoctor.finding import FAIL, WARN, Problem
from cvdoctor.text import file_size, plural, quoted_names

TRUNCATED = "checkpoint-truncated"
NOT_A_CHECKPOINT = "checkpoint-not-a-checkpoint"
HASH_MISMATCH = "checkpoint-hash-mismatch"
UNSAFE = "checkpoint-unsafe-pickle"
LIBRARY_CODE = "checkpoint-pickle-library-code"
FOREIGN_CODE = "checkpoint-pickle-foreign-code"
ZIP_DISAGREE = "checkpoint-zip-readers-disagree"
LOAD_FAILED = "checkpoint-load-failed"
WEIGHTS_ONLY = "checkpoint-load-failed"  # the refusal is what that recipe explains
CUDA_SAVED = "checkpoint-cuda-saved"
PREFIX = "checkpoint-key-prefix"
HEAD = "head-size-mismatch"
VARIANT = "checkpoint-wrong-variant"
PARTIAL = "checkpoint-partial-load"
MISMATCH = "state-dict-mismatch"
FIT_RECIPES = (PREFIX, HEAD, VARIANT, PARTIAL, MISMATCH)

FORMAT_WORDS = {
    "torch-zip": "a torch.save zip archive", "torch-legacy": "a legacy torch.save file "
    "(_use_new_zipfile_serialization=False)", "torchscript": "a TorchScript archive (torch.jit.save)",
    "safetensors": "a safetensors file", "npy": "a numpy .npy array", "npz": "a numpy .npz archive",
    "plain-pickle": "a plain pickle (pickle.dump, not torch.save)", "torch-tar": "torch's oldest "
    "tar format", "zip": "a zip archive whose directory cannot be read", "plain-zip": "a zip archive without a torch data.pkl", "tar": "a tar archive",
}
NOT_CHECKPOINT_KINDS = {
    "empty": "is empty (0 bytes): the download or copy never wrote data",
    "html": "is an HTML page saved where the weights should be: a failed or redirected download",
    "xml": "is an XML error document (S3/GCS 'AccessDenied'?) saved where the weights should be",
    "text": "is a text file, not weights", "image": "is an image, not weights",
    "gguf": "is a GGUF file (llama.cpp), not a PyTorch checkpoint",
    "hdf5": "is an HDF5 file (Keras .h5), not a PyTorch checkpoint",
    "executable": "is an executable program, not weights",
    "gzip": "is gzip-compressed: decompress it first", "7z": "is a 7z archive: extract it first",
    "bzip2": "is bzip2-compressed: decompress it first", "xz": "is xz-compressed: decompress it first",
    "pdf": "is a PDF document, not weights",
}
_TRUNCATION_TEXT = ("failed finding central directory", "unexpected eof", "ran out of input",
                    "eoferror", "file might be corrupted", "truncated")


def name(rec: dict[str, Any]) -> str:
    return rec.get("name") or rec["path"]


def redownload(rec: dict[str, Any]) -> str:
    """The one-line way to get a good copy back, as specific as the file name allows."""
    k = rec.get("known") or {}
    path = rec["path"]
    if k.get("family") == "sam":
        return f"re-download it: wget -O {path} {k['url']}"
    if k.get("family") == "yolov8":
        return f"delete {path}; YOLO('{rec['name']}') downloads it again"
    if k.get("family") == "torch_hub" and k.get("in_hub_cache"):
        return f"delete {path}; torch.hub downloads it again (with check_hash) on next use"
    return f"delete {path} and download or re-save it from its source"


def tensor_count(rec: dict[str, Any]) -> int:
    return len(((rec.get("structure") or {}).get("tensors")) or {})


# --- format --------------------------------------------------------------------------------------

def format_problem(rec: dict[str, Any]) -> Problem | None:
    kind = rec.get("kind")
    if kind in NOT_CHECKPOINT_KINDS:
        size = "" if kind == "empty" else f" ({file_size(rec.get('size'))})"
        return Problem(FAIL, NOT_A_CHECKPOINT, f"{name(rec)} {NOT_CHECKPOINT_KINDS[kind]}{size}",
                       redownload(rec), {"kind": kind})
    if kind == "lfs-pointer":
        real = (rec.get("lfs") or {}).get("size")
        of = f" for a {file_size(real)} file" if real else ""
        return Problem(FAIL, NOT_A_CHECKPOINT,
                       f"{name(rec)} is a {rec['size']}-byte Git LFS pointer{of}, not the weights",
                       f"git lfs install && git lfs pull --include='{rec['name']}' (in the "
                       "repository it came from)", {"kind": kind, "lfs": rec.get("lfs")})
    if kind == "unknown":
        return Problem(FAIL, NOT_A_CHECKPOINT,
                       f"{name(rec)} starts with bytes {rec.get('first_bytes', '')[:16]}: not "
                       "zip, pickle, safetensors or numpy, so no loader can read it",
                       redownload(rec), {"kind": kind})
    fmt = rec.get("format")
    if fmt in ("plain-zip", "tar"):
        z = rec.get("zip") or {}
        where = (", files not in a subdirectory: " + ", ".join(z["not_in_subdirectory"][:3])
                 if z.get("not_in_subdirectory") else "")
        return Problem(FAIL, NOT_A_CHECKPOINT,
                       f"{name(rec)} is {FORMAT_WORDS[fmt]}{where} (re-zipped or not a torch.save "
                       "file)", redownload(rec), {"kind": kind, "format": fmt})
    return None


def format_sentence(rec: dict[str, Any]) -> str:
    fmt = rec.get("format") or rec.get("kind")
    words = FORMAT_WORDS.get(fmt, fmt)
    extra = []
    z = rec.get("zip") or {}
    if fmt == "torch-zip" and z.get("data_pkl"):
        extra.append(f"torch reads {z['data_pkl']}")
    n = tensor_count(rec)
    if n:
        extra.append(plural(n, "tensor"))
    devices = (rec.get("structure") or {}).get("devices") or rec.get("devices")
    if devices and devices != ["cpu"]:
        extra.append("saved from " + ", ".join(devices))
    return f"{name(rec)}: {words}" + (f" ({'; '.join(extra)})" if extra else "")


# --- safety --------------------------------------------------------------------------------------

def _names(entries: list[dict[str, Any]], limit: int = 3) -> str:
    shown = [x["global"] or f"<{x['reason']}>" for x in entries]
    return ", ".join(shown[:limit]) + (f" and {len(shown) - limit} more" if len(shown) > limit else "")


def safety_problems(rec: dict[str, Any]) -> list[Problem]:
    s = rec.get("safety") or {}
    entries = s.get("findings", [])
    denied = [x for x in entries if x["category"] == safety.DENIED]
    foreign = [x for x in entries if x["category"] == safety.FOREIGN]
    library = [x for x in entries if x["category"] == safety.LIBRARY]
    out = []
    if denied:
        named = [x for x in denied if x["global"]]
        if named:
            what = (f"has a pickle that would run {_names(named)} when loaded "
                    f"({named[0]['where']}; {named[0]['reason']})")
        else:  # only events: a computed value called, a global modified
            more = f"; {len(denied) - 1} more like it" if len(denied) > 1 else ""
            what = (f"would run code when loaded: {denied[0]['reason']} "
                    f"({denied[0]['where']}{more})")
        out.append(Problem(
            FAIL, UNSAFE,
            f"{name(rec)} {what}; never loaded here",
            f"Do not load {rec['path']}: delete it and get the weights from a source you trust, "
            "preferably as safetensors", {"denied": denied[:20]}))
    if foreign:
        out.append(Problem(
            WARN, FOREIGN_CODE,
            f"{name(rec)} pickles objects whose code lives outside the libraries cvdoctor knows "
            f"({_names(foreign)}): loading imports and runs that code. Fine if you saved it "
            "yourself, a risk if it came from elsewhere",
            "Load it only if you trust its source; otherwise ask for a state_dict or safetensors "
            "copy", {"foreign": foreign[:20]}))
    if library and not denied:
        libs = sorted({(x["global"] or "").split(".")[0] for x in library})
        out.append(Problem(
            WARN, LIBRARY_CODE,
            f"{name(rec)} pickles {', '.join(libs)} objects ({_names(library)}): loading runs "
            "this library's code; fine if you trust the source",
            "Prefer a state_dict or safetensors copy; to load this one, allow exactly these "
            "classes: torch.serialization.add_safe_globals([...]) and weights_only=True",
            {"library": library[:20]}))
    z = rec.get("zip") or {}
    anomalies = list(z.get("anomalies") or [])
    if z.get("hidden_pickles"):
        anomalies.append(f"pickles torch does not read: {', '.join(z['hidden_pickles'][:3])}")
    if anomalies:
        out.append(Problem(
            WARN, ZIP_DISAGREE,
            f"{name(rec)} is an archive that torch and Python's zipfile read differently: "
            f"{anomalies[0]}" + (f" (and {len(anomalies) - 1} more)" if len(anomalies) > 1 else ""),
            "Re-save it with torch.save from a trusted load, or get a clean copy; every member was "
            "scanned", {"anomalies": anomalies}))
    return out


def safety_sentence(rec: dict[str, Any]) -> str:
    s = rec.get("safety")
    if not s:
        fmt = rec.get("format") or rec.get("kind")
        if fmt == "torchscript":
            return (f"{name(rec)} is a TorchScript archive: torch.jit.load runs its TorchScript "
                    "code (no Python pickles); not unpickled here")
        return f"{name(rec)} holds no pickle ({FORMAT_WORDS.get(fmt, fmt)}): loading runs no code"
    n = len(s.get("pickles", []))
    kinds = sorted({(x["global"] or "").rsplit(".", 1)[-1] for x in s.get("findings", [])
                    if x["global"]})
    return (f"{name(rec)}: {plural(n, 'pickle')} scanned, only plain data "
            f"({quoted_names(kinds, 4) if kinds else 'no globals'})")


# --- integrity -----------------------------------------------------------------------------------

def integrity_problems(rec: dict[str, Any]) -> list[Problem]:
    out = []
    k = rec.get("known") or {}
    expected = k.get("expected_size")
    of = f" ({rec['size']:,} of {expected:,} bytes)" if expected else \
        f" ({file_size(rec.get('size'))})"
    z = rec.get("zip") or {}
    st = rec.get("safetensors") or {}
    problem = None
    if rec.get("kind") == "zip" and z.get("problem"):
        problem = z["problem"]
    elif rec.get("kind") == "safetensors" and not st.get("complete", True):
        problem = st.get("problem", "incomplete safetensors file")
    elif rec.get("pickle_problem") or (rec.get("pickle") or {}).get("problem"):
        problem = rec.get("pickle_problem") or rec["pickle"]["problem"]
    elif rec.get("npy_problem"):
        problem = rec["npy_problem"]
    if problem:
        broken = "is corrupted" if st.get("malformed") else "is truncated or corrupted"
        out.append(Problem(FAIL, TRUNCATED, f"{name(rec)} {broken}{of}: {problem}",
                           redownload(rec), {"problem": problem}))
    if z.get("crc_mismatch"):
        out.append(Problem(FAIL, TRUNCATED,
                           f"{name(rec)}: {plural(len(z['crc_mismatch']), 'member')} fail their "
                           f"CRC ({', '.join(z['crc_mismatch'][:3])}); torch does not check CRCs, "
                           "so it would load the damaged bytes silently", redownload(rec),
                           {"crc_mismatch": z["crc_mismatch"]}))
    if st.get("trailing_bytes"):
        out.append(Problem(WARN, TRUNCATED,
                           f"{name(rec)} has {st['trailing_bytes']:,} bytes after its last tensor "
                           "(the safetensors format has none): appended or damaged", redownload(rec),
                           {"trailing_bytes": st["trailing_bytes"]}))
    return out


def integrity_sentence(rec: dict[str, Any], deep: bool) -> str:
    z = rec.get("zip") or {}
    fmt = rec.get("format")
    if fmt in ("torch-zip",):
        crc = (f"; CRCs of {z['crc_checked']} members match" if z.get("crc_checked")
               else "; CRCs not checked (--deep does)")
        return (f"{name(rec)}: zip directory intact, "
                f"{plural(z.get('storages', 0), 'storage')} of the sizes data.pkl expects{crc}")
    if fmt == "torch-legacy":
        return f"{name(rec)}: every pickle ends, the storage data fills the rest exactly"
    if fmt == "safetensors":
        st = rec.get("safetensors") or {}
        return (f"{name(rec)}: header of {plural(st.get('tensors', 0), 'tensor')}, "
                "offsets cover the data exactly")
    return f"{name(rec)}: complete ({FORMAT_WORDS.get(fmt, fmt)})"


def is_damaged(rec: dict[str, Any]) -> bool:
    return bool(format_problem(rec)) or any(p.status == FAIL for p in integrity_problems(rec))


# --- known names ---------------------------------------------------------------------------------

def known_problems(rec: dict[str, Any]) -> tuple[list[Problem], str | None]:
    """(problems, what passed) for what the file name promises; (.., None) when nothing is
    known about this name or content."""
    k = rec.get("known") or {}
    out: list[Problem] = []
    notes: list[str] = []
    size = rec.get("size")
    tensors = (rec.get("structure") or {}).get("tensors") or {}
    if k.get("expected_size") and size != k["expected_size"]:
        label = f"SAM {k['variant']}" if k.get("family") == "sam" else rec["name"]
        out.append(Problem(FAIL, HASH_MISMATCH,
                           f"{name(rec)} is {size:,} bytes, the official {label} file is "
                           f"{k['expected_size']:,}", redownload(rec),
                           {"expected_size": k["expected_size"], "size": size}))
    if k.get("size_range") and size is not None and not (
            k["size_range"][0] <= size <= k["size_range"][1]):
        lo, hi = k["size_range"]
        out.append(Problem(WARN, HASH_MISMATCH,
                           f"{name(rec)} is {file_size(size)}, outside the approximate "
                           f"{file_size(lo)}-{file_size(hi)} of the official YOLOv8{k['variant']} "
                           "release (fine if you trained and saved it yourself)", redownload(rec),
                           {"size_range": k["size_range"], "size": size}))
    h = rec.get("hash") or {}
    prefix = k.get("hash_prefix")
    if prefix and h.get("hexdigest"):
        if not h["hexdigest"].startswith(prefix):
            algo = h["algo"].upper().replace("SHA256", "SHA-256")
            out.append(Problem(FAIL, HASH_MISMATCH,
                               f"{name(rec)} has {algo} {h['hexdigest'][:len(prefix)]}..., the name "
                               f"promises {prefix}...: different or corrupted content",
                               redownload(rec), {"hash": h, "hash_prefix": prefix}))
        else:
            notes.append(f"{h['algo']} prefix {prefix} matches")
    elif prefix:
        notes.append(f"hash not verified ({rec.get('hash_skipped', 'not computed')})")
    sam = known.sam_variant(tensors) if tensors else None
    if sam and sam.get("variant"):
        if k.get("family") == "sam" and k.get("variant") != sam["variant"]:
            out.append(Problem(FAIL, HASH_MISMATCH,
                               f"{name(rec)} is named SAM {k['variant']} but holds SAM "
                               f"{sam['variant']} weights (embed {sam['embed_dim']}, "
                               f"{sam['depth']} blocks)", redownload(rec), {"sam": sam}))
        else:
            notes.append(f"SAM {sam['variant']} encoder (embed {sam['embed_dim']}, "
                         f"{sam['depth']} blocks)")
    yolo = yolo_sentence(rec)
    if yolo:
        notes.append(yolo)
    if k.get("family") == "torch_hub" and not notes:
        notes.append(f"torch.hub name for {k['variant']}")
    if not k and not notes:
        return out, None
    if k and not notes:
        notes.append(f"a published {k['family']} name")
    return out, "; ".join(notes)


def yolo_sentence(rec: dict[str, Any]) -> str | None:
    """Task, class count and names of an ultralytics checkpoint, read without running it."""
    meta = (rec.get("structure") or {}).get("meta")
    info = known.yolo_info(meta)
    if info is None:
        return None
    if (rec.get("safety") or {}).get("verdict") == safety.DENIED:
        return "an ultralytics checkpoint; class names not read (the file fails the safety scan)"
    names = list((info.get("names") or {}).values())
    shown = ", ".join(str(n) for n in names[:5]) + (f" and {len(names) - 5} more"
                                                    if len(names) > 5 else "")
    return (f"ultralytics {info['class'].rsplit('.', 1)[-1]}: task {info.get('task') or '?'}, "
            f"{plural(info.get('nc') or 0, 'class', 'classes')}" + (f" ({shown})" if shown else ""))


# --- loading -------------------------------------------------------------------------------------

def load_problems(rec: dict[str, Any], load: dict[str, Any] | None) -> tuple[list[Problem], str]:
    """(problems, pass sentence) for the weights_only load of one file."""
    load = load or {}
    status = load.get("status")
    out: list[Problem] = []
    s = rec.get("safety") or {}
    entries = s.get("findings", [])
    blocked = [x["global"] for x in entries if x["category"] in (safety.LIBRARY, safety.FOREIGN)
               and x["global"]]
    if status is None and blocked and s.get("verdict") != safety.DENIED:
        _, refuse = safety.allowable(entries)
        out.append(Problem(
            WARN, WEIGHTS_ONLY,
            f"{name(rec)}: torch.load(weights_only=True), the default since torch 2.6, refuses "
            f"it: its pickles name {_plain(blocked)} (not loaded here)",
            _allow_fix(blocked, refuse), {"globals": blocked[:20]}))
        return out, ""
    if status == "error":
        text = f"{load.get('error_type', '')}: {load.get('error', '')}"
        first = next((ln.strip() for ln in load.get("error", "").splitlines() if ln.strip()), "")
        m = re.search(r"unsupported global: global ([\w.]+)", text, re.I)
        if m:
            glob = m.group(1).rstrip(".")
            every = [g for g in load.get("unsafe_globals") or [] if g] or [glob]
            _, refuse = safety.allowable(entries)
            out.append(Problem(WARN, WEIGHTS_ONLY,
                               f"{name(rec)} is refused by torch.load(weights_only=True): "
                               f"unsupported global {glob}"
                               + (f" (all it needs: {_plain(every, 6)})" if len(every) > 1
                                  else ""),
                               _allow_fix(every, refuse), {"global": glob, "globals": every}))
        elif re.search(r"Unsupported operand (\d+)", text):
            # torch's weights_only unpickler reads the opcodes of protocol 2, what torch.save
            # writes; a file pickled with protocol 4/5 (FRAME = 149) is whole but refused.
            code = int(re.search(r"Unsupported operand (\d+)", text).group(1))
            op = pickletools.code2op.get(chr(code)) if code < 256 else None
            opname = f" ({op.name}, pickle protocol {op.proto})" if op else ""
            out.append(Problem(
                WARN, WEIGHTS_ONLY,
                f"{name(rec)} is refused by torch.load(weights_only=True): pickle opcode "
                f"{code}{opname} is one its restricted unpickler does not read (torch.save "
                "writes protocol 2); the file itself is whole",
                "Re-save it with torch.save's default protocol: torch.save(obj, path) without "
                "pickle_protocol=, loading it once with weights_only=False where you trust it",
                {"opcode": code}))
        elif any(t in text.lower() for t in _TRUNCATION_TEXT):
            out.append(Problem(FAIL, LOAD_FAILED, f"{name(rec)} looks whole to the static checks "
                               f"but torch.load raises {first[:160]}: the data is corrupted",
                               redownload(rec), {"error": load.get("error", "")[:500]}))
        else:
            out.append(Problem(FAIL, LOAD_FAILED,
                               f"{name(rec)} cannot be loaded: torch.load(weights_only=True) raises "
                               f"{load.get('error_type')}: {first[:160]}",
                               "Check the torch version it was saved with; upgrade torch or "
                               "re-save it", {"error": load.get("error", "")[:500]}))
        return out, ""
    if status == "crashed":
        why = load.get("signal") or load.get("reason") or f"exit {load.get('returncode')}"
        out.append(Problem(FAIL, LOAD_FAILED, f"{name(rec)} killed the probe process that "
                           f"loaded it ({why})", f"Treat {rec['path']} as corrupted: "
                           f"{redownload(rec)}", {"load": load}))
        return out, ""
    if status == "timeout":
        out.append(Problem(WARN, LOAD_FAILED, f"{name(rec)} did not load within "
                           f"{load.get('timeout_s')} s (slow disk or huge file?)",
                           "Retry with a larger timeout, or load it by hand to see where it "
                           "stalls", {"load": load}))
        return out, ""
    cuda = [d for d in ((rec.get("structure") or {}).get("devices") or rec.get("devices") or [])
            if d.startswith("cuda")]
    if status == "ok" and cuda and load.get("cuda_available") is False:
        out.append(Problem(WARN, CUDA_SAVED,
                           f"{name(rec)} was saved from {', '.join(cuda)}; this machine has no "
                           "CUDA, so a plain torch.load raises 'Attempting to deserialize object "
                           "on a CUDA device'",
                           f"torch.load('{rec['path']}', map_location='cpu')", {"devices": cuda}))
    if status == "ok":
        summ = load.get("summary") or {}
        return out, (f"{name(rec)}: loads with weights_only=True in a subprocess "
                     f"({plural(summ.get('tensors', 0), 'tensor')})")
    if status == "skipped":
        return out, f"{name(rec)}: not loaded ({load.get('reason')})"
    return out, ""


def _allow_fix(needed: list[str], refuse: list[str]) -> str:
    """How to load a file weights_only refuses: allow exactly what it needs, unless that would
    let the file run code (getattr, a library class it calls), then only re-saving is safe."""
    if refuse:
        return (f"Re-save the tensors as a state_dict from a trusted environment: allowing "
                f"{_plain(sorted(set(refuse)))} would let the file run that code while loading")
    shown = ", ".join(needed[:6]) + (", ..." if len(needed) > 6 else "")
    return (f"Re-save the tensors as a state_dict; or, trusting the file, allow exactly these: "
            f"torch.serialization.add_safe_globals([{shown}]) and keep weights_only=True")


def _plain(names: list[str], limit: int = 3) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit
                                       else "")


# --- fit to a model -------------------------------------------------------------------------------

CODE_INDENT = " " * 8


def code_block(lines: list[str]) -> str:
    return "\n" + "\n".join(CODE_INDENT + line for line in lines)


def fit_problems(d: dict[str, Any], name: str) -> tuple[list[Problem], str]:
    """Problems (and the pass sentence) for one diagnosis from `cvdoctor.checkpoint.fit`."""
    verdict, summary, code = d["verdict"], d["summary"], d.get("code") or []
    model = d.get("model") or "the model"
    where = f" in ckpt[{d['container']!r}]" if d.get("container") and "." not in d["container"] \
        else (f" in {d['container']}" if d.get("container") else "")
    evidence = {"verdict": verdict, "container": d.get("container"), "strip": d.get("strip"),
                "add": d.get("add"), "loaded_fraction": d.get("loaded_fraction"), "code": code,
                "missing": d.get("missing", [])[:20], "unexpected": d.get("unexpected", [])[:20],
                "mismatched": d.get("mismatched", [])[:20], "head": d.get("head"),
                "checkpoint_arch": d.get("checkpoint_arch"), "model_arch": d.get("model_arch")}
    loads = code_block(code)
    frac = d.get("loaded_fraction", 0.0)
    share = f"{int(frac * 1000) / 10:.1f}%"  # rounded down: 99.95% is not 100%
    if verdict == "fits":
        return [], f"{name} fits {model}{where}: {summary}; load it with:{loads}"
    if verdict == "prefix":
        return [Problem(WARN, PREFIX,
                        f"{name}{where}: {summary}, so model.load_state_dict(ckpt) raises "
                        f"'Missing key(s) in state_dict'; these lines load it:{loads}",
                        "Rename the keys as in the lines above (or write a clean copy: "
                        "cvdoctor ckpt FILE --model TARGET --fix OUT)", evidence)], ""
    if verdict == "head":
        return [Problem(WARN, HEAD,
                        f"{name}{where}: {summary}; everything else loads "
                        f"({share} of the parameters). To fine-tune, load it without the "
                        f"head:{loads}",
                        "Load with the head keys left out (lines above), or build the model with "
                        "the checkpoint's class count", evidence)], ""
    if verdict == "variant":
        return [Problem(FAIL, VARIANT,
                        f"{name}: {summary}; only {frac:.0%} of the model's parameters would load "
                        f"(strict=False would hide it). Build the model the weights belong "
                        f"to:{loads}", "Build the matching variant (lines above) or get weights "
                        "for your variant", evidence)], ""
    if verdict == "unrelated":
        return [Problem(FAIL, MISMATCH, f"{name}: {summary} ({model})",
                        "This file belongs to another model: check which model produced it",
                        evidence)], ""
    if verdict == "empty":
        return [Problem(FAIL, MISMATCH, f"{name}: {summary}", "Point at the file that holds the "
                        "weights (this one has none)", evidence)], ""
    missing = d.get("missing", [])
    mism = d.get("mismatched", [])
    detail = []
    if missing:
        detail.append(f"missing {quoted_names(missing, 3)}")
    if mism:
        detail.append(f"other shapes: {quoted_names([m['key'] for m in mism], 3)}")
    if frac < fit.LOADED_FRACTION_WARN:
        return [Problem(WARN, PARTIAL,
                        f"{name}: only {share} of {model}'s parameters would come from the file "
                        f"({'; '.join(detail)}); strict=False loads it without a word:{loads}",
                        "Find the checkpoint of this exact model, or load knowingly with "
                        "strict=False and check the missing keys", evidence)], ""
    return [Problem(WARN, MISMATCH,
                    f"{name}{where}: {summary} ({'; '.join(detail)}); "
                    f"{share} of the parameters load:{loads}",
                    "Load with strict=False and assert the missing keys are the ones you "
                    "expect (lines above)", evidence)], ""
