"""The contained ultralytics run behind the YOLO checks: ``python -m cvdoctor.yolo.probe``.

Reads one JSON request on stdin (see `cvdoctor.yolo.facts.probe_request`) and prints one JSON
object. In order, each stage recorded even when a later one fails:

1. containment (`cvdoctor.yolo.contain`), then ultralytics is imported;
2. the model as the user builds it: a model yaml, a `.pt`, or the `YOLO(...)` object a Python file
   builds (the file is executed here, never in cvdoctor's process);
3. the dataset as ultralytics resolves it (`check_det_dataset` on the user's data.yaml);
4. a sample of training images (flagged label files first, found by a cheap scan of class ids)
   copied with their labels into a temporary mirror: ultralytics' caches and JPEG repairs land
   there, never beside the user's files;
5. the trainer ultralytics' own ``model.train()`` would build, with the user's settings, its
   augmentations off and the mirror as data; `_setup_train()` (freezing, imgsz rounding,
   dataset and loader) then one batch through its collate, `preprocess_batch`, the model's own
   loss and a backward pass: loss terms, gradients reaching the head, frozen parameters, bytes
   saved for backward per image, and (on a CUDA device) the same forward under fp16 autocast;
6. for a checkpoint: where each dataset class's head row came from (by name, by position, new).
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

LABEL_SCAN_FILES = 20_000
LABEL_SCAN_SECONDS = 5.0
MAX_COPY_BYTES = 64 * 1024 ** 2  # per image: a sample, not a dataset
LOG_LINES = 300
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Hints a Python file may set at module level (or pass to .train()) that the trainer reads.
TRAIN_KEYS = ("data", "imgsz", "batch", "workers", "freeze", "epochs", "device", "amp",
              "cls_remap", "single_cls", "classes", "optimizer", "lr0", "rect", "cache",
              "fraction", "multi_scale")
AUG_OFF = dict(mosaic=0.0, mixup=0.0, cutmix=0.0, copy_paste=0.0, hsv_h=0.0, hsv_s=0.0,
               hsv_v=0.0, degrees=0.0, translate=0.0, scale=0.0, shear=0.0, perspective=0.0,
               fliplr=0.0, flipud=0.0, bgr=0.0, close_mosaic=0, auto_augment=None, erasing=0.0)


def _error(exc: BaseException, limit: int = 8) -> dict[str, Any]:
    return {"type": type(exc).__name__, "message": str(exc).strip()[:2000],
            "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__,
                                                            limit=-limit))[-6000:]}


class LogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[dict[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.lines) < LOG_LINES:
            try:
                text = record.getMessage()
            except Exception:  # noqa: BLE001
                text = str(record.msg)
            text = ANSI.sub("", text)
            self.lines.append({"level": record.levelname, "text": text[:600]})


def _capture_logs() -> LogCapture:
    from ultralytics.utils import LOGGER

    handler = LogCapture()
    for h in list(LOGGER.handlers):
        LOGGER.removeHandler(h)
    LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.INFO)
    LOGGER.propagate = False
    return handler


# --- 2. the model ---------------------------------------------------------------------------

def _plain(value: Any, depth: int = 0) -> Any:
    """A JSON-safe copy of a settings value (numbers, strings, lists, dicts)."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)) and depth < 3:
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, dict) and depth < 3:
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    return repr(value)[:200]


def _exec_file(path: str) -> dict[str, Any]:
    import types

    source = Path(path).read_text(encoding="utf-8")
    module = types.ModuleType("cvdoctor_yolo_target")
    module.__file__ = str(Path(path).resolve())
    sys.modules[module.__name__] = module
    sys.path.insert(0, str(Path(path).resolve().parent))
    exec(compile(source, path, "exec"), module.__dict__)  # noqa: S102 - the user's own file
    return module.__dict__


