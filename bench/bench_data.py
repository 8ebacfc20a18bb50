"""`cvdoctor data`'s default checks against ultralytics' own label verification, side by side.

    .venv/bin/python bench/bench_data.py [--sizes 10000,100000] [--repeats 1] [--keep DIR]

For each size it generates a YOLO detect set (32 px JPEGs, one label file each, 90% train / 10%
val) in a temporary folder, reads every file once (so both sides start with a warm page cache),
then times, each side in its own fresh subprocess:

- cvdoctor: `cvdoctor.data.inspect_dataset(data.yaml)` (headers, label rows, duplicates/leakage,
  .cache files; no --deep), and the whole `cvdoctor data PATH --json` command (checks, report);
- ultralytics: building `YOLODataset` for train and val, i.e. its label scan and cache build
  (`verify_image_label` for every image in its ThreadPool, then writing `labels/*.cache`), run on a
  hard-linked copy of the set (it writes there) with YOLO_OFFLINE=1, YOLO_AUTOINSTALL=False and a
  temporary YOLO_CONFIG_DIR.

Who goes first alternates between repeats. Each child reports the time of the verification step alone, its own peak RSS (ru_maxrss) and the
RSS after its imports; the parent adds the process wall time. Then a small broken set (one problem
per file) shows what each side reports. Prints Markdown tables. ultralytics is imported only in
those children, never by cvdoctor.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

NAMES = ["a", "b", "c"]

CVDOCTOR_CHILD = textwrap.dedent("""
    import json, resource, sys, time
    t0 = time.perf_counter()
    from cvdoctor.data import inspect_dataset
    import_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t1 = time.perf_counter()
    result = inspect_dataset(sys.argv[1])
    t2 = time.perf_counter()
    print(json.dumps({"import_s": t1 - t0, "verify_s": t2 - t1, "import_rss_kb": import_rss,
                      "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "result": result if len(sys.argv) > 2 else None}))
""")

ULTRALYTICS_CHILD = textwrap.dedent("""
    import json, resource, sys, time
    from pathlib import Path
    t0 = time.perf_counter()
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import load_dataset_cache_file
    import_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    root = Path(sys.argv[1])
    data = {"names": dict(enumerate(%r)), "nc": %d, "channels": 3}
    t1 = time.perf_counter()
    out = {}
    for split in ("train", "val"):
        ds = YOLODataset(img_path=str(root / "images" / split), data=data, task="detect",
                         augment=False, prefix=split + ": ")
        cache = Path(ds.label_files[0]).parent.with_suffix(".cache")
        out[split] = {"labels": len(ds.labels), "cache": str(cache)}
    t2 = time.perf_counter()
    if len(sys.argv) > 2:
        for split in out:
            c = load_dataset_cache_file(Path(out[split]["cache"]))
            out[split]["msgs"] = c["msgs"]
            out[split]["results"] = [int(x) for x in c["results"]]
    print(json.dumps({"import_s": t1 - t0, "verify_s": t2 - t1, "import_rss_kb": import_rss,
                      "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "result": out}))
""") % (NAMES, len(NAMES))


def jpeg_bytes(rng: random.Random, size: int = 32) -> bytes:
    import io

    from PIL import Image
    im = Image.frombytes("RGB", (size, size), rng.randbytes(size * size * 3))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=80)
    return buf.getvalue()


def box(rng: random.Random) -> str:
    w, h = rng.uniform(0.05, 0.4), rng.uniform(0.05, 0.4)
    return (f"{rng.randrange(len(NAMES))} {rng.uniform(w / 2, 1 - w / 2):.6f} "
            f"{rng.uniform(h / 2, 1 - h / 2):.6f} {w:.6f} {h:.6f}")


def write_yaml(root: Path) -> Path:
    (root / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [%s]\n"
                                    % ", ".join(NAMES))
    return root / "data.yaml"


def generate(root: Path, n: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    n_val = max(1, n // 10)
    for split, count in (("train", n - n_val), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            name = f"{split}_{i:06d}"
            (root / "images" / split / f"{name}.jpg").write_bytes(jpeg_bytes(rng))
            rows = [box(rng) for _ in range(rng.randint(1, 3))]
            (root / "labels" / split / f"{name}.txt").write_text("\n".join(rows) + "\n")
    return write_yaml(root)


def warm(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(folder, name), "rb") as fh:
                fh.read()


def child_env(config_dir: Path) -> dict[str, str]:
    return {**os.environ, "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "False",
            "YOLO_CONFIG_DIR": str(config_dir), "YOLO_VERBOSE": "False", "NO_COLOR": "1",
            "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


def run_child(code: str, target: Path, env: dict, want_result: bool = False,
              timeout: float = 1800) -> dict:
    args = [sys.executable, "-c", code, str(target)] + (["result"] if want_result else [])
    start = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["wall_s"] = wall
    out["log"] = proc.stderr
    return out


def run_cli(target: Path, env: dict, timeout: float = 1800) -> dict:
    """`cvdoctor data TARGET --json` as a user runs it: wall time and the process's peak RSS."""
    script = Path(sys.executable).with_name("cvdoctor")
    cmd = [str(script)] if script.exists() else \
        [sys.executable, "-c", "from cvdoctor.cli import main; main()"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd + ["data", str(target), "--json"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        raise RuntimeError(f"cvdoctor data exited {code}")
    return {"wall_s": wall, "peak_rss_kb": usage.ru_maxrss}


def linked_copy(src: Path, dst: Path) -> Path:
    if dst.exists():
        shutil.rmtree(dst)
    subprocess.run(["cp", "-al", str(src), str(dst)], check=True)
    return dst


def time_size(work: Path, n: int, repeats: int) -> dict:
    root = work / f"set{n}"
    t = time.perf_counter()
    yaml_path = generate(root, n)
    gen_s = time.perf_counter() - t
    warm(root)
    cfg = work / "yolo_cfg"
    cfg.mkdir(exist_ok=True)
    env = child_env(cfg)
    os.sync()  # the generated files' write-back must not land inside the first timing

    def ours():
        rows["cvdoctor"].append(run_child(CVDOCTOR_CHILD, yaml_path, env))
        rows["cli"].append(run_cli(yaml_path, env))

    def theirs():
        copy = linked_copy(root, work / f"copy{n}")
        os.sync()
        rows["ultralytics"].append(run_child(ULTRALYTICS_CHILD, copy, env))
        shutil.rmtree(copy)

    rows = {"cvdoctor": [], "ultralytics": [], "cli": []}
    for i in range(repeats):  # alternate who goes first
        for side in ((ours, theirs) if i % 2 == 0 else (theirs, ours)):
            side()
    shutil.rmtree(root)
    return {"n": n, "generate_s": gen_s, "runs": rows}


# --- the broken set ----------------------------------------------------------------------------

def exif_jpeg(rng: random.Random) -> bytes:
    import io

    from PIL import Image
    im = Image.frombytes("RGB", (64, 48), rng.randbytes(64 * 48 * 3))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif.tobytes())
    return buf.getvalue()


PROBLEMS = [
    # (key, what, image file it touches)
    ("class", "class id past nc (7 with 3 names)", "train/p_class.jpg"),
    ("pixels", "pixel coordinates instead of 0-1", "train/p_pixels.jpg"),
    ("negative", "negative coordinate", "train/p_negative.jpg"),
    ("columns", "6 columns in a detect row", "train/p_columns.jpg"),
    ("zero", "zero-width box", "train/p_zero.jpg"),
    ("frame", "box past the frame (values inside 0-1)", "train/p_frame.jpg"),
    ("dup_row", "duplicate label row", "train/p_duprow.jpg"),
    ("truncated", "truncated JPEG (no end marker)", "train/p_trunc.jpg"),
    ("trailing", "JPEG with bytes after its end marker", "train/p_trailing.jpg"),
    ("lfs", "Git LFS pointer saved as .jpg", "train/p_lfs.jpg"),
    ("tiny", "8x8 px image", "train/p_tiny.jpg"),
    ("exif", "EXIF-rotated JPEG (orientation 6)", "train/p_exif.jpg"),
    ("missing", "image without a label file", "train/p_missing.jpg"),
    ("beside", "label beside its image, not in labels/", "train/p_beside.jpg"),
    ("orphan", "label file without an image", "train/p_orphan.jpg"),
    ("gif", ".gif in the images folder", "train/p_anim.gif"),
    ("dup_image", "same image twice in train", "train/p_copy.jpg"),
    ("leak", "val image identical to a train image", "val/p_leak.jpg"),
]


def build_broken(root: Path) -> Path:
    from PIL import Image
    rng = random.Random(7)
    img = lambda rel: root / "images" / rel  # noqa: E731
    lbl = lambda rel: (root / "labels" / rel).with_suffix(".txt")  # noqa: E731
    for split, count in (("train", 12), ("val", 4)):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(count):
            img(f"{split}/ok{i}.jpg").write_bytes(jpeg_bytes(rng, 64))
            lbl(f"{split}/ok{i}.jpg").write_text(f"{i % 3} 0.5 0.5 0.2 0.2\n")
    rows = {"class": "7 0.5 0.5 0.2 0.2", "pixels": "0 320 240 64 48",
            "negative": "0 -0.2 0.5 0.2 0.2", "columns": "0 0.5 0.5 0.2 0.2 0.9",
            "zero": "0 0.5 0.5 0 0.2", "frame": "0 0.95 0.5 0.3 0.2",
            "dup_row": "0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2"}
    for key, _, rel in PROBLEMS:
        if key in rows:
            img(rel).write_bytes(jpeg_bytes(rng, 64))
            lbl(rel).write_text(rows[key] + "\n")
    good = jpeg_bytes(rng, 64)
    img("train/p_trunc.jpg").write_bytes(good[: len(good) // 2])
    img("train/p_trailing.jpg").write_bytes(good + b"\0" * 32)
    img("train/p_lfs.jpg").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0\n")
    Image.new("RGB", (8, 8), (9, 9, 9)).save(img("train/p_tiny.jpg"))
    img("train/p_exif.jpg").write_bytes(exif_jpeg(rng))
    img("train/p_missing.jpg").write_bytes(jpeg_bytes(rng, 64))
    img("train/p_beside.jpg").write_bytes(jpeg_bytes(rng, 64))
    (root / "images" / "train" / "p_beside.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    lbl("train/p_orphan.jpg").write_text("0 0.5 0.5 0.2 0.2\n")
    Image.new("RGB", (64, 64), (1, 2, 3)).save(img("train/p_anim.gif"))
    img("train/p_copy.jpg").write_bytes(img("train/ok1.jpg").read_bytes())
    img("val/p_leak.jpg").write_bytes(img("train/ok2.jpg").read_bytes())
    for rel in ("train/p_trunc.jpg", "train/p_trailing.jpg", "train/p_lfs.jpg",
                "train/p_tiny.jpg", "train/p_exif.jpg", "train/p_copy.jpg", "val/p_leak.jpg"):
        lbl(rel).write_text("0 0.5 0.5 0.2 0.2\n")
    return write_yaml(root)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "missing"


def compare_broken(work: Path) -> list[tuple[str, str, str]]:
    root = work / "broken"
    yaml_path = build_broken(root)
    cfg = work / "yolo_cfg"
    cfg.mkdir(exist_ok=True)
    env = child_env(cfg)
    ours = run_child(CVDOCTOR_CHILD, yaml_path, env, want_result=True)["result"]
    copy = linked_copy(root, work / "broken_copy")
    before = {rel: digest(copy / "images" / rel) for _, _, rel in PROBLEMS}
    theirs = run_child(ULTRALYTICS_CHILD, copy, env, want_result=True)["result"]
    msgs = [m for split in theirs.values() for m in split.get("msgs", [])]
    results = {split: v.get("results") for split, v in theirs.items()}

    def found_by_us(key: str, rel: str) -> str:
        name = Path(rel).stem
        issues = ours["issues"]
        hits = sorted(code for code, issue in issues.items()
                      if any(name in json.dumps(e) for e in issue["examples"]))
        if key == "orphan":
            hits = [c for c in hits if c == "label.orphan"]
        leak = ours["content"]["leakage"]
        dup = ours["content"]["duplicates"]
        if key == "leak" and any(name in json.dumps(v) for v in leak.values()):
            hits.append("leakage train/val")
        if key == "dup_image" and any(name in json.dumps(v) for v in dup.values()):
            hits.append("duplicate in train")
        return ", ".join(f"`{h}`" for h in hits) or "not reported"

    def found_by_them(key: str, rel: str) -> str:
        name = Path(rel).name
        said = [m.split(": ", 2)[-1] for m in msgs if name in m]
        changed = digest(copy / "images" / rel) != before[rel]
        parts = []
        if said:
            parts.append("; ".join(sorted(set(s[:70] for s in said))))
        if changed:
            parts.append("**rewrote the file**")
        if not parts and key in ("missing", "beside"):
            parts.append("counted as a background (file not named)")
        return " / ".join(parts) or "not reported"

    table = [(what, found_by_them(key, rel), found_by_us(key, rel))
             for key, what, rel in PROBLEMS]
    table.append(("(scan summary)", f"found/missing/empty/corrupt/total {results}",
                  f"{len(ours['issues'])} problem kinds"))
    return table


def fmt_rows(sizes: list[dict]) -> str:
    lines = ["| label files | tool | verification s | process wall s | peak RSS MiB | "
             "RSS after imports MiB |", "| ---: | --- | ---: | ---: | ---: | ---: |"]
    for entry in sizes:
        for tool in ("cvdoctor", "ultralytics"):
            runs = entry["runs"][tool]
            best = min(runs, key=lambda r: r["verify_s"])
            lines.append(f"| {entry['n']:,} | {tool} | {best['verify_s']:.2f} | "
                         f"{best['wall_s']:.2f} | {best['peak_rss_kb'] / 1024:.0f} | "
                         f"{best['import_rss_kb'] / 1024:.0f} |")
        cli = min(entry["runs"]["cli"], key=lambda r: r["wall_s"])
        lines.append(f"| {entry['n']:,} | `cvdoctor data --json` (whole command) | - | "
                     f"{cli['wall_s']:.2f} | {cli['peak_rss_kb'] / 1024:.0f} | - |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--skip-broken", action="store_true")
    ap.add_argument("--keep", help="work in this folder and keep it (default: a temporary one)")
    args = ap.parse_args(argv)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="cvd_bench_data_"))
    work.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    try:
        sizes = []
        for n in (int(s) for s in args.sizes.split(",") if s):
            print(f"generating and timing {n:,} images ...", file=sys.stderr, flush=True)
            sizes.append(time_size(work, n, args.repeats))
        print(f"Load average before: {load:.2f}, after: {os.getloadavg()[0]:.2f}; "
              f"{os.cpu_count()} CPUs; best of {args.repeats}.\n")
        print(fmt_rows(sizes))
        for entry in sizes:
            c = min(r["verify_s"] for r in entry["runs"]["cvdoctor"])
            u = min(r["verify_s"] for r in entry["runs"]["ultralytics"])
            print(f"\n{entry['n']:,} images: cvdoctor / ultralytics verification time = "
                  f"{c / u:.2f}")
        if not args.skip_broken:
            print("\n| problem (one file each) | ultralytics' label scan | cvdoctor (default) |")
            print("| --- | --- | --- |")
            for what, theirs, ours in compare_broken(work):
                print(f"| {what} | {theirs.replace('|', '/')} | {ours} |")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
