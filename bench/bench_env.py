"""Wall time of `cvdoctor env` against `python -c "import torch"` and
`python -m torch.utils.collect_env`, each in a fresh process.

    .venv/bin/python bench/bench_env.py [--repeats 5] [--timeout 120]

Prints a Markdown table of medians (and min/max) over the repeats, after one untimed warm-up of
each command (the OS page cache), and the two ratios the foundation issue sets as targets:
`cvdoctor env` within 1.5x of `import torch`, and faster than `collect_env`. A command that exits
non-zero still counts (`cvdoctor env` exits 1 when a check fails on this machine); one that times
out is reported as such.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def cvdoctor_command() -> list[str]:
    """The console script next to this interpreter (the venv's), else `python -m cvdoctor.cli`."""
    script = Path(sys.executable).with_name("cvdoctor")
    if script.exists():
        return [str(script), "env"]
    found = shutil.which("cvdoctor")
    if found:
        return [found, "env"]
    return [sys.executable, "-c", "from cvdoctor.cli import main; main()", "env"]


def commands() -> dict[str, list[str]]:
    return {
        "`cvdoctor env`": cvdoctor_command(),
        '`python -c "import torch"`': [sys.executable, "-c", "import torch"],
        "`python -m torch.utils.collect_env`": [sys.executable, "-m", "torch.utils.collect_env"],
    }


def run_once(cmd: list[str], timeout: float) -> tuple[float, int | str]:
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              stdin=subprocess.DEVNULL, timeout=timeout,
                              env={**os.environ, "NO_COLOR": "1"})
        return time.perf_counter() - start, proc.returncode
    except subprocess.TimeoutExpired:
        return time.perf_counter() - start, "timeout"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=120.0)
    args = ap.parse_args(argv)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load average {load:.1f} at "
          f"start; median of {args.repeats} fresh processes after 1 warm-up each.\n")
    print("| command | median s | min s | max s | exit codes |")
    print("| --- | ---: | ---: | ---: | --- |")
    medians = {}
    for label, cmd in commands().items():
        run_once(cmd, args.timeout)  # warm-up: page cache, .pyc files
        times, codes = [], []
        for _ in range(args.repeats):
            secs, code = run_once(cmd, args.timeout)
            times.append(secs)
            codes.append(code)
        medians[label] = statistics.median(times)
        print(f"| {label} | {medians[label]:.2f} | {min(times):.2f} | {max(times):.2f} | "
              f"{', '.join(sorted({str(c) for c in codes}))} |", flush=True)
    env, imp, collect = medians.values()
    print(f"\n`cvdoctor env` / `import torch` = {env / imp:.2f}x (target <= 1.5x); "
          f"`cvdoctor env` / `collect_env` = {env / collect:.2f}x (target < 1x).")
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"Load average at the end: {load_end:.1f}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
