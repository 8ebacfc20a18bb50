"""What `--ddp 2` adds to `cvdoctor model`, against running DDP yourself with torchrun.

    .venv/bin/python bench/bench_ddp.py [--repeats 3] [--model examples/cifar10_cnn.py]

Each measurement is a fresh process, as a user runs it, best of `--repeats`:

- `cvdoctor model FILE`            the single-process model checks;
- `cvdoctor model FILE --ddp 2`    the same plus the model.ddp* checks (2 ranks, gloo, CPU);
- `torchrun --nproc_per_node 2`    the peer: a minimal script that does what the ranks do
                                   (init_process_group, build the model from FILE, wrap it in
                                   DDP, two forward/backward/optimizer steps) and nothing else;
- `--ddp 2` again in one process   the second run of the model.ddp* checks in a process that
                                   already ran them (pytest, notebooks): the fork server is warm.

The target: `--ddp 2` within a few seconds of the single-process checks. Prints a Markdown table
and the load average (figures depend on the machine's load).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEER = """
import datetime, importlib.util, os, sys
import torch, torch.distributed as dist
from torch import nn
dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
spec = importlib.util.spec_from_file_location("user_model", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
model = nn.parallel.DistributedDataParallel(mod.build_model())
x, y = mod.get_batch()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
for _ in range(2):
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
dist.destroy_process_group()
"""
WARM = """
import sys, time
from cvdoctor.api import make_context, run_context
from cvdoctor.commands import all_commands
def once():
    ctx = make_context(all_commands()["model"], sys.argv[1], {"ddp": 2})
    start = time.perf_counter()
    report = run_context("model", ctx, select=["model.ddp*"])
    assert all(f.status == "pass" for f in report.findings), report
    return time.perf_counter() - start
once()
print(min(once() for _ in range(int(sys.argv[2]))))
"""


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="examples/cifar10_cnn.py")
    args = parser.parse_args()
    py = sys.executable
    cli = [py, "-c", "from cvdoctor.cli import main; main()", "model", args.model]
    with tempfile.TemporaryDirectory() as tmp:
        peer = Path(tmp) / "peer_ddp.py"
        peer.write_text(PEER)
        runs = {
            "cvdoctor model FILE": lambda: timed(cli),
            "cvdoctor model FILE --ddp 2": lambda: timed(cli + ["--ddp", "2"]),
            "torchrun --nproc_per_node 2 (2 DDP steps, nothing checked)": lambda: timed(
                [py, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                 str(peer), str(ROOT / args.model)], {"OMP_NUM_THREADS": "1"}),
        }
        best = {}
        for _ in range(args.repeats):  # interleaved, so load changes hit every variant alike
            for name, run in runs.items():
                best[name] = min(best.get(name, float("inf")), run())
        warm = subprocess.run([py, "-c", WARM, str(ROOT / args.model), str(args.repeats)],
                              cwd=ROOT, capture_output=True, text=True, timeout=600)
        if warm.returncode != 0:
            raise SystemExit(warm.stderr)
        best["model.ddp* again in the same process (fork server warm)"] = float(warm.stdout)
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",) * 3
    print(f"{args.model}, best of {args.repeats}, {os.cpu_count()} CPUs, load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    print("| run | seconds |\n| --- | ---: |")
    for name, seconds in best.items():
        print(f"| {name} | {seconds:.2f} |")
    added = best["cvdoctor model FILE --ddp 2"] - best["cvdoctor model FILE"]
    peer_s = best["torchrun --nproc_per_node 2 (2 DDP steps, nothing checked)"]
    print(f"\n`--ddp 2` adds {added:.2f} s to the single-process checks "
          f"({added / peer_s:.2f}x a bare torchrun of the same two steps, {peer_s:.2f} s).")


if __name__ == "__main__":
    main()
