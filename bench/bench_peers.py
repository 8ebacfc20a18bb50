"""cvdoctor against its peers (torchtest2, neural-net-checklist, torchtest): what each catches on
the broken setups of the model issue, false alarms on healthy models, and check_model wall time.

The peers are not cvdoctor dependencies: run this from a scratch venv that has them and sees our
venv's packages, e.g.

    python3 -m venv /tmp/peers
    echo "import site; site.addsitedir('/work/main/.venv/lib/python3.11/site-packages')" \
        > /tmp/peers/lib/python3.11/site-packages/_main.pth   # .pth files there run too
    /tmp/peers/bin/pip install --no-deps torchtest2 neural-net-checklist torchtest
    /tmp/peers/bin/python bench/bench_peers.py [--threads 1] [--repeats 5]

Each (tool, setup) detection run is a child process with a timeout, so a peer that trains for
65,536 steps or crashes cannot stop the table. A tool "catches" a setup when it reports a
failure (FAIL / an assertion / a raised check exception); "crash" means the user's own exception
escaped the tool undiagnosed; "warn" is a warning only; "-" means it reported nothing wrong.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

TOOLS = ("cvdoctor", "torchtest2", "neural-net-checklist", "torchtest")
NNC_OVERFIT_STEPS = 1000  # its default is 65,536 steps to a loss of 1e-4


def _short(text: str, n: int = 90) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


# --- one tool on one setup ---------------------------------------------------------------------

def run_cvdoctor(setup) -> dict:
    import cvdoctor

    report = cvdoctor.check_model(setup.model, (setup.inputs, setup.targets),
                                  loss_fn=setup.loss_fn, optimizer=setup.optimizer,
                                  num_classes=setup.num_classes)
    fails = [f for f in report.findings if f.status in ("fail", "error")]
    warns = [f for f in report.findings if f.status == "warn"]
    if fails:
        return {"verdict": "FAIL" if any(f.status == "fail" for f in fails) else "error",
                "which": [f.check for f in fails], "detail": _short(fails[0].message)}
    if warns:
        return {"verdict": "warn", "which": [f.check for f in warns],
                "detail": _short(warns[0].message)}
    return {"verdict": "-", "which": [], "detail": ""}


def run_torchtest2(setup) -> dict:
    import torchtest2

    report = torchtest2.check_model(setup.model, setup.inputs, setup.targets,
                                    loss_fn=setup.loss_fn, optimizer=setup.optimizer)
    fails = [r for r in report.results if str(r.status) == "FAIL"]
    warns = [r for r in report.results if str(r.status) == "WARN"]
    if fails:
        return {"verdict": "FAIL", "which": [r.name for r in fails],
                "detail": _short(fails[0].message)}
    if warns:
        return {"verdict": "warn", "which": [r.name for r in warns],
                "detail": _short(warns[0].message)}
    return {"verdict": "-", "which": [], "detail": ""}


def run_nnc(setup) -> dict:
    """neural-net-checklist's classification suite, in its own order, with the overfit capped."""
    if not setup.classification:
        return {"verdict": "n/a", "which": [], "detail": "classification suite only"}
    import neural_net_checklist.torch_diagnostics as nnc

    def factory():
        return copy.deepcopy(setup.model)

    batch = (setup.inputs, setup.targets)
    steps = [
        ("loss_at_init", lambda: nnc.assert_balanced_classification_cross_entropy_loss_at_init(
            factory(), batch, num_classes=setup.num_classes)),
        ("init_calibrated", lambda: nnc.assert_balanced_classification_cross_entropy_init_calibrated(
            factory(), batch, num_classes=setup.num_classes)),
        ("forward_batch_independence", lambda: nnc.assert_forward_batch_independence(
            factory, batch)),
        ("non_zero_gradients", lambda: nnc.assert_non_zero_gradients(factory(), batch)),
        ("backward_batch_independence", lambda: nnc.assert_backward_batch_independence(
            factory, batch)),
        ("input_independent_baseline_worse", lambda: nnc.assert_input_independent_baseline_worse(
            factory, batch)),
        ("overfit_to_batch", lambda: nnc.assert_overfit_to_batch(
            factory(), batch, max_steps=NNC_OVERFIT_STEPS)),
    ]
    for name, step in steps:
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                step()
        except AssertionError as exc:
            return {"verdict": "FAIL", "which": [name], "detail": _short(exc)}
        except Exception as exc:  # noqa: BLE001 - the user's error escaping the tool
            return {"verdict": "crash", "which": [name],
                    "detail": _short(f"{type(exc).__name__}: {exc}")}
    return {"verdict": "-", "which": [], "detail": ""}


