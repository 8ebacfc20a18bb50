"""cvdoctor's checkpoint scanner against picklescan, ModelScan and fickling, on the same files.

    .venv/bin/python bench/bench_ckpt.py [--peers-python /work/benchvenv-ckpt/bin/python]

The payload and benign sets are the ones tests/test_checkpoint_payloads.py builds (every payload
would create a marker file if it were loaded; none is ever loaded here), plus a real ultralytics
scratch checkpoint and a torchvision model pickled whole. The peers run from their own venv
(``python3 -m venv /work/benchvenv-ckpt && /work/benchvenv-ckpt/bin/pip install picklescan
modelscan fickling typing_extensions``), each through its documented Python API in one warm
process, so seconds per file compare scanning, not interpreter start-up:

- picklescan: ``scanner.scan_file_path`` (flagged = dangerous globals, warn = suspicious only,
  error = scan_err or an exception);
- ModelScan: ``ModelScan().scan`` (flagged = an issue of severity MEDIUM or above, warn = LOW
  only, error = errors and nothing flagged);
- fickling: what its Hugging Face scanner does with a file: ``scan_zip_archive`` for zip
  archives, ``scan_file`` for pickles, nothing for npy/safetensors (its own format sniffing needs
  torch in its venv, so ``zipfile.is_zipfile`` decides); flagged = severity above LIKELY_SAFE,
  error = parse errors;
- cvdoctor: ``cvdoctor.checkpoint.inspect_file`` (flagged = a denied global or event, warn =
  library or foreign classes, error = the file is broken).

A payload counts as caught only when flagged; a benign file counts as failed when flagged or
errored (a scanner that cannot give a verdict blocks a pipeline as surely as one that says no).
Also timed: header-only inspection of a multi-GB sparse checkpoint (holes, nothing written).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

PEER_RUNNER = r'''
import json, sys, time, warnings, logging, io, contextlib
warnings.simplefilter("ignore")
logging.disable(logging.CRITICAL)
files = json.loads(sys.stdin.read())
out = {}

def picklescan_scan(path):
    from picklescan.scanner import scan_file_path
    r = scan_file_path(path)
    if r.issues_count > 0 or r.infected_files > 0:
        return "flagged", f"{r.issues_count} dangerous"
    if r.scan_err:
        return "error", "scan error"
    if getattr(r, "suspicious_count", 0):
        return "warn", f"{r.suspicious_count} suspicious"
    return "clean", ""

def modelscan_scan(path):
    from modelscan.modelscan import ModelScan
    r = ModelScan().scan(path)
    sev = [str(i.get("severity", "")).upper() for i in r.get("issues", [])]
    if any(s in ("CRITICAL", "HIGH", "MEDIUM") for s in sev):
        return "flagged", ",".join(sorted(set(sev)))
    if r.get("errors"):
        return "error", str(r["errors"][0])[:80]
    if sev:
        return "warn", ",".join(sorted(set(sev)))
    skipped = (r.get("summary") or {}).get("skipped", {}).get("total_skipped", 0)
    return "clean", f"skipped {skipped}" if skipped else ""

def fickling_scan(path):
    import zipfile
    from fickling.loader import scan_file, scan_zip_archive
    # fickling's format sniffing (polyglot.find_file_properties) needs torch installed; without
    # it, do what its Hugging Face scanner does per format: zip members, else the stacked pickle.
    if zipfile.is_zipfile(path):
        results = list(scan_zip_archive(path, graceful=True).values())
    elif path.endswith((".npy", ".npz", ".safetensors")):
        return "clean", "not scanned (format not supported)"
    else:
        results = [scan_file(path, graceful=True)]
    if any(not r.is_safe and not r.errors for r in results):
        return "flagged", max(r.severity.name for r in results)
    if any(r.errors for r in results):
        return "error", results[0].errors[0][:80] if results[0].errors else "error"
    if not results:
        return "clean", "no pickle members"
    return "clean", ""

tools = {"picklescan": picklescan_scan, "modelscan": modelscan_scan, "fickling": fickling_scan}
if len(sys.argv) > 1:  # one tool only (the big-file timing)
    tools = {sys.argv[1]: tools[sys.argv[1]]}
versions = {}
from importlib.metadata import version
for name in tools:
    versions[name] = version(name)
for name, fn in tools.items():
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        try:
            fn(files[0])  # warm-up: imports, caches
        except Exception:
            pass
    for f in files:
        t = time.perf_counter()
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                outcome, note = fn(f)
        except Exception as exc:
            outcome, note = "error", f"{type(exc).__name__}: {str(exc)[:60]}"
        out.setdefault(name, {})[f] = {"outcome": outcome, "note": note, "s": time.perf_counter() - t}
print(json.dumps({"results": out, "versions": versions}))
'''


def cvdoctor_scan(path: str) -> tuple[str, str]:
    from cvdoctor.checkpoint import inspect_file

    rec = inspect_file(path)
    safety = rec.get("safety") or {}
    denied = [x for x in safety.get("findings", []) if x["category"] == "denied"]
    if denied:
        return "flagged", (denied[0]["global"] or denied[0]["reason"])[:60]
    broken = (rec.get("pickle_problem") or (rec.get("zip") or {}).get("problem")
              or (rec.get("safetensors") or {}).get("problem") or rec.get("npy_problem"))
    if broken:
        return "error", broken[:60]
    if safety.get("verdict") in ("library", "foreign"):
        return "warn", safety["verdict"]
    return "clean", ""


def build_sets(folder: Path, marker: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    import test_checkpoint_payloads as sets

    (folder / "payloads").mkdir()
    (folder / "benign").mkdir()
    payloads = sets.write_payloads(folder / "payloads", marker)
    benign = sets.write_benign(folder / "benign")
    extra = folder / "benign"
    try:
        import torch
        import torchvision

        torch.save(torchvision.models.resnet18(weights=None), extra / "resnet18_whole.pt")
        benign["torchvision resnet18 pickled whole"] = extra / "resnet18_whole.pt"
    except ImportError:
        pass
    try:
        os.environ.setdefault("YOLO_OFFLINE", "1")
        from ultralytics import YOLO

        YOLO("yolov8n.yaml").save(str(extra / "yolov8n_scratch.pt"))
        benign["ultralytics YOLOv8n checkpoint"] = extra / "yolov8n_scratch.pt"
    except Exception as exc:  # noqa: BLE001 - optional
        print(f"(no ultralytics checkpoint: {exc})", file=sys.stderr)
    return payloads, benign


def run_peers(python: str, files: list[str]) -> dict:
    proc = subprocess.run([python, "-c", PEER_RUNNER], input=json.dumps(files), text=True,
                          capture_output=True, timeout=3600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"peer runner failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(lines[-1])


def big_file_times(python: str, folder: Path, gib: float) -> dict[str, str]:
    from test_checkpoint_formats import sparse_checkpoint

    path = folder / "big.pt"
    sparse_checkpoint(path, int(gib * 1024 ** 3))
    small = folder / "small.pt"
    sparse_checkpoint(small, 1024)  # the warm-up file: imports are not what is timed
    out = {}
    from cvdoctor.checkpoint import inspect_file

    inspect_file(path)
    t = time.perf_counter()
    rec = inspect_file(path)
    out["cvdoctor"] = f"{(time.perf_counter() - t) * 1000:.1f} ms ({rec['safety']['verdict']})"
    for tool in ("picklescan", "modelscan", "fickling"):
        # fickling reads the whole file into memory: cap the address space so it fails fast
        limit = "ulimit -v 4000000; " if tool == "fickling" else ""
        try:
            proc = subprocess.run(["bash", "-c", limit + 'exec "$@"', "_", python, "-c",
                                   PEER_RUNNER, tool], input=json.dumps([str(small), str(path)]),
                                  text=True,
                                  capture_output=True, timeout=600)
        except subprocess.TimeoutExpired:
            out[tool] = "timeout (600 s)"
            continue
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        r = json.loads(lines[-1])["results"][tool][str(path)] if lines else None
        if r is None:
            out[tool] = f"no result (exit {proc.returncode}: {proc.stderr.strip()[-80:]})"
        else:
            note = f": {r['note']}" if r["note"] and r["outcome"] == "error" else ""
            out[tool] = f"{r['s'] * 1000:.1f} ms ({r['outcome']}{note})"
    path.unlink()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--peers-python", default="/work/benchvenv-ckpt/bin/python")
    ap.add_argument("--big-gib", type=float, default=3.0)
    args = ap.parse_args()
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        marker = folder / "PAYLOAD-RAN"
        payloads, benign = build_sets(folder, marker)
        files = [str(p) for p in list(payloads.values()) + list(benign.values())]
        peers = run_peers(args.peers_python, files)
        cv: dict[str, dict] = {}
        cvdoctor_scan(files[0])
        for f in files:
            t = time.perf_counter()
            outcome, note = cvdoctor_scan(f)
            cv[f] = {"outcome": outcome, "note": note, "s": time.perf_counter() - t}
        results = {"cvdoctor": cv, **peers["results"]}
        big = big_file_times(args.peers_python, folder, args.big_gib)
        assert not marker.exists(), "a payload ran"
        report(results, peers["versions"], payloads, benign, big, load0, args.big_gib)


def report(results, versions, payloads, benign, big, load0, gib) -> None:
    import cvdoctor

    tools = ["cvdoctor", "picklescan", "modelscan", "fickling"]
    print(f"{len(payloads)} payloads, {len(benign)} benign files; {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, load average {load0:.1f} at start. Versions: cvdoctor "
          f"{getattr(cvdoctor, '__version__', '?')}, "
          + ", ".join(f"{t} {versions[t]}" for t in tools[1:]) + ".\n")
    print("| tool | payloads caught | warned only | errors | missed | benign failed | benign warned "
          "| median ms/file | mean ms/file | mean ms/benign file |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for t in tools:
        r = results[t]
        po = [r[str(p)]["outcome"] for p in payloads.values()]
        bo = [r[str(p)]["outcome"] for p in benign.values()]
        times = [v["s"] * 1000 for v in r.values()]
        btimes = [r[str(p)]["s"] * 1000 for p in benign.values()]
        print(f"| {t} | {po.count('flagged')} / {len(po)} | {po.count('warn')} | {po.count('error')} "
              f"| {po.count('clean')} | {bo.count('flagged') + bo.count('error')} / {len(bo)} "
              f"| {bo.count('warn')} | {statistics.median(times):.2f} | {statistics.mean(times):.2f} "
              f"| {statistics.mean(btimes):.2f} |")
    print()
    print("Payloads at least one tool did not flag (F flagged, w warned, E error, - clean):\n")
    print("| payload | " + " | ".join(tools) + " |")
    print("| --- |" + " --- |" * len(tools))
    mark = {"flagged": "F", "warn": "w", "error": "E", "clean": "-"}
    for label, p in payloads.items():
        row = [mark[results[t][str(p)]["outcome"]] for t in tools]
        if any(x != "F" for x in row):
            print(f"| {label} | " + " | ".join(row) + " |")
    print()
    print("Benign files at least one tool failed or warned about:\n")
    print("| benign file | " + " | ".join(tools) + " |")
    print("| --- |" + " --- |" * len(tools))
    for label, p in benign.items():
        row = [mark[results[t][str(p)]["outcome"]] for t in tools]
        if any(x != "-" for x in row):
            print(f"| {label} | " + " | ".join(row) + " |")
    print()
    print(f"Header-only inspection of a {gib:g} GiB sparse torch checkpoint (one tensor; the "
          "data is a hole):\n")
    print("| tool | time |")
    print("| --- | --- |")
    for t in tools:
        print(f"| {t} | {big.get(t)} |")
    print(f"\nLoad average at the end: {os.getloadavg()[0]:.1f}.")


if __name__ == "__main__":
    main()
