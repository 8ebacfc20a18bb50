"""Subprocess probes: hazardous or slow work (importing torch, CUDA kernels, torchvision C++ ops,
DataLoader workers, unpickling) runs here so a hang or a segfault becomes a finding.

Each probe module, run as ``python -m cvdoctor.probes.NAME [ARGS]``, prints exactly one JSON
object on its last stdout line.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any


def run_probe(name: str, args: list[str] | None = None, *, timeout_s: float = 60.0,
              env: dict[str, str] | None = None, stdin: str | None = None) -> dict[str, Any]:
    """Run probe `name` and return its JSON, plus `_probe` bookkeeping.

    Never raises for the probe's own failures: a timeout, a crash (negative return code = killed
    by a signal, e.g. SIGSEGV or SIGBUS) or unparsable output come back as
    ``{"_probe": {"ok": False, "reason": ..., ...}}`` so the check can report it.
    """
    cmd = [sys.executable, "-m", f"cvdoctor.probes.{name}", *(args or [])]
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env.setdefault("PYTHONWARNINGS", "ignore")
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout_s,
                              env=full_env, start_new_session=True)
    except subprocess.TimeoutExpired as exc:
        return {"_probe": {"ok": False, "reason": "timeout", "timeout_s": timeout_s,
                           "stderr": _tail(exc.stderr), "duration_s": timeout_s}}
    elapsed = round(time.perf_counter() - start, 3)
    info: dict[str, Any] = {"ok": proc.returncode == 0, "returncode": proc.returncode,
                            "duration_s": elapsed, "stderr": _tail(proc.stderr)}
    if proc.returncode < 0:
        info["reason"] = "signal"
        try:
            info["signal"] = signal.Signals(-proc.returncode).name
        except ValueError:
            info["signal"] = str(-proc.returncode)
    payload: dict[str, Any] = {}
    lines = [ln for ln in (proc.stdout or "").splitlines() if ln.strip()]
    if lines:
        try:
            payload = json.loads(lines[-1])
        except ValueError:
            info.setdefault("reason", "bad-output")
            info["ok"] = False
            info["stdout"] = _tail(proc.stdout)
    elif "reason" not in info:
        info["reason"] = "no-output" if proc.returncode == 0 else "exit"
        info["ok"] = False
    payload["_probe"] = info
    return payload


SIGNAL_MEANINGS = {
    "SIGSEGV": "a segmentation fault in native code",
    "SIGBUS": "a bus error, typically a shared-memory page the system could not back",
    "SIGKILL": "killed, often by the out-of-memory killer",
    "SIGABRT": "aborted by native code",
    "SIGILL": "an illegal instruction: a binary built for another CPU",
}


def describe_failure(info: dict[str, Any], what: str, tail_lines: int = 1) -> str:
    """One sentence for a probe that gave no result: it hung, died by a signal or exited,
    followed by the last line(s) it wrote on stderr. The one wording every fact uses."""
    reason = info.get("reason")
    if reason == "timeout":
        text = f"{what} hung and was stopped: it did not finish within {info.get('timeout_s'):g} s"
    elif reason == "signal":
        sig = info.get("signal")
        meaning = SIGNAL_MEANINGS.get(str(sig))
        text = f"{what} did not finish (signal, {sig}){', ' + meaning if meaning else ''}"
    elif reason in ("bad-output", "no-output"):
        text = f"{what} gave no readable result (exit code {info.get('returncode')})"
    else:
        text = f"{what} did not finish (exit code {info.get('returncode')})"
    stderr = (info.get("stderr") or "").strip().splitlines()
    tail = " | ".join(line.strip() for line in stderr[-tail_lines:] if line.strip())
    return f"{text}: {tail}" if tail else text


def _tail(text: Any, limit: int = 4000) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return text[-limit:]


def emit(obj: dict[str, Any]) -> None:
    """For probe modules: print the one JSON result line."""
    sys.stdout.write("\n" + json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()