def run_torchtest(setup) -> dict:
    from torchtest import torchtest as tt

    caught = (tt.VariablesChangeException, tt.RangeException, tt.NaNTensorException,
              tt.InfTensorException, tt.DependencyException)
    try:
        tt.test_suite(setup.model, setup.loss_fn, setup.optimizer,
                      [setup.inputs, setup.targets], test_vars_change=True,
                      test_nan_vals=True, test_inf_vals=True)
    except caught as exc:
        return {"verdict": "FAIL", "which": [type(exc).__name__], "detail": _short(exc)}
    except Exception as exc:  # noqa: BLE001
        return {"verdict": "crash", "which": [], "detail": _short(f"{type(exc).__name__}: {exc}")}
    return {"verdict": "-", "which": [], "detail": ""}


RUNNERS = {"cvdoctor": run_cvdoctor, "torchtest2": run_torchtest2,
           "neural-net-checklist": run_nnc, "torchtest": run_torchtest}


def child(tool: str, kind: str, name: str, threads: int | None) -> None:
    import torch

    import peer_fixtures

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    build = (peer_fixtures.BROKEN if kind == "broken" else peer_fixtures.healthy())[name]
    setup = build()
    start = time.perf_counter()
    try:
        out = RUNNERS[tool](setup)
    except Exception as exc:  # noqa: BLE001 - the tool itself raised
        out = {"verdict": "crash", "which": [], "detail": _short(f"{type(exc).__name__}: {exc}")}
    out["seconds"] = round(time.perf_counter() - start, 2)
    print("RESULT " + json.dumps(out))


def detect(tool, kind, name, threads, timeout) -> dict:
    cmd = [sys.executable, __file__, "--child", tool, kind, name]
    if threads:
        cmd += ["--threads", str(threads)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"verdict": "timeout", "which": [], "detail": f"no answer in {timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    return {"verdict": "crash", "which": [],
            "detail": _short(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else
                             f"exit {proc.returncode}")}


# --- timing ------------------------------------------------------------------------------------

def time_tools(repeats: int, threads: int | None = None) -> list[tuple[str, dict]]:
    """Per model: median wall and CPU seconds of each tool's check_model, how many checks each
    ran (not skipped) and, for cvdoctor, how many distinct problems (recipes) those checks can
    name. The tools alternate within each round, so a load spike from other jobs on the machine
    hits both alike; CPU time (this process, all its threads) is the steadier figure."""
    import torch

    import cvdoctor
    import peer_fixtures
    import torchtest2
    from cvdoctor.registry import all_checks

    if threads:
        torch.set_num_threads(threads)
    recipes = {spec.id: set(spec.recipes) for spec in all_checks("model")}

    rows = []
    for name, build in peer_fixtures.healthy().items():
        wall = {"cvdoctor": [], "torchtest2": []}
        cpu = {"cvdoctor": [], "torchtest2": []}
        ran = {}
        for i in range(repeats + 1):  # the first round warms both up and is not counted
            order = ("cvdoctor", "torchtest2") if i % 2 else ("torchtest2", "cvdoctor")
            for tool in order:
                torch.manual_seed(0)
                s = build()
                start, cpu0 = time.perf_counter(), time.process_time()
                with contextlib.redirect_stdout(io.StringIO()), \
                        contextlib.redirect_stderr(io.StringIO()):
                    if tool == "cvdoctor":
                        report = cvdoctor.check_model(s.model, (s.inputs, s.targets),
                                                      loss_fn=s.loss_fn, optimizer=s.optimizer,
                                                      num_classes=s.num_classes)
                        ids = {f.check for f in report.findings if f.status != "skip"}
                        named = set().union(*(recipes[i] for i in ids))
                        ran[tool] = f"{len(ids)} ({len(named)} problems)"
                    else:
                        report = torchtest2.check_model(s.model, s.inputs, s.targets,
                                                        loss_fn=s.loss_fn, optimizer=s.optimizer)
                        ran[tool] = sum(str(r.status) != "SKIP" for r in report.results)
                if i:
                    wall[tool].append(time.perf_counter() - start)
                    cpu[tool].append(time.process_time() - cpu0)
        rows.append((name, {t: (statistics.median(wall[t]), statistics.median(cpu[t]), ran[t])
                            for t in wall}))
        print(f"  timed {name}", file=sys.stderr, flush=True)
    return rows


