"""Probe: run a few real kernels on every visible GPU and say which step breaks.

Run as ``python -m cvdoctor.probes.gpu_probe``. Steps per device: an elementwise tensor op, a
matmul, a conv2d through cuDNN, and torchvision's ``nms`` on the device (its compiled ops are
loaded directly, without importing the torchvision package). Each step reports ok/error; a CUDA
error such as "no kernel image is available for execution on the device" lands in that step's
error text. Also reports the cuDNN version torch actually loaded.
"""
from __future__ import annotations

import sys
import warnings
from typing import Any, Callable

from cvdoctor.probes import emit
from cvdoctor.probes.torch_probe import (NMS_BOXES, NMS_EXPECTED, NMS_SCORES, _error_text,
                                         load_torchvision_ops)


def _step(fn: Callable[[], Any]) -> dict[str, Any]:
    try:
        detail = fn()
        out: dict[str, Any] = {"ok": True, "error": None}
        if detail is not None:
            out["detail"] = detail
        return out
    except Exception as exc:  # noqa: BLE001 - the error text is the result
        return {"ok": False, "error": _error_text(exc)}


def probe_device(torch: Any, index: int, tv_ops_ok: bool) -> dict[str, Any]:
    dev = torch.device("cuda", index)
    steps: dict[str, Any] = {}

    def tensor_op():
        x = torch.arange(1024, device=dev, dtype=torch.float32)
        total = float((x * 2 + 1).sum().item())
        if total != 1024.0 * 1024.0:  # sum(2i+1, i<1024) = 1024^2
            raise RuntimeError(f"elementwise result is wrong: {total}")

    def matmul():
        a = torch.ones(128, 64, device=dev)
        b = torch.ones(64, 32, device=dev)
        value = float((a @ b)[0, 0].item())
        if value != 64.0:
            raise RuntimeError(f"matmul result is wrong: {value} (expected 64)")

    def conv2d():
        torch.backends.cudnn.enabled = True
        x = torch.ones(2, 3, 32, 32, device=dev)
        w = torch.ones(8, 3, 3, 3, device=dev)
        y = torch.nn.functional.conv2d(x, w, padding=1)
        centre = float(y[0, 0, 16, 16].item())
        torch.cuda.synchronize(dev)
        if centre != 27.0:
            raise RuntimeError(f"conv2d result is wrong: {centre} (expected 27)")
        return {"cudnn_available": bool(torch.backends.cudnn.is_available())}

    def nms():
        if not tv_ops_ok:
            raise RuntimeError("torchvision's compiled ops did not load (see env.packages)")
        keep = torch.ops.torchvision.nms(torch.tensor(NMS_BOXES, device=dev),
                                         torch.tensor(NMS_SCORES, device=dev), 0.5)
        kept = [int(i) for i in keep.cpu().tolist()]
        if kept != NMS_EXPECTED:
            raise RuntimeError(f"nms kept boxes {kept}, expected {NMS_EXPECTED}")

    for name, fn in (("tensor_op", tensor_op), ("matmul", matmul), ("conv2d", conv2d),
                     ("nms", nms)):
        steps[name] = _step(fn)
    return {"index": index, "name": _name(torch, index), "steps": steps,
            "ok": all(s["ok"] for n, s in steps.items() if n != "nms" or tv_ops_ok)}


def _name(torch: Any, index: int) -> str | None:
    try:
        return torch.cuda.get_device_name(index)
    except Exception:  # noqa: BLE001
        return None


def main() -> int:
    try:
        import torch
    except BaseException as exc:  # noqa: BLE001
        emit({"ran": True, "ok": False, "error": f"import torch: {_error_text(exc)}",
              "devices": []})
        return 0
    out: dict[str, Any] = {"ran": True, "error": None, "devices": []}
    with warnings.catch_warnings(record=True) as wlist:
        warnings.simplefilter("always")
        try:
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        except Exception as exc:  # noqa: BLE001
            count, out["error"] = 0, _error_text(exc)
        if count == 0 and out["error"] is None:
            try:
                torch.cuda.init()
                out["error"] = "torch sees no CUDA device"
            except Exception as exc:  # noqa: BLE001 - "No CUDA GPUs are available", ...
                out["error"] = _error_text(exc)
        tv = load_torchvision_ops(torch) if count else {"ok": False}
        out["torchvision_ops_ok"] = bool(tv.get("ok"))
        for i in range(count):
            out["devices"].append(probe_device(torch, i, bool(tv.get("ok"))))
        out["warnings"] = [str(w.message).strip() for w in wlist]
    try:
        out["cudnn_version"] = torch.backends.cudnn.version()
    except Exception as exc:  # noqa: BLE001 - "Could not load library libcudnn_cnn_infer.so.8"
        out["cudnn_version"], out["cudnn_error"] = None, _error_text(exc)
    out["ok"] = bool(out["devices"]) and all(d["ok"] for d in out["devices"])
    emit(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
