"""How fast `cvdoctor explain` is on one message and on a long training log (issue 11: under
0.3 s for a message, a 10 MB log in under a second, matching linear in the log's size).

    .venv/bin/python bench/bench_explain.py [--mb 9] [--repeats 5] [--old REV] [--json]

Generates a training log of --mb megabytes (tqdm bars redrawn with `\\r`, per-epoch summaries,
warnings, a DataLoader and a NaN line in the middle) ending in one CUDA out-of-memory traceback,
then times, as the user runs them, each in a fresh process:

- `cvdoctor explain "<one message>"`, against `python -c pass` (the interpreter alone) and
  `cvdoctor --version` (the CLI's own start-up);
- `cvdoctor explain --file train.log`, against `python -c "open(log).read()"` (reading the file);
- in-process `match_text` on logs of 1x, 2x and 4x the size (linear: the time per MB stays flat).

`--old REV` also times the matcher of an older commit (`git show REV:cvdoctor/catalog.py`) on the
same log and recipes, in-process (the matcher before issue 11 spent about 34 s on an 8 MB log).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PY = sys.executable

MESSAGE = ("RuntimeError: Error(s) in loading state_dict for ResNet:\n\tsize mismatch for "
           "fc.weight: copying a param with shape torch.Size([1000, 512]) from checkpoint, the "
           "shape in current model is torch.Size([10, 512]).")
OOM_TAIL = """Traceback (most recent call last):
  File "/home/alice/proj/train.py", line 214, in <module>
    main()
  File "/home/alice/proj/train.py", line 188, in main
    loss = train_one_epoch(model, loader, optimizer, scaler, epoch)
  File "/home/alice/proj/engine.py", line 41, in train_one_epoch
    outputs = model(images)
  File "/opt/conda/lib/python3.10/site-packages/torch/nn/modules/module.py", line 1751, in _call_impl
    return forward_call(*args, **kwargs)
  File "/opt/conda/lib/python3.10/site-packages/torchvision/models/resnet.py", line 285, in forward
    return self._forward_impl(x)
torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.53 GiB. GPU 0 has a total capacity of 23.55 GiB of which 1.02 GiB is free. Of the allocated memory 21.90 GiB is allocated by PyTorch, and 120.40 MiB is reserved by PyTorch but unallocated. If reserved but unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.
"""


def training_log(mb: float, seed: int = 0) -> str:
    rng = random.Random(seed)
    parts, size, epoch = [], 0, 0
    target = int(mb * 1_000_000)
    while size < target:
        epoch += 1
        for it in range(0, 2000, 7):
            bar = "█" * (it * 20 // 2000)
            s = (f"\rEpoch {epoch}/300: {it * 100 // 2000:3d}%|{bar:20s}| {it}/2000 "
                 f"[01:{it % 60:02d}<02:11, 15.2it/s, loss={rng.random():.4f}, lr=0.0010]")
            parts.append(s)
            size += len(s)
        s = (f"\nEpoch {epoch}: train_loss={rng.random():.4f} val_loss={rng.random():.4f} "
             f"acc={rng.random():.3f} time=123.4s\n")
        if epoch % 40 == 0:
            s += ("/opt/conda/lib/python3.10/site-packages/torch/optim/lr_scheduler.py:139: "
                  "UserWarning: Detected call of `lr_scheduler.step()` before "
                  "`optimizer.step()`.\n")
        if epoch == 60:
            s += "WARNING: DataLoader worker (pid 4121) exited unexpectedly; restarting epoch\n"
            s += "Epoch 60: train_loss=nan (skipped step)\n"
        parts.append(s)
        size += len(s)
    return "".join(parts) + OOM_TAIL


def wall(argv: list[str], repeats: int, **kw) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, **kw)
        times.append(time.perf_counter() - start)
        assert proc.returncode in (0, 1), proc.stderr.decode()[-500:]
    return times


def old_matcher(rev: str):
    """match_text of `rev`'s catalog.py, loaded as a separate module (same recipes)."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:cvdoctor/catalog.py"],
                            capture_output=True, text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "old_catalog.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_catalog", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_catalog"] = module  # dataclasses look their module up while the class builds
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=9.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--old", metavar="REV", help="also time the matcher of this git revision")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from cvdoctor.catalog import load_catalog, match_text

    work = Path(tempfile.mkdtemp(prefix="bench_explain_"))
    log = work / "train.log"
    text = training_log(args.mb)
    log.write_text(text, encoding="utf-8")
    size_mb = log.stat().st_size / 1e6
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cvdoctor = [PY, "-m", "cvdoctor.cli"]

    med = statistics.median
    python_s = med(wall([PY, "-c", "pass"], args.repeats, env=env))
    version_s = med(wall([*cvdoctor, "--version"], args.repeats, env=env))
    message_s = med(wall([*cvdoctor, "explain", MESSAGE], args.repeats, env=env))
    read_s = med(wall([PY, "-c", f"open({str(log)!r}, encoding='utf-8').read()"], args.repeats,
                      env=env))
    file_s = med(wall([*cvdoctor, "explain", "--file", str(log)], args.repeats, env=env))
    answer = subprocess.run([*cvdoctor, "explain", "--file", str(log)], capture_output=True,
                            text=True, env=env).stdout.splitlines()[:3]

    catalog = load_catalog()
    match_text("RuntimeError: warm-up", catalog)
    scaling = {}
    for factor in (1, 2, 4):
        big = text[:-len(OOM_TAIL)] * factor + OOM_TAIL
        start = time.perf_counter()
        best = match_text(big, catalog)[0].recipe
        scaling[factor] = (len(big) / 1e6, time.perf_counter() - start, best)

    # A log with no carriage return at all (plain lines, no progress bars): each line lookup
    # used to search to the end of the text for a "\r" (120 s on 21 MB of assert lines).
    assert_line = ("/pytorch/aten/src/ATen/native/cuda/Loss.cu:240: nll_loss_forward_reduce_"
                   "cuda_kernel_2d: block: [0,0,0], thread: [5,0,0] Assertion `t >= 0 && t < "
                   "n_classes` failed.\n")
    plain = {}
    for factor in (1, 2, 4):
        big = assert_line * int(factor * len(text) / len(assert_line)) + OOM_TAIL
        start = time.perf_counter()
        best = match_text(big, catalog)[0].recipe
        plain[factor] = (len(big) / 1e6, time.perf_counter() - start, best)

    summary = {
        "log_mb": round(size_mb, 2),
        "python_startup_s": round(python_s, 3), "cvdoctor_version_s": round(version_s, 3),
        "explain_message_s": round(message_s, 3),
        "read_file_s": round(read_s, 3), "explain_file_s": round(file_s, 3),
        "explain_file_answer": answer,
        "in_process": [{"mb": round(mb, 1), "s": round(s, 4), "ms_per_mb": round(1000 * s / mb, 2),
                        "first": best} for mb, s, best in scaling.values()],
        "in_process_no_cr": [{"mb": round(mb, 1), "s": round(s, 4),
                              "ms_per_mb": round(1000 * s / mb, 2), "first": best}
                             for mb, s, best in plain.values()],
    }
    if args.old:
        old = old_matcher(args.old)
        start = time.perf_counter()
        old_best = old.match_text(text, catalog)
        summary["old"] = {"rev": args.old, "s": round(time.perf_counter() - start, 2),
                          "first": old_best[0].recipe if old_best else None}

    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"log: {size_mb:.1f} MB training log ending in one CUDA OOM traceback; medians of "
          f"{args.repeats} fresh processes")
    print(f"  python -c pass                 {python_s:6.3f} s   (the interpreter alone)")
    print(f"  cvdoctor --version             {version_s:6.3f} s   (the CLI's start-up)")
    print(f"  cvdoctor explain MESSAGE       {message_s:6.3f} s   (target < 0.3 s)")
    print(f"  python: read the log           {read_s:6.3f} s")
    print(f"  cvdoctor explain --file LOG    {file_s:6.3f} s   (target < 1 s for 10 MB)")
    print(f"    -> {' | '.join(answer)}")
    print("  in-process match_text (linear: ms per MB stays flat):")
    for row in summary["in_process"]:
        print(f"    {row['mb']:6.1f} MB  {row['s']:7.4f} s  {row['ms_per_mb']:6.2f} ms/MB  "
              f"first: {row['first']}")
    print("  the same on a log of plain lines without any carriage return:")
    for row in summary["in_process_no_cr"]:
        print(f"    {row['mb']:6.1f} MB  {row['s']:7.4f} s  {row['ms_per_mb']:6.2f} ms/MB  "
              f"first: {row['first']}")
    if args.old:
        o = summary["old"]
        print(f"  matcher of {o['rev']} on the same log: {o['s']:.2f} s, first: {o['first']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
