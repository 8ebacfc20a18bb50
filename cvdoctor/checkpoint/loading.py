"""``torch.load(weights_only=True)`` of files that passed the static scan, in a subprocess with a
timeout (``cvdoctor/probes/checkpoint_probe.py``), so a file that crashes or hangs torch becomes
a finding and never the end of the run."""
from __future__ import annotations

import json
from typing import Any

LOAD_LIMIT_BYTES = 512 * 1024 ** 2  # probe-load files up to this size by default; all under --deep
LOAD_RATE_BYTES_S = 50e6  # allowed on top of the base timeout: a 2.5 GB SAM file needs longer


def is_loadable(rec: dict[str, Any]) -> bool:
    """Only intact files whose every pickle global is plain data ever reach torch.load."""
    kind = rec.get("kind")
    if kind == "safetensors":
        return bool((rec.get("safetensors") or {}).get("complete"))
    if kind == "zip":
        z = rec.get("zip") or {}
        if not z.get("complete") or z.get("format") != "torch-zip" or z.get("torch_refuses"):
            return False
    elif kind == "pickle":
        if rec.get("format") != "torch-legacy":
            return False
    else:
        return False
    p = rec.get("pickle") or {}
    return not p.get("problem") and not (p.get("library") or p.get("foreign") or p.get("denied"))


def attach_loads(files: list[dict[str, Any]], deep: bool, timeout_s: float) -> None:
    """Fill rec['load'] for every loadable file: ok / error / refused / crashed / timeout."""
    from cvdoctor.probes import run_probe

    todo = []
    for rec in files:
        if not is_loadable(rec):
            continue
        if not deep and rec["size"] > LOAD_LIMIT_BYTES:
            rec["load"] = {"status": "skipped",
                           "reason": f"larger than {LOAD_LIMIT_BYTES // 1024 ** 2} MiB; "
                                     "--deep loads it"}
            continue
        todo.append(rec)
    if not todo:
        return
    # One subprocess pays for `import torch` once; if it dies, retry one file per subprocess so a
    # file that crashes torch is pinned down and the others still get a verdict.
    timeout_s = round(timeout_s + sum(r["size"] for r in todo) / LOAD_RATE_BYTES_S, 1)
    results = _probe_batch(run_probe, todo, timeout_s)
    if results is None:
        for rec in todo:
            one = _probe_batch(run_probe, [rec], timeout_s)
            rec["load"] = (one or {}).get(rec["path"]) or probe_failure(rec.get("_last_probe"))
    else:
        for rec in todo:
            rec["load"] = results.get(rec["path"], {"status": "error", "error": "no result"})
    for rec in todo:
        rec.pop("_last_probe", None)


def _probe_batch(run_probe, recs, timeout_s):
    payload = json.dumps([{"path": r["path"], "kind": r["kind"]} for r in recs])
    out = run_probe("checkpoint_probe", [], timeout_s=timeout_s, stdin=payload)
    if out["_probe"].get("ok") and isinstance(out.get("results"), dict):
        if "cuda_available" in out:  # the loads used map_location='cpu'; would a plain one work?
            for res in out["results"].values():
                if isinstance(res, dict):
                    res["cuda_available"] = out["cuda_available"]
        return out["results"]
    for r in recs:
        r["_last_probe"] = out["_probe"]
    return None


def probe_failure(info: dict[str, Any] | None) -> dict[str, Any]:
    info = info or {}
    if info.get("reason") == "timeout":
        return {"status": "timeout", "timeout_s": info.get("timeout_s")}
    if info.get("reason") == "signal":
        return {"status": "crashed", "signal": info.get("signal"),
                "stderr": info.get("stderr", "")[-800:]}
    return {"status": "crashed", "reason": info.get("reason"), "returncode": info.get("returncode"),
            "stderr": info.get("stderr", "")[-800:]}