def _find_yolo(ns: dict[str, Any], attr: str | None):
    from ultralytics.engine.model import Model

    if attr:
        obj = ns.get(attr)
        if callable(obj) and not isinstance(obj, Model):
            obj = obj()
        if not isinstance(obj, Model):
            raise LookupError(f"{attr} is a {type(obj).__name__}, not an ultralytics YOLO object")
        return obj, attr
    if isinstance(ns.get("model"), Model):
        return ns["model"], "model"
    found = [(k, v) for k, v in ns.items() if isinstance(v, Model) and not k.startswith("_")]
    if len(found) == 1:
        return found[0][1], found[0][0]
    if len(found) > 1:
        raise LookupError(f"the file builds {len(found)} YOLO objects "
                          f"({', '.join(k for k, _ in found)}): pick one with --model NAME")
    for name in ("build_model", "get_model", "create_model"):
        if callable(ns.get(name)):
            obj = ns[name]()
            if isinstance(obj, Model):
                return obj, f"{name}()"
    raise LookupError("the file builds no YOLO(...) object at module level (looked for `model`, "
                      "any YOLO instance, build_model()/get_model())")


def build_model(spec: dict[str, Any], out: dict[str, Any]):
    from ultralytics import YOLO

    kind, value = spec["model"]["kind"], spec["model"]["value"]
    info: dict[str, Any] = {"kind": kind}
    out["model"] = info
    hints: dict[str, Any] = {}
    if kind == "file":
        ns = _exec_file(value)
        yolo, found_as = _find_yolo(ns, spec["model"].get("attr"))
        info["found_as"] = found_as
        for key in TRAIN_KEYS:
            v = ns.get(key)
            if v is not None and not callable(v) and isinstance(v, (int, float, str, list, tuple,
                                                                     bool)):
                hints[key] = _plain(v)
        for key, ref in (spec.get("train_kwargs") or {}).items():
            if key in hints:
                continue
            if "literal" in ref:
                hints[key] = ref["literal"]
            elif "name" in ref and isinstance(ns.get(ref["name"]), (int, float, str, list, tuple,
                                                                   bool)):
                hints[key] = _plain(ns[ref["name"]])
        out["file_hints"] = hints
        user_frozen = [n for n, p in yolo.model.named_parameters()
                       if not p.requires_grad and ".dfl" not in n]
        info["user_frozen"] = user_frozen[:50]
        info["user_frozen_count"] = len(user_frozen)
        info["user_frozen_layers"] = sorted({int(n.split(".")[1]) for n in user_frozen
                                             if n.count(".") > 1 and n.split(".")[1].isdigit()})
    else:
        yolo = YOLO(value)
    model = yolo.model
    yaml_cfg = getattr(model, "yaml", None) if isinstance(getattr(model, "yaml", None), dict) \
        else {}
    names = getattr(model, "names", None)
    yaml_file = yaml_cfg.get("yaml_file")
    info.update(
        user_yaml=_user_yaml(yaml_file),
        task=yolo.task, cls=type(model).__name__,
        names={str(k): str(v) for k, v in names.items()} if isinstance(names, dict) else None,
        nc=len(names) if isinstance(names, dict) else None,
        yaml_nc=yaml_cfg.get("nc"), yaml_file=yaml_cfg.get("yaml_file"),
        stride_max=int(model.stride.max()) if hasattr(model, "stride") else None,
        params=sum(p.numel() for p in model.parameters()),
        from_checkpoint=bool(yolo.ckpt), ckpt_path=str(yolo.ckpt_path) if yolo.ckpt_path else None,
        overrides=_plain(dict(yolo.overrides)),
        placeholder_names=isinstance(names, dict) and all(str(k) == str(v)
                                                          for k, v in names.items()),
    )
    return yolo, hints


def _user_yaml(yaml_file: Any) -> bool:
    """A model yaml of the user's own (its nc is their intent), not one of ultralytics'."""
    from ultralytics.utils import ROOT

    if not isinstance(yaml_file, str):
        return False
    p = Path(yaml_file)
    try:
        return p.is_file() and Path(ROOT).resolve() not in p.resolve().parents
    except OSError:
        return False


# --- 3/4. the dataset and the sample ----------------------------------------------------------

def resolve_data(data_path: str, out: dict[str, Any]) -> dict[str, Any] | None:
    from ultralytics.data.utils import check_det_dataset

    info: dict[str, Any] = {"yaml": data_path}
    out["data"] = info
    try:
        data = check_det_dataset(data_path)
    except Exception as exc:  # noqa: BLE001 - ultralytics' own refusal is the finding
        info["error"] = _error(exc, 4)
        return None
    names = data.get("names") or {}
    info.update(ok=True, nc=data.get("nc"), names={str(k): str(v) for k, v in names.items()},
                train=_plain(data.get("train")), val=_plain(data.get("val")),
                path=str(data.get("path")), channels=data.get("channels"))
    return data


