"""What `cvdoctor run` costs: a command printing 50 MB of training log, run directly and through
`cvdoctor run`, in the same session (issue 11: wall time ratio <= 1.10, cvdoctor's own peak
memory < 200 MB).

    .venv/bin/python bench/bench_run.py [--mb 50] [--repeats 5] [--sink file|devnull] [--json]

The command is a Python script that prints a realistic log (tqdm-style `\\r` progress on stderr,
one formatted line per step on stdout, a NaN loss now and then so the symptom scanner has work)
until it has written --mb megabytes. Each repeat runs both sides back to back in alternating
order, stdout to a file (or /dev/null) and stderr to a pipe read by this script; the medians are
compared. cvdoctor's peak RSS and CPU time are its own (`getrusage(RUSAGE_SELF)` inside the
cvdoctor process, which does not count the command): on a busy machine the CPU time is the
steadier measure of the overhead. The output bytes of both sides are checked equal.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

PRODUCER = textwrap.dedent("""
    import sys
    target = int(sys.argv[1]) * 1_000_000
    out, err = sys.stdout, sys.stderr
    written, step = 0, 0
    while written < target:
        step += 1
        loss = "nan" if step % 50_000 == 0 else f"{1.0 / (1 + step * 1e-4):.4f}"
        line = (f"epoch {step // 1000:4d} step {step:8d} loss={loss} lr=0.0010 "
                f"grad_norm={step % 97 / 10:.2f} img/s=812.3 mem=10.2G eta=01:02:03\\n")
        out.write(line)
        written += len(line)
        if step % 2000 == 0:
            err.write(f"\\r{step // 2000:5d} it |{'#' * (step // 2000 % 20):20s}|")
    err.write("\\ndone\\n")
""")

# Runs cvdoctor in this very process and reports its own peak RSS (children not included).
WRAPPER = textwrap.dedent("""
    import resource, runpy, sys
    report, sys.argv = sys.argv[1], ["cvdoctor"] + sys.argv[2:]
    try:
        runpy.run_module("cvdoctor.cli", run_name="__main__")
    finally:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        with open(report, "w") as f:
            f.write(f"{usage.ru_maxrss} {usage.ru_utime + usage.ru_stime}")
""")


def timed(argv: list[str], sink: str, env: dict) -> tuple[float, int, bytes, str]:
    """(wall seconds, exit status, stderr, path of the stdout copy or '')."""
    if sink == "devnull":
        out, path = open(os.devnull, "wb"), ""
    else:
        fd, path = tempfile.mkstemp(prefix="bench_run_", suffix=".out")
        out = os.fdopen(fd, "wb")
    start = time.perf_counter()
    proc = subprocess.run(argv, stdout=out, stderr=subprocess.PIPE, env=env)
    wall = time.perf_counter() - start
    out.close()
    return wall, proc.returncode, proc.stderr, path


def same_file(a: str, b: str) -> bool:
    if not a or not b:
        return True
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sink", choices=("file", "devnull"), default="file")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench_run_"))
    producer, wrapper, rss_file = work / "producer.py", work / "wrapper.py", work / "rss.txt"
    producer.write_text(PRODUCER)
    wrapper.write_text(WRAPPER)
    env = dict(os.environ, PYTHONFAULTHANDLER="1")  # what cvdoctor gives the command
    env_cv = {k: v for k, v in env.items() if k != "PYTHONFAULTHANDLER"}
    env_cv["PYTHONPATH"] = str(ROOT) + os.pathsep + env_cv.get("PYTHONPATH", "")
    command = [PY, str(producer), str(args.mb)]
    through = [PY, str(wrapper), str(rss_file), "run", "--", *command]

    direct_s, run_s, rss, cpu = [], [], [], []
    for i in range(args.repeats):
        order = ("direct", "run") if i % 2 == 0 else ("run", "direct")
        results = {}
        for side in order:
            results[side] = timed(command if side == "direct" else through, args.sink,
                                  env if side == "direct" else env_cv)
        (d_wall, d_rc, d_err, d_out), (r_wall, r_rc, r_err, r_out) = results["direct"], \
            results["run"]
        assert d_rc == r_rc == 0, (d_rc, r_rc, r_err[-500:])
        assert same_file(d_out, r_out), "cvdoctor run changed the output bytes"
        assert r_err.startswith(d_err), "cvdoctor run changed the stderr bytes"
        for path in (d_out, r_out):
            if path:
                os.unlink(path)
        direct_s.append(d_wall)
        run_s.append(r_wall)
        maxrss, cpu_s = rss_file.read_text().split()
        rss.append(int(maxrss) / 1024)  # ru_maxrss is KiB on Linux
        cpu.append(float(cpu_s))
        added = r_err[len(d_err):].decode(errors="replace").strip()

    summary = {
        "output_mb": args.mb, "repeats": args.repeats, "sink": args.sink,
        "direct_s_median": round(statistics.median(direct_s), 3),
        "run_s_median": round(statistics.median(run_s), 3),
        "ratio_median": round(statistics.median(run_s) / statistics.median(direct_s), 3),
        "ratio_best": round(min(run_s) / min(direct_s), 3),
        "cvdoctor_peak_rss_mb": round(max(rss), 1),
        "cvdoctor_cpu_s_median": round(statistics.median(cpu), 3),
        "direct_s": [round(x, 3) for x in direct_s], "run_s": [round(x, 3) for x in run_s],
        "cvdoctor_said": added,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"command: python producer printing {args.mb} MB to stdout (+ \\r progress on stderr); "
          f"stdout to {args.sink}, {args.repeats} repeats, alternating order")
    print(f"  directly:          median {summary['direct_s_median']:.3f} s   {summary['direct_s']}")
    print(f"  cvdoctor run:      median {summary['run_s_median']:.3f} s   {summary['run_s']}")
    print(f"  ratio (medians):   {summary['ratio_median']:.3f}   (best runs: "
          f"{summary['ratio_best']:.3f}; target <= 1.10)")
    print(f"  cvdoctor's own CPU time: median {summary['cvdoctor_cpu_s_median']:.3f} s "
          "(user + system, the command not included)")
    print(f"  cvdoctor peak RSS: {summary['cvdoctor_peak_rss_mb']:.1f} MB (target < 200 MB)")
    print(f"  output bytes identical on both sides; cvdoctor added on stderr: {added!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