# --- tables ------------------------------------------------------------------------------------

def cell(r: dict, kind: str) -> str:
    v = r["verdict"]
    if v in ("FAIL", "warn", "crash", "error"):
        label = v if v != "FAIL" else "**caught**" if kind == "broken" else "**FAIL**"
        which = ", ".join(r["which"][:3])
        return f"{label} ({which})" if which else label
    return v


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", nargs=3, metavar=("TOOL", "KIND", "NAME"))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--skip-timing", action="store_true")
    ap.add_argument("--skip-detection", action="store_true")
    ap.add_argument("--json", help="also write every raw result to this file")
    args = ap.parse_args(argv)
    if args.child:
        child(*args.child, args.threads)
        return 0

    import peer_fixtures

    load = os.getloadavg()[0]
    versions = {}
    for mod in ("torchtest2", "neural_net_checklist", "torchtest"):
        try:
            from importlib.metadata import version
            versions[mod] = version(mod.replace("_", "-"))
        except Exception:  # noqa: BLE001
            versions[mod] = "not installed"
    print(f"Peers: torchtest2 {versions['torchtest2']}, neural-net-checklist "
          f"{versions['neural_net_checklist']}, torchtest {versions['torchtest']}. "
          f"{os.cpu_count()} CPUs, load average {load:.1f} at start, "
          f"threads={args.threads or 'torch default'}.\n")
    raw = {}
    kinds = () if args.skip_detection else (("broken", list(peer_fixtures.BROKEN)),
                                            ("healthy", list(peer_fixtures.healthy())))
    for kind, names in kinds:
        title = ("What each tool catches on the broken setups" if kind == "broken" else
                 "False alarms on healthy models (anything but '-' is a false alarm)")
        print(f"### {title}\n")
        print("| setup | " + " | ".join(TOOLS) + " |")
        print("| --- |" + " --- |" * len(TOOLS))
        for name in names:
            row = {t: detect(t, kind, name, args.threads, args.timeout) for t in TOOLS}
            raw[f"{kind}: {name}"] = row
            print(f"| {name} | " + " | ".join(cell(row[t], kind) for t in TOOLS) + " |", flush=True)
        print()
    if not args.skip_timing:
        print(f"### check_model time (median of {args.repeats}, after 1 warm-up; tools "
              f"alternate)\n")
        print("| model | cvdoctor wall s | torchtest2 wall s | wall ratio | cvdoctor CPU s | "
              "torchtest2 CPU s | CPU ratio | checks run: cvdoctor (problems they name) / torchtest2 |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        ratios = []
        for name, t in time_tools(args.repeats, args.threads):
            (cw, cc, cn), (tw, tc, tn) = t["cvdoctor"], t["torchtest2"]
            ratios.append((cw / tw, cc / tc))
            print(f"| {name} | {cw:.2f} | {tw:.2f} | {cw / tw:.2f} | {cc:.2f} | {tc:.2f} | "
                  f"{cc / tc:.2f} | {cn} / {tn} |", flush=True)
        print(f"\nMedian ratio cvdoctor / torchtest2 over the models: wall "
              f"{statistics.median(r[0] for r in ratios):.2f}, CPU "
              f"{statistics.median(r[1] for r in ratios):.2f}.")
        print(f"Load average at the end: {os.getloadavg()[0]:.1f}.")
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