def _list_images(entries: Any) -> list[str]:
    from ultralytics.data.utils import IMG_FORMATS

    out: list[str] = []
    for entry in entries if isinstance(entries, list) else [entries]:
        p = Path(str(entry))
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for f in sorted(files):
                    if not f.startswith(".") and f.rsplit(".", 1)[-1].lower() in IMG_FORMATS:
                        out.append(os.path.join(root, f))
        elif p.is_file() and p.suffix.lower() == ".txt":
            parent = str(p.parent) + os.sep
            for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
                line = line.strip()
                if line and line.rsplit(".", 1)[-1].lower() in IMG_FORMATS:
                    out.append(parent + line[2:] if line.startswith("./") else line)
        elif p.is_file():
            out.append(str(p))
    return out


def _class_ids(text: str) -> list[tuple[int, str]]:
    """(line number, first token) of every label row."""
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if parts:
            rows.append((i, parts[0]))
    return rows


def pick_sample(data: dict[str, Any], k: int, out: dict[str, Any]) -> list[tuple[str, str | None]]:
    """Up to k (image, label file or None): images with out-of-range class ids first (so the step
    shows what ultralytics does with them), then labelled images, then the rest."""
    from ultralytics.data.utils import img2label_paths

    images = _list_images(data.get("train"))
    labels = img2label_paths(images)
    nc = int(data.get("nc") or 0)
    flagged, labelled, empty, unlabelled = [], [], [], []
    start = time.perf_counter()
    scanned = 0
    bad_rows: list[dict[str, Any]] = []
    bad_files = 0
    cut = False
    for img, lab in zip(images, labels):
        if cut or scanned >= LABEL_SCAN_FILES or \
                time.perf_counter() - start > LABEL_SCAN_SECONDS:
            cut = True
            if os.path.isfile(lab):
                labelled.append((img, lab))
            else:
                unlabelled.append((img, None))
            continue
        try:
            text = Path(lab).read_text(encoding="utf-8", errors="replace")
        except OSError:
            unlabelled.append((img, None))
            continue
        scanned += 1
        bad = False
        for line_no, token in _class_ids(text):
            try:
                value = float(token)
            except ValueError:
                value = math.nan
            if not (value == int(value) if math.isfinite(value) else False) or \
                    not 0 <= value < nc:
                bad = True
                if len(bad_rows) < 20:
                    bad_rows.append({"file": lab, "line": line_no, "class": token})
        if bad:
            bad_files += 1
            flagged.append((img, lab))
        elif text.strip():
            labelled.append((img, lab))
        else:
            empty.append((img, lab))
    chosen = flagged[: max(1, k // 2)] if flagged else []
    for pool in (labelled, empty, unlabelled, flagged):
        for item in pool:
            if len(chosen) >= k:
                break
            if item not in chosen:
                chosen.append(item)
    out["sample"] = {"train_images": len(images), "labels_scanned": scanned,
                     "label_files_with_bad_class": bad_files, "bad_rows": bad_rows,
                     "complete_scan": not cut,
                     "unlabelled": len(unlabelled), "empty_labels": len(empty),
                     "picked": [img for img, _ in chosen],
                     "picked_flagged": [img for img, _ in chosen if (img, _) in flagged]}
    return chosen


def make_mirror(tmp: Path, chosen: list[tuple[str, str | None]], data: dict[str, Any]) -> str:
    import yaml

    root = tmp / "mirror"
    imgs, labs = root / "images" / "train", root / "labels" / "train"
    imgs.mkdir(parents=True)
    labs.mkdir(parents=True)
    for i, (img, lab) in enumerate(chosen):
        name = f"{i:05d}_{Path(img).name}"
        if os.path.getsize(img) <= MAX_COPY_BYTES:
            shutil.copyfile(img, imgs / name)
        if lab and os.path.isfile(lab):
            shutil.copyfile(lab, labs / (Path(name).stem + ".txt"))
    mirror: dict[str, Any] = {"path": str(root), "train": "images/train", "val": "images/train",
                              "names": {int(k): v for k, v in (data.get("names") or {}).items()}}
    for key in ("kpt_shape", "flip_idx", "channels"):
        if data.get(key) is not None:
            mirror[key] = data[key]
    path = root / "data.yaml"
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(mirror, fh)
    return str(path)


# --- 5. the trainer and one step ------------------------------------------------------------

def _overrides(yolo, spec: dict[str, Any], hints: dict[str, Any], mirror_yaml: str,
               tmp: Path, k: int) -> dict[str, Any]:
    from ultralytics.utils import DEFAULT_CFG_DICT

    args: dict[str, Any] = dict(yolo.overrides)
    for key in ("freeze", "cls_remap", "single_cls", "classes", "optimizer", "lr0", "fraction"):
        if hints.get(key) is not None and key in DEFAULT_CFG_DICT:
            args[key] = hints[key]
    args.update({k2: v for k2, v in AUG_OFF.items() if k2 in DEFAULT_CFG_DICT})
    args.update(data=mirror_yaml, imgsz=spec["imgsz"], batch=k, workers=0, epochs=1,
                device=spec["device"], project=str(tmp / "runs"), name="cvdoctor",
                exist_ok=True, plots=False, val=False, save=False, cache=False, verbose=False,
                amp=False if spec["device"] == "cpu" else bool(hints.get("amp", True)),
                seed=0, deterministic=True, rect=False, resume=False, mode="train",
                multi_scale=0.0 if "multi_scale" in DEFAULT_CFG_DICT else None,
                model=yolo.overrides.get("model") or spec["model"]["value"], task=yolo.task)
    return {k2: v for k2, v in args.items() if v is not None or k2 in ("auto_augment",)}


def head_rows(src_model, dst_model, data_names: dict[int, str]) -> dict[str, Any]:
    """Where each class row of the new model's classification head came from."""
    import torch
    from ultralytics.nn.modules import Detect

    src_head, dst_head = src_model.model[-1], dst_model.model[-1]
    if not (isinstance(src_head, Detect) and isinstance(dst_head, Detect)) or \
            not hasattr(src_head, "cv3") or not hasattr(dst_head, "cv3"):
        return {"checked": False, "reason": "the head is not a YOLO Detect head"}
    src_conv, dst_conv = src_head.cv3[0][-1], dst_head.cv3[0][-1]
    if not (isinstance(src_conv, torch.nn.Conv2d) and isinstance(dst_conv, torch.nn.Conv2d)) or \
            src_conv.in_channels != dst_conv.in_channels:
        return {"checked": False, "reason": "the checkpoint's head has another width"}
    src_names = {int(k): str(v) for k, v in (getattr(src_model, "names", {}) or {}).items()}
    by_name = {v.strip().lower(): k for k, v in src_names.items()}
    sw, dw = src_conv.weight.detach().float(), dst_conv.weight.detach().float()
    rows = []
    for k in range(dw.shape[0]):
        name = str(data_names.get(k, k))
        j = by_name.get(name.strip().lower())
        source = "new"
        if j is not None and j < sw.shape[0] and torch.allclose(dw[k], sw[j], atol=1e-6):
            source = "name"
        elif k < sw.shape[0] and torch.allclose(dw[k], sw[k], atol=1e-6):
            source = "index"
        rows.append({"class": k, "name": name, "checkpoint_index_of_name": j,
                     "checkpoint_name_at_index": src_names.get(k), "source": source})
    return {"checked": True, "checkpoint_nc": int(sw.shape[0]), "model_nc": int(dw.shape[0]),
            "rows": rows}


class SavedBytes:
    """Bytes autograd keeps for backward during a forward: the activation memory of training."""

    def __init__(self) -> None:
        self.seen: set[tuple[int, int]] = set()
        self.bytes = 0

    def pack(self, t):
        try:
            storage = t.untyped_storage()
            key = (storage.data_ptr(), storage.nbytes())
            if key not in self.seen:
                self.seen.add(key)
                self.bytes += storage.nbytes()
        except Exception:  # noqa: BLE001 - sparse or meta tensors: not counted
            pass
        return t

    @staticmethod
    def unpack(t):
        return t


def train_step(yolo, spec: dict[str, Any], hints: dict[str, Any], data: dict[str, Any],
               mirror_yaml: str, tmp: Path, k: int, out: dict[str, Any]) -> None:
    import torch

    tinfo: dict[str, Any] = {"stage": "trainer", "imgsz_requested": spec["imgsz"]}
    out["trainer"] = tinfo
    trainer_cls = yolo.task_map[yolo.task]["trainer"]
    overrides = _overrides(yolo, spec, hints, mirror_yaml, tmp, k)
    tinfo["freeze"] = _plain(overrides.get("freeze"))
    tinfo["cls_remap"] = overrides.get("cls_remap", None)
    tr = trainer_cls(overrides=overrides, _callbacks=yolo.callbacks)
    tinfo["stage"] = "get_model"
    tr.model = tr.get_model(weights=yolo.model if yolo.ckpt else None, cfg=yolo.model.yaml,
                            verbose=False)
    if yolo.ckpt:
        out["head_rows"] = head_rows(yolo.model, tr.model,
                                     {int(i): n for i, n in tr.data["names"].items()})
    tinfo["stage"] = "setup"
    tr._setup_train()
    tinfo.update(imgsz_used=_plain(tr.args.imgsz), stride=int(tr.stride),
                 freeze_layer_names=list(getattr(tr, "freeze_layer_names", []))[:60])
    model = tr.model
    names = [n for n, _ in model.named_parameters()]
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    head_index = len(model.model) - 1
    head_prefix = f"model.{head_index}."
    out["frozen"] = {"params": len(names), "frozen": len(frozen),
                     "frozen_layers": sorted({int(n.split(".")[1]) for n in frozen
                                              if n.split(".")[1].isdigit()
                                              and ".dfl" not in n}),
                     "head_index": head_index, "head_type": type(model.model[-1]).__name__,
                     "head_params": sum(1 for n in names if n.startswith(head_prefix)),
                     "head_frozen": sum(1 for n in frozen if n.startswith(head_prefix)
                                        and ".dfl" not in n),
                     "layers": len(model.model)}
    ds = tr.train_loader.dataset
    labels = getattr(ds, "labels", [])
    out["labels"] = {"images": len(getattr(ds, "im_files", [])), "picked": k,
                     "boxes": int(sum(len(lb.get("cls", [])) for lb in labels)),
                     "backgrounds": int(sum(1 for lb in labels if len(lb.get("cls", [])) == 0))}
    tinfo["stage"] = "batch"
    batch = next(iter(tr.train_loader))
    batch = tr.preprocess_batch(batch)
    step: dict[str, Any] = {"images": int(batch["img"].shape[0]),
                            "img_shape": list(batch["img"].shape),
                            "img_dtype": str(batch["img"].dtype).replace("torch.", ""),
                            "boxes": int(batch["cls"].shape[0]) if "cls" in batch else None}
    if "cls" in batch and batch["cls"].numel():
        step["class_range"] = [int(batch["cls"].min()), int(batch["cls"].max())]
    out["step"] = step
    tinfo["stage"] = "loss"
    model.train()
    counter = SavedBytes()
    started = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(counter.pack, counter.unpack):
        loss, items = model(batch)
    loss = loss.sum()
    step.update(loss=float(loss.detach()), finite=bool(torch.isfinite(loss).item()),
                loss_items={str(n): float(v) for n, v in (items.items() if isinstance(items, dict)
                                                          else enumerate(items.flatten()))},
                saved_bytes=counter.bytes)
    tinfo["stage"] = "backward"
    loss.backward()
    step["seconds"] = round(time.perf_counter() - started, 3)
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    head = {n: g for n, g in grads.items() if n.startswith(head_prefix)}
    nonfinite = [n for n, g in grads.items() if g is not None and not torch.isfinite(g).all()]
    step.update(trainable=len(grads), with_grad=sum(1 for g in grads.values() if g is not None),
                head_trainable=len(head),
                head_with_grad=sum(1 for g in head.values() if g is not None),
                head_zero_grad=sum(1 for g in head.values() if g is not None
                                   and not bool(g.abs().sum() > 0)),
                head_grad_norm=float(torch.norm(torch.stack([g.float().norm() for g in
                                                             head.values() if g is not None]))
                                     ) if any(g is not None for g in head.values()) else 0.0,
                nonfinite_grads=nonfinite[:10], nonfinite_count=len(nonfinite))
    tinfo["stage"] = "done"
    if spec["device"].startswith("cuda") and spec.get("amp_check", True):
        out["amp"] = amp_compare(model, batch, float(loss.detach()))


def amp_compare(model, batch, loss32: float) -> dict[str, Any]:
    """The same forward and loss in float32 and under fp16 autocast, on this GPU."""
    import torch

    res: dict[str, Any] = {"device": torch.cuda.get_device_name(0), "loss_fp32": loss32}
    try:
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16):
            loss16, _ = model(batch)
        res["loss_fp16"] = float(loss16.sum().float())
        res["finite"] = math.isfinite(res["loss_fp16"])
        res["relative_difference"] = (abs(res["loss_fp16"] - loss32) / max(abs(loss32), 1e-6)
                                      if res["finite"] else None)
    except Exception as exc:  # noqa: BLE001
        res["error"] = _error(exc, 4)
    return res


# --- the run ---------------------------------------------------------------------------------

def run(spec: dict[str, Any], tmp: Path, out: dict[str, Any]) -> None:
    from cvdoctor.yolo.contain import Containment, DownloadBlocked

    guard = Containment(tmp, [tmp], strict_sockets=bool(spec.get("strict_sockets")))
    out["_guard"] = guard
    guard.install(spec.get("settings_file"))
    started = time.perf_counter()
    out["stage"] = "import"
    guard.block_downloads()
    import ultralytics

    logs = _capture_logs()
    out["_logs"] = logs
    out["ultralytics"] = ultralytics.__version__
    out["import_seconds"] = round(time.perf_counter() - started, 3)
    out["stage"] = "model"
    try:
        yolo, hints = build_model(spec, out)
    except DownloadBlocked as exc:
        out.setdefault("model", {})["missing_weights"] = exc.what
        out["model"]["error"] = _error(exc, 3)
        return
    except BaseException as exc:  # noqa: BLE001 - SystemExit from a script too
        if isinstance(exc, KeyboardInterrupt):
            raise
        out.setdefault("model", {})["error"] = _error(exc)
        return
    finally:
        guard.block_downloads()  # modules the file or the model imported
    resolved: dict[str, Any] = {}
    sources: dict[str, str] = {}
    ckpt_args = {k: v for k, v in dict(yolo.overrides).items()
                 if yolo.ckpt and k in ("data", "imgsz", "single_cls") and v is not None}
    for source, values in (("command line", spec.get("settings") or {}), ("file", hints),
                           ("checkpoint", ckpt_args)):
        for key, value in values.items():
            if value is not None and key not in resolved:
                resolved[key], sources[key] = value, source
    spec["imgsz"] = resolved.get("imgsz") or 640  # as given: ultralytics judges it
    data_path = resolved.get("data")
    out["settings"] = {k: _plain(v) for k, v in resolved.items()}
    out["settings_source"] = sources
    if not data_path:
        out["data"] = {"missing": True}
        return
    out["stage"] = "data"
    data = resolve_data(str(data_path), out)
    if data is None:
        return
    out["stage"] = "sample"
    k = int(spec.get("sample") or 4)
    chosen = pick_sample(data, k, out)
    if not chosen:
        out["data"]["no_images"] = True
        train = data.get("train")
        out["data"]["train"] = [str(t) for t in train] if isinstance(train, list) else str(train)
        return
    mirror_yaml = make_mirror(tmp, chosen, data)
    out["stage"] = "train"
    try:
        train_step(yolo, spec, resolved, data, mirror_yaml, tmp, len(chosen), out)
    except BaseException as exc:  # noqa: BLE001
        if isinstance(exc, KeyboardInterrupt):
            raise
        out.setdefault("trainer", {})["error"] = _error(exc)
    out["stage"] = "done"


def main() -> None:
    from cvdoctor.probes import emit

    spec = json.loads(sys.stdin.read() or "{}")
    tmp = Path(spec.get("tmp") or tempfile.mkdtemp(prefix="cvdoctor-yolo-"))
    (tmp / "tmp").mkdir()
    os.environ["TMPDIR"] = str(tmp / "tmp")
    tempfile.tempdir = str(tmp / "tmp")
    out: dict[str, Any] = {}
    rmtree = shutil.rmtree
    try:
        os.chdir(spec.get("cwd") or os.getcwd())
        run(spec, tmp, out)
    except BaseException as exc:  # noqa: BLE001 - the probe always answers
        if isinstance(exc, KeyboardInterrupt):
            raise
        out["error"] = _error(exc)
    finally:
        guard = out.pop("_guard", None)
        logs = out.pop("_logs", None)
        if guard is not None:
            out["containment"] = guard.summary()
        if logs is not None:
            out["log"] = logs.lines
        sys.stdout = sys.__stdout__
        emit(out)
        rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
