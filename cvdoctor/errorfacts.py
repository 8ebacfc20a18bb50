"""Facts read from an error message, and the fix they lead to.

A recipe explains a family of errors and offers the fixes for all its cases; the message itself
often says which case this is: "copying a param with shape [1000, 512] ... current model is
[10, 512]" is a 1000-class head meeting a 10-class model, "Input type (torch.cuda.HalfTensor) and
weight type (torch.cuda.FloatTensor)" is an input cast to half. `cvdoctor explain` and `cvdoctor
run` say those facts in words and give the fix for that case.

One extractor per recipe (or per family), registered by recipe id with `@extractor(...)`. It gets
the text around the matched line and returns `Facts` or None; a failing extractor is ignored
(the recipe's own fix stands). Standard library only, no torch: `explain` must stay fast.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

BEFORE = 3000  # characters read before the matched position (a traceback, a key list)
AFTER = 8000  # and after it (a state_dict error lists every key)


@dataclass(frozen=True)
class Facts:
    values: dict = field(default_factory=dict)  # machine-readable: {"checkpoint_classes": 1000}
    said: str = ""  # the facts in words: "the checkpoint's head `fc` has 1000 classes, ..."
    fix: str = ""  # the fix for this case; "" keeps the recipe's own one-line fix


_EXTRACTORS: dict[str, Callable[[str], Facts | None]] = {}


def extractor(*recipe_ids: str):
    def register(fn: Callable[[str], Facts | None]):
        for rid in recipe_ids:
            _EXTRACTORS[rid] = fn
        return fn
    return register


def extract(recipe_id: str, text: str, at: int = 0) -> Facts | None:
    """The facts `recipe_id`'s extractor reads around position `at` of `text`, or None."""
    fn = _EXTRACTORS.get(recipe_id)
    if fn is None:
        return None
    start = text.rfind("\n", 0, at) + 1
    try:
        return fn(text[max(0, start - BEFORE):at + AFTER])
    except Exception:  # noqa: BLE001 - facts are a bonus; the recipe still answers
        return None


def extractor_ids() -> list[str]:
    return sorted(_EXTRACTORS)


# --- wording helpers ---------------------------------------------------------------------------

_DTYPES = {
    "float": "float32", "float32": "float32", "floattensor": "float32", "cpufloattype": "float32",
    "half": "float16", "c10::half": "float16", "float16": "float16", "halftensor": "float16",
    "bfloat16": "bfloat16", "c10::bfloat16": "bfloat16", "bfloat16tensor": "bfloat16",
    "double": "float64", "float64": "float64", "doubletensor": "float64",
    "long": "int64", "long int": "int64", "int64": "int64", "longtensor": "int64",
    "int": "int32", "int32": "int32", "inttensor": "int32",
    "short": "int16", "byte": "uint8", "unsigned char": "uint8", "uint8": "uint8",
    "bytetensor": "uint8", "char": "int8", "signed char": "int8", "bool": "bool",
}


def dtype(name: str) -> str:
    """'Half', 'c10::Half', 'torch.cuda.HalfTensor', 'CUDAHalfType' -> 'float16'."""
    key = name.strip().lower().removeprefix("torch.").removeprefix("cuda.")
    key = re.sub(r"^(?:cuda|cpu|mps)(?=\w+(?:tensor|type)$)", "", key)
    key = key.removesuffix("type") if key.endswith("type") and key != "type" else key
    return _DTYPES.get(key, _DTYPES.get(key.removesuffix("tensor"), name))


def _ints(text: str) -> list[int]:
    return [int(x) for x in re.findall(r"-?\d+", text)]


def _shape(text: str) -> str:
    return "[" + ", ".join(str(n) for n in _ints(text)) + "]"


_SIZE = re.compile(r"([\d.]+)\s*([KMGT]i?B|bytes)")
_UNITS = {"B": 1, "bytes": 1, "KiB": 2 ** 10, "MiB": 2 ** 20, "GiB": 2 ** 30, "TiB": 2 ** 40,
          "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}


def _bytes(text: str | None) -> float | None:
    m = _SIZE.search(text or "")
    return float(m.group(1)) * _UNITS[m.group(2)] if m else None


# --- labels ------------------------------------------------------------------------------------

@extractor("target-out-of-bounds", "mask-values-exceed-classes")
def _target_out_of_bounds(text: str) -> Facts | None:
    m = re.search(r"Target (-?\d+) is out of bounds", text)
    if not m:
        return None
    target = int(m.group(1))
    if target < 0:
        return Facts({"target": target}, f"a target is {target}, a negative class index (usually "
                     "an 'ignore' label)",
                     f"Pass `ignore_index={target}` to the loss (`nn.CrossEntropyLoss(ignore_index="
                     f"{target})`), or remove the negative labels.")
    if target == 255:
        return Facts({"target": 255}, "a target is 255: the 'void/border' value of VOC-style masks",
                     "Pass `ignore_index=255` to CrossEntropyLoss (the usual choice for masks), "
                     "or map 255 to a real class before training.")
    return Facts({"target": target, "min_classes": target + 1},
                 f"a label is {target}, so the model needs at least {target + 1} outputs (classes "
                 f"0..{target})",
                 f"Make the last layer output at least {target + 1} classes (max label + 1), or "
                 "remap the labels to 0..C-1 (subtract 1 from 1-based labels).")


@extractor("labels-wrong-dtype")
def _labels_dtype(text: str) -> Facts | None:
    m = (re.search(r"expected scalar type Long but found (\w+)", text)
         or re.search(r"expected target dtype to be Long or Byte, but got (\w+)", text)
         or re.search(r"Expected object of scalar type Long but got scalar type (\w+) for "
                      r"argument #\d+ 'target'", text)
         or re.search(r"\"nll_loss\w*\" not implemented for '(\w+)'", text))
    if not m:
        return None
    got = dtype(m.group(1))
    return Facts({"target_dtype": got}, f"the target is {got}; CrossEntropyLoss/NLLLoss want int64 "
                 "class indices",
                 "Cast the target: `loss = criterion(logits, target.long())`, and build labels as "
                 "int64 in the dataset (`torch.tensor(label, dtype=torch.long)`).")


@extractor("yolo-class-out-of-range")
def _yolo_class(text: str) -> Facts | None:
    m = re.search(r"Label class (\d+)(?:\.0+)? exceeds (?:nc=|dataset class count )(\d+)", text)
    if not m:
        return None
    cls, nc = int(m.group(1)), int(m.group(2))
    return Facts({"label_class": cls, "nc": nc},
                 f"a label uses class {cls}, but the dataset declares {nc} classes (0..{nc - 1})",
                 f"If class {cls} is real, list {cls + 1} names in data.yaml (nc: {cls + 1}); "
                 f"otherwise fix the label files that use {cls} (class ids are 0-based).")


@extractor("target-not-class-indices")
def _target_shape(text: str) -> Facts | None:
    m = re.search(r"targets of size: :? ?\[([\d, ]+)\]", text)
    if m:
        return Facts({"target_shape": _ints(m.group(1))},
                     f"the target has shape {_shape(m.group(1))}, not N x H x W class indices", "")
    if re.search(r"target with class probabilities, got Long", text):
        return Facts({"target_dtype": "int64"}, "the target is an int64 tensor shaped like the "
                     "output (one-hot labels)",
                     "Pass class indices: `target.argmax(dim=1)` (or `target.float()` if they are "
                     "meant as probabilities).")
    return None


# --- checkpoints -------------------------------------------------------------------------------

_SIZE_MISMATCH = re.compile(
    r"size mismatch for ([\w.]+): copying a param with shape torch\.Size\(\[([\d, ]*)\]\) from "
    r"checkpoint, the shape in current model is torch\.Size\(\[([\d, ]*)\]\)")
_HEAD = re.compile(r"(?:^|\.)(?:fc|classifier|head|heads|cls|cls_score|logits|last_linear|"
                   r"linear|output|out|predictor|classif|class_embed)$")
_KEYS = re.compile(r"(Missing|Unexpected) key\(s\) in state_dict: ((?:\"[^\"\n]+\",? ?)+)")


@extractor("state-dict-mismatch", "head-size-mismatch", "checkpoint-key-prefix",
           "checkpoint-partial-load", "checkpoint-wrong-variant")
def _state_dict(text: str) -> Facts | None:
    sizes = [(name, _ints(a), _ints(b)) for name, a, b in _SIZE_MISMATCH.findall(text)]
    if sizes:
        heads = {name.rsplit(".", 1)[0] for name, a, b in sizes
                 if a and b and a[1:] == b[1:] and a[0] != b[0]}
        if heads and all(name.rsplit(".", 1)[0] in heads for name, _, _ in sizes):
            prefix = sorted(heads, key=len)[0]
            if len(heads) == 1 and (_HEAD.search(prefix) or len(sizes) <= 2):
                ckpt_n, model_n = sizes[0][1][0], sizes[0][2][0]
                return Facts(
                    {"head": prefix, "checkpoint_classes": ckpt_n, "model_classes": model_n},
                    f"the checkpoint's head `{prefix}` has {ckpt_n} classes, your model {model_n}",
                    f"Load everything but the head: drop the `{prefix}.*` keys and load with "
                    f"`strict=False` (the missing keys must be only `{prefix}.*`), or build the "
                    f"model with {ckpt_n} classes, load, then replace `{prefix}` with a "
                    f"{model_n}-class layer.")
        name, a, b = sizes[0]
        more = f" ({len(sizes)} parameters differ)" if len(sizes) > 1 else ""
        return Facts({"parameter": name, "checkpoint_shape": a, "model_shape": b,
                      "mismatches": len(sizes)},
                     f"`{name}` is {a} in the checkpoint but {b} in the model{more}: the "
                     "checkpoint is from another variant or configuration",
                     "Build the model with the configuration the checkpoint was trained with "
                     "(variant, width, number of classes), or pick the checkpoint made for this "
                     "model.")
    keys = {kind: re.findall(r"\"([^\"\n]+)\"", names) for kind, names in _KEYS.findall(text)}
    m = re.search(r"_IncompatibleKeys\(missing_keys=\[(.*?)\], unexpected_keys=\[(.*?)\]\)", text)
    if m:
        keys = {"Missing": re.findall(r"'([^']+)'", m.group(1)),
                "Unexpected": re.findall(r"'([^']+)'", m.group(2))}
    missing, unexpected = keys.get("Missing", []), keys.get("Unexpected", [])
    top = {"state_dict", "model", "model_state_dict", "optimizer", "epoch", "net", "ema",
           "optimizer_state_dict", "scheduler", "lr_scheduler", "args", "config"}
    if unexpected and set(unexpected) <= top:
        inner = next((k for k in ("state_dict", "model", "model_state_dict", "net", "ema")
                      if k in unexpected), unexpected[0])
        return Facts({"unexpected": unexpected},
                     f"the file is a training checkpoint: the weights sit under `{inner}` next to "
                     f"{', '.join(f'`{k}`' for k in unexpected if k != inner) or 'other entries'}",
                     f"Load the weights from inside it: `model.load_state_dict(ckpt['{inner}'])`.")
    for wrapped, other, where in ((unexpected, missing, "checkpoint"), (missing, unexpected,
                                                                        "model")):
        if wrapped and all(k.startswith("module.") for k in wrapped):
            stripped = [k.removeprefix("module.") for k in wrapped]
            if not other or set(stripped) & set(other):
                if where == "checkpoint":
                    return Facts({"prefix": "module.", "in": "checkpoint"},
                                 "the checkpoint's keys start with `module.` (saved from "
                                 "DataParallel/DDP), the model's do not",
                                 "Strip the prefix before loading: `state = {k.removeprefix("
                                 "'module.'): v for k, v in state.items()}`.")
                return Facts({"prefix": "module.", "in": "model"},
                             "the model's keys start with `module.` (it is wrapped in "
                             "DataParallel/DDP), the checkpoint's do not",
                             "Load into the unwrapped model: `model.module.load_state_dict(state)`"
                             " (or load before wrapping).")
    if missing or unexpected:
        return Facts({"missing": len(missing), "unexpected": len(unexpected)},
                     f"{len(missing)} keys missing from the checkpoint, {len(unexpected)} not in "
                     "the model", "")
    return None


# --- dtypes ------------------------------------------------------------------------------------

def _dtype_pair(text: str) -> tuple[str, str, str] | None:
    """(input dtype, other dtype, what the other is) from the many wordings, or None."""
    patterns = (
        (r"Input type \((?:torch\.)?(?:cuda\.)?(?:CUDA|CPU|MPS)?(\w+?)(?:Tensor|Type)\) and weight "
         r"type\s+\((?:torch\.)?(?:cuda\.)?(?:CUDA|CPU|MPS)?(\w+?)(?:Tensor|Type)\)", "weights"),
        (r"Input type \(([\w: ]+?)\) and (bias|weight) type \(([\w: ]+?)\)", None),
        (r"mat1 and mat2 must have the same dtype, but got (\w+) and (\w+)", "weights"),
        (r"expected (?:mat1 and mat2|m1 and m2) to have the same dtype, but got: "
         r"([\w:]+) != ([\w:]+)", "weights"),  # c10::Half, c10::BFloat16
        (r"but type torch\.(?:cuda\.)?(\w+)Tensor does not equal torch\.(?:cuda\.)?(\w+)Tensor",
         "weights"),
        (r"Found dtype (\w+) but expected (\w+)", "loss"),
        (r"expected scalar type (\w+) but found (\w+)", "swap"),
        (r"Expected object of scalar type (\w+) but got scalar type (\w+) for argument #\d+ "
         r"'(\w+)'", "swap-arg"),
        (r"Expected object of type torch\.(?:cuda\.)?(\w+)Tensor but found type "
         r"torch\.(?:cuda\.)?(\w+)Tensor for argument #\d+ '(\w+)'", "swap-arg"),
        (r"expected dtype (\w+) but got dtype (\w+)", "swap"),
        (r"expected backend \w+ and dtype (\w+) but got backend \w+ and dtype (\w+)", "swap"),
    )
    for pattern, role in patterns:
        m = re.search(pattern, text)
        if not m:
            continue
        if role is None:  # Input type (c10::Half) and bias type (float)
            return dtype(m.group(1)), dtype(m.group(3)), m.group(2)
        if role == "loss":  # Found dtype Long but expected Float: the target vs the loss
            return dtype(m.group(1)), dtype(m.group(2)), "loss"
        if role == "swap":  # expected X but found Y: Y is what came in
            return dtype(m.group(2)), dtype(m.group(1)), "other operand"
        if role == "swap-arg":
            return dtype(m.group(2)), dtype(m.group(1)), f"argument '{m.group(3)}'"
        return dtype(m.group(1)), dtype(m.group(2)), role
    return None


@extractor("dtype-mismatch", "unnormalized-input")
def _dtypes(text: str) -> Facts | None:
    pair = _dtype_pair(text)
    if not pair:
        return None
    got, other, what = pair
    values = {"input_dtype": got, "other_dtype": other, "other": what}
    if what == "loss" or what == "argument 'target'":
        return Facts(values, f"the target is {got} but the loss computes in {other}",
                     f"Cast the target to the output's dtype: `loss_fn(output, target.{_cast(other)}"
                     "())` (BCE, MSE and L1 want float targets).")
    said = f"the input is {got}, the {what} {other}"
    floats = {"float16", "bfloat16", "float32"}
    if got == "uint8":
        fix = ("Convert raw pixels to float and scale them: `x = x.float() / 255` (or "
               "`transforms.ToTensor()`), then normalize.")
    elif {got, other} == {"float64", "float32"}:
        fix = ("float64 comes from NumPy: cast the input with `x.float()` (`torch.from_numpy(a)."
               "float()`), or convert the arrays with `astype(np.float32)`.")
    elif got in floats and other in floats:
        if got != "float32":
            fix = (f"The input was cast to {got} but the model is {other}: remove the manual cast "
                   "and run the forward under `torch.autocast(device_type='cuda', dtype=torch."
                   f"{got})`, or convert both the same way.")
        else:
            fix = (f"The model is {other} but the input float32: call the model under "
                   f"`torch.autocast(device_type='cuda', dtype=torch.{other})` with a float32 "
                   f"model, or cast the input too (`x.to(torch.{other})`).")
    elif got.startswith("int"):
        fix = (f"The input is an integer tensor: cast it (`x.{_cast(other)}()`), or feed ids "
               "through an `nn.Embedding`.")
    else:
        fix = f"Make both the same dtype: `x = x.to(torch.{other})`."
    return Facts(values, said, fix)


def _cast(name: str) -> str:
    return {"float32": "float", "float16": "half", "float64": "double", "bfloat16": "bfloat16",
            "int64": "long", "int32": "int"}.get(name, "float")


# --- shapes ------------------------------------------------------------------------------------

@extractor("shape-mismatch-linear")
def _linear(text: str) -> Facts | None:
    m = (re.search(r"mat1 and mat2 shapes cannot be multiplied \((\d+)x(\d+) and (\d+)x(\d+)\)",
                   text)
         or re.search(r"size mismatch, m1: \[(\d+) x (\d+)\], m2: \[(\d+) x (\d+)\]", text))
    if m:
        rows, got, want, out = map(int, m.groups())
        return Facts({"batch": rows, "features": got, "in_features": want, "out_features": out},
                     f"the layer receives {got} features per sample but was built for {want} "
                     f"(nn.Linear({want}, {out}))",
                     f"Build it as `nn.Linear({got}, {out})` (or `nn.LazyLinear({out})`), or pool "
                     "to a fixed size before flattening (`nn.AdaptiveAvgPool2d(1)`).")
    m = re.search(r"Expected input batch_size \((\d+)\) to match target batch_size \((\d+)\)", text)
    if m:
        a, b = map(int, m.groups())
        return Facts({"output_rows": a, "target_rows": b},
                     f"the output has {a} rows but the target {b}: a reshape mixed the batch "
                     "with the features",
                     "Flatten per sample: `x = x.flatten(1)` or `x.view(x.size(0), -1)`, never "
                     "`x.view(-1, K)`.")
    return None


@extractor("channels-mismatch")
def _channels(text: str) -> Facts | None:
    m = re.search(r"expected input\[([\d, ]+)\] to have (\d+) channels, but got (\d+) channels",
                  text)
    if not m:
        return None
    shape, want, got = _ints(m.group(1)), int(m.group(2)), int(m.group(3))
    values = {"input_shape": shape, "expected_channels": want, "got_channels": got}
    if len(shape) == 4 and shape[-1] == want:
        return Facts(values, f"the batch {shape} is channels-last (N, H, W, C): the conv reads "
                     f"{got} as channels", "Permute to NCHW: `x = x.permute(0, 3, 1, 2)` (or "
                     "build the tensors with `transforms.ToTensor()`).")
    if got == 1 and want == 3:
        return Facts(values, "the batch is grayscale (1 channel), the first conv expects RGB",
                     "Convert the images to RGB (`Image.open(p).convert('RGB')`), or repeat the "
                     "channel: `x = x.expand(-1, 3, -1, -1)`.")
    if got == 4 and want == 3:
        return Facts(values, "the batch has 4 channels (RGBA), the first conv expects 3",
                     "Drop the alpha channel: `Image.open(p).convert('RGB')` (or `x[:, :3]`).")
    return Facts(values, f"the first conv expects {want} channels, the batch has {got}",
                 f"Make the data {want}-channel, or build the first conv with `in_channels={got}`.")


@extractor("unet-shape-mismatch")
def _cat_sizes(text: str) -> Facts | None:
    m = (re.search(r"Sizes of tensors must match except in dimension (\d+)\. Expected size (\d+) "
                   r"but got size (\d+)", text)
         or re.search(r"Sizes of tensors must match except in dimension (\d+)\. Got (\d+) and "
                      r"(\d+)", text))
    if not m:
        return None
    dim, a, b = map(int, m.groups())
    return Facts({"dimension": dim, "sizes": [a, b]},
                 f"torch.cat joins maps of size {a} and {b} (a skip connection and an upsampled "
                 "map: the input side is not divisible by 2 at every level)",
                 "Resize or pad inputs to a multiple of 2**depth (32 for 5 levels), or resize the "
                 "upsampled map to the skip's size before concatenating "
                 "(`F.interpolate(x, size=skip.shape[2:])`).")


@extractor("loss-broadcast-shape")
def _loss_shapes(text: str) -> Facts | None:
    m = (re.search(r"Using a target size \(torch\.Size\(\[([\d, ]*)\]\)\) that is different to "
                   r"the input size \(torch\.Size\(\[([\d, ]*)\]\)\)", text)
         or re.search(r"Target size \(torch\.Size\(\[([\d, ]*)\]\)\) must be the same as input "
                      r"size \(torch\.Size\(\[([\d, ]*)\]\)\)", text))
    if not m:
        return None
    target, output = _ints(m.group(1)), _ints(m.group(2))
    values = {"target_shape": target, "output_shape": output}
    if output == target + [1]:
        fix = "Squeeze the output: `loss_fn(output.squeeze(1), target)`."
    elif target == output + [1]:
        fix = "Squeeze the target: `loss_fn(output, target.squeeze(1))`."
    else:
        fix = ""
    return Facts(values, f"the output is {output}, the target {target}", fix)


# --- memory ------------------------------------------------------------------------------------

@extractor("cuda-oom", "sam-oom")
def _oom(text: str) -> Facts | None:
    asked = re.search(r"Tried to allocate ([\d.]+ ?(?:[KMGT]i?B|bytes))", text)
    new = re.search(r"GPU (\d+) has a total capacity of ([\d.]+ [KMGT]iB) of which "
                    r"([\d.]+ [KMGT]iB) is free", text)
    held = re.search(r"Of the allocated memory ([\d.]+ [KMGT]iB) is allocated by PyTorch, and "
                     r"([\d.]+ [KMGT]iB) is reserved by PyTorch but unallocated", text)
    old = re.search(r"\(GPU (\d+); ([\d.]+ [KMGT]iB) total capacity; ([\d.]+ [KMGT]iB) already "
                    r"allocated; ([\d.]+ [KMGT]iB) free; ([\d.]+ [KMGT]iB) reserved in total by "
                    r"PyTorch\)", text)
    if not asked or not (new or old):
        return None
    if new:
        gpu, total, free = new.group(1), new.group(2), new.group(3)
        alloc, unalloc = (held.group(1), held.group(2)) if held else (None, None)
    else:
        gpu, total, alloc, free, reserved = old.groups()
        unalloc = None
        if _bytes(reserved) is not None and _bytes(alloc) is not None:
            unalloc = f"{(_bytes(reserved) - _bytes(alloc)) / 2 ** 30:.2f} GiB"
    values = {"gpu": int(gpu), "requested": asked.group(1), "total": total, "free": free,
              "allocated_by_pytorch": alloc, "reserved_unallocated": unalloc}
    said = f"GPU {gpu}: tried to allocate {asked.group(1)} with {free} free of {total}"
    if alloc:
        said += f"; PyTorch holds {alloc}" + (f" (+{unalloc} reserved but unallocated)"
                                              if unalloc else "")
    t, a, u, ask = _bytes(total), _bytes(alloc), _bytes(unalloc), _bytes(asked.group(1))
    if t and a is not None and a + (u or 0) < 0.5 * t and (_bytes(free) or 0) < ask:
        fix = ("Most of the GPU is held outside this process: free it (`nvidia-smi`, stop other "
               "runs and notebooks), then retry.")
    elif t and u and u > max(0.1 * t, ask or 0):
        fix = ("Memory is fragmented: set `PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True`, or "
               "lower the batch size.")
    else:
        fix = ""
    return Facts(values, said, fix)


# --- builds and devices ------------------------------------------------------------------------

@extractor("torchvision-torch-mismatch")
def _tv_cuda(text: str) -> Facts | None:
    m = re.search(r"PyTorch has CUDA Version=([\d.]+) and torchvision has CUDA\s+Version=([\d.]+)",
                  text)
    if not m:
        return None
    torch_cuda, tv_cuda = m.groups()
    tag = "cu" + "".join(torch_cuda.split(".")[:2])
    return Facts({"torch_cuda": torch_cuda, "torchvision_cuda": tv_cuda},
                 f"torch is built for CUDA {torch_cuda}, torchvision for CUDA {tv_cuda}",
                 f"Reinstall torchvision from torch's CUDA index: `pip install torchvision "
                 f"--index-url https://download.pytorch.org/whl/{tag}` (the release paired with "
                 "your torch).")


@extractor("gpu-arch-unsupported")
def _arch(text: str) -> Facts | None:
    m = re.search(r"(\S[^\n]*?) with CUDA capability (sm_\d+) is not compatible with the current "
                  r"PyTorch installation\.?\s*The current PyTorch install supports CUDA "
                  r"capabilities ((?:sm_\d+\s*)+)", text)
    if not m:
        return None
    gpu, sm, supported = m.group(1).strip(), m.group(2), m.group(3).split()
    newest = max(int(s[3:]) for s in supported)
    values = {"gpu": gpu, "capability": sm, "supported": supported}
    said = f"{gpu} is {sm}; this torch has kernels for {' '.join(supported)}"
    if int(sm[3:]) > newest:
        return Facts(values, said, f"Install a torch build whose CUDA supports {sm} (a newer "
                     "CUDA wheel, e.g. cu128 for Blackwell), or the NGC container.")
    return Facts(values, said, f"This torch dropped {sm}: install an older torch build that still "
                 "ships kernels for it.")


@extractor("cuda-driver-too-old")
def _driver(text: str) -> Facts | None:
    m = re.search(r"The NVIDIA driver on your system is too old \(found version (\d+)\)", text)
    if not m:
        return None
    v = int(m.group(1))
    cuda = f"{v // 1000}.{(v % 1000) // 10}"
    return Facts({"driver_cuda": cuda}, f"the driver supports CUDA up to {cuda}",
                 f"Update the NVIDIA driver, or install a torch built for CUDA {cuda} or older.")


@extractor("device-mismatch")
def _devices(text: str) -> Facts | None:
    m = re.search(r"Input type \((torch\.(?:cuda\.)?\w+Tensor)\) and weight type\s+"
                  r"\((torch\.(?:cuda\.)?\w+Tensor)\)", text)
    if m:
        inp = "cuda" if ".cuda." in m.group(1) else "cpu"
        weight = "cuda" if ".cuda." in m.group(2) else "cpu"
        if inp != weight:
            fix = ("Move the batch to the model's device: `x = x.to(next(model.parameters())."
                   "device)`." if weight == "cuda" else
                   "Move the model to the batch's device: `model.to(device)` before the forward.")
            return Facts({"input_device": inp, "weight_device": weight},
                         f"the input is on {inp}, the weights on {weight}", fix)
    m = re.search(r"Expected all tensors to be on the same device, but (?:found at least two "
                  r"devices, |got \w+ is on )([\w:]+)(?:,| and) (?:different from other tensors "
                  r"on )?([\w:]+)", text)
    if m:
        a, b = m.groups()
        return Facts({"devices": [a, b]}, f"the operation got tensors on {a} and {b}",
                     "Move every input, target and the model to one device (`.to(device)`), "
                     "including tensors created inside forward (`torch.zeros(..., device=x.device)`).")
    if "Placeholder storage has not been allocated on MPS device" in text:
        return Facts({"device": "mps"}, "a CPU tensor reached an operation running on MPS",
                     "Move the tensor (or the model) to MPS: `.to('mps')`, including tensors "
                     "created inside forward.")
    return None


# --- distributed -------------------------------------------------------------------------------

_SIGNALS = {1: "SIGHUP", 2: "SIGINT", 4: "SIGILL", 6: "SIGABRT", 7: "SIGBUS", 8: "SIGFPE",
            9: "SIGKILL", 11: "SIGSEGV", 13: "SIGPIPE", 15: "SIGTERM"}
SIGNAL_MEANING = {
    "SIGKILL": "killed, most likely by the kernel's OOM killer or a container memory limit",
    "SIGSEGV": "a segmentation fault in native code",
    "SIGABRT": "an abort in native code (a C++ exception or a failed check)",
    "SIGBUS": "a bus error, usually shared memory (/dev/shm) running out",
    "SIGILL": "an instruction this CPU does not have",
    "SIGTERM": "terminated by another process (a scheduler, or the launcher stopping it)",
    "SIGINT": "interrupted (Ctrl-C)",
    "SIGFPE": "an arithmetic fault in native code",
    "SIGHUP": "its terminal closed",
    "SIGPIPE": "it wrote to a pipe nobody reads",
}


def signal_name(number: int) -> str:
    return _SIGNALS.get(number, f"signal {number}")


@extractor("torchrun-child-failed")
def _torchrun(text: str) -> Facts | None:
    root = re.search(r"Root Cause \(first observed failure\):\s*\[\d+\]:([\s\S]{0,600})", text)
    block = root.group(1) if root else text
    rank = re.search(r"rank\s*:\s*(\d+)\s*\(local_rank:\s*(\d+)\)", block)
    code = re.search(r"exitcode\s*:\s*(-?\d+)", block)
    line = re.search(r"failed \(exitcode: (-?\d+)\) local_rank: (\d+)", text)
    if not code and line:
        code = line
    if not code:
        return None
    exitcode = int(code.group(1))
    values: dict = {"exitcode": exitcode}
    who = "a rank"
    if rank:
        values.update(rank=int(rank.group(1)), local_rank=int(rank.group(2)))
        who = f"rank {rank.group(1)} (local_rank {rank.group(2)})"
    elif line:
        values["local_rank"] = int(line.group(2))
        who = f"local_rank {line.group(2)}"
    if exitcode < 0:
        sig = signal_name(-exitcode)
        values["signal"] = sig
        said = (f"{who} failed first: it died of {sig} (exit code {exitcode}), "
                f"{SIGNAL_MEANING.get(sig, 'a signal')}")
        if sig == "SIGKILL":
            fix = ("Lower host RAM per rank (fewer DataLoader workers, no dataset held in memory "
                   "per rank) or raise the memory limit; `dmesg` shows the OOM kill.")
        elif sig in ("SIGSEGV", "SIGABRT", "SIGBUS", "SIGILL"):
            fix = (f"Rerun with `PYTHONFAULTHANDLER=1` (cvdoctor run sets it) to see where "
                   f"{who} crashed.")
        else:
            fix = ""
        return Facts(values, said, fix)
    tagged = f" (tagged `[rank{values['rank']}]:`)" if "rank" in values else ""
    return Facts(values, f"{who} failed first with exit code {exitcode}: a Python error",
                 f"Read that rank's own traceback above the summary{tagged}; decorate your entry "
                 "point with `@record` to copy it into the summary.")


@extractor("dist-port-in-use")
def _port(text: str) -> Facts | None:
    m = re.search(r"(?:port: |bind to \S*?:)(\d+)", text)
    if not m:
        return None
    port = int(m.group(1))
    return Facts({"port": port}, f"port {port} is already taken on this machine",
                 f"Use another port (`torchrun --master_port {port + 1}` or `MASTER_PORT="
                 f"{port + 1}`), or end the process that holds {port} (`ss -ltnp | grep {port}`).")


@extractor("dist-rendezvous-timeout")
def _rendezvous(text: str) -> Facts | None:
    m = re.search(r"while trying to connect to \(([^,\s]+), (\d+)\)", text)
    if m:
        host, port = m.group(1), int(m.group(2))
        return Facts({"host": host, "port": port},
                     f"this rank could not reach the store at {host}:{port}",
                     f"Check that rank 0 runs and listens on {host}:{port}, that every rank uses "
                     f"that MASTER_ADDR/MASTER_PORT, and that the port is open between the nodes "
                     f"(`nc -zv {host} {port}`).")
    m = re.search(r"world_size=(\d+), worker_count=(\d+)", text)
    if m:
        world, count = map(int, m.groups())
        return Facts({"world_size": world, "worker_count": count},
                     f"{count} processes arrived for a world size of {world}",
                     f"Start exactly {world} processes with distinct ranks, or set WORLD_SIZE to "
                     "the number you start (let torchrun set RANK and WORLD_SIZE).")
    return None


@extractor("nccl-timeout")
def _nccl_timeout(text: str) -> Facts | None:
    m = re.search(r"\[Rank (\d+)\] Watchdog caught collective operation timeout: WorkNCCL\("
                  r"SeqNum=(\d+), OpType=(\w+)[^)\n]*?Timeout\(ms\)=(\d+)\)", text)
    if not m:
        return None
    rank, seq, op, ms = int(m.group(1)), int(m.group(2)), m.group(3), int(m.group(4))
    return Facts({"rank": rank, "seq": seq, "op": op, "timeout_s": ms / 1000},
                 f"rank {rank} waited {ms / 1000:.0f} s in {op} #{seq}: another rank never "
                 "joined it", "")


@extractor("ddp-unused-parameters")
def _unused(text: str) -> Facts | None:
    m = re.search(r"Parameters which did not receive grad for rank (\d+): ([^\n]+)", text)
    if not m:
        return None
    names = [n.strip() for n in m.group(2).split(",") if n.strip()]
    modules = sorted({n.rsplit(".", 1)[0] for n in names})
    shown = ", ".join(f"`{n}`" for n in modules[:3]) + (" ..." if len(modules) > 3 else "")
    return Facts({"rank": int(m.group(1)), "parameters": names},
                 f"on rank {m.group(1)}, {len(names)} parameters got no gradient ({shown})",
                 f"Use {shown} in forward (so the loss depends on them), freeze or delete them, "
                 "or pass `find_unused_parameters=True` if they are skipped on purpose.")


# --- libraries and files -----------------------------------------------------------------------

@extractor("timm-unknown-model")
def _timm(text: str) -> Facts | None:
    m = re.search(r"Unknown model \(([^)\s]+)\)", text)
    if not m:
        return None
    name = m.group(1)
    stem = name.split(".")[0].split("_")[0]
    return Facts({"model": name}, f"this timm has no model named `{name}`",
                 f"Check the spelling with `timm.list_models('*{stem}*')`; import the file that "
                 f"registers `{name}` before `create_model`, or upgrade timm for a new "
                 "architecture.")


@extractor("hub-http-403")
def _hub(text: str) -> Facts | None:
    m = re.search(r"Access to model (\S+?) is restricted", text)
    if m:
        repo = m.group(1).rstrip(".")
        return Facts({"repo": repo}, f"`{repo}` is a gated repository",
                     f"Accept its terms on https://huggingface.co/{repo}, then log in "
                     "(`huggingface-cli login`, or set HF_TOKEN) where the code runs.")
    if re.search(r"rate limit exceeded", text, re.I):
        return Facts({"reason": "rate limit"}, "GitHub's API rate limit for anonymous "
                     "torch.hub calls ran out",
                     "Set a GITHUB_TOKEN, or call `torch.hub.load(..., trust_repo=True, "
                     "skip_validation=True)`, or load from a local clone (`source='local'`).")
    return None


@extractor("data-path-missing")
def _data_path(text: str) -> Facts | None:
    m = re.search(r"(?:No such file or directory|cannot find the path specified): '([^'\n]+)'",
                  text)
    if not m:
        return None
    path = m.group(1)
    placeholder = re.search(r"your_|path/to|/path_to|<|xxx", path, re.I)
    said = f"the dataset folder `{path}` does not exist" + (
        " (a placeholder path)" if placeholder else " here (a relative path resolves against "
        "the working directory)" if not path.startswith(("/", "\\")) and ":" not in path else "")
    return Facts({"path": path}, said, "")


@extractor("torch-save-failed")
def _save(text: str) -> Facts | None:
    if re.search(r"No space left on device|\[Errno 28\]", text):
        return Facts({"reason": "disk full"}, "the disk where the checkpoint goes is full", "")
    m = re.search(r"File ([^\n]+?) cannot be opened\.", text)
    if m:
        path = m.group(1)
        folder = path.replace("\\", "/").rsplit("/", 1)[0] if "/" in path.replace("\\", "/") \
            else "."
        return Facts({"path": path}, f"torch.save could not create `{path}`",
                     f"Create its folder first (`os.makedirs('{folder}', exist_ok=True)`), and "
                     "check that it is writable and has free space.")
    return None


@extractor("gradscaler-no-inf-checks")
def _scaler(text: str) -> Facts | None:
    if re.search(r"Attempted (?:step|update) but _scale is None", text):
        return Facts({"scale_called": False}, "`scaler.scale(...)` was never called this step",
                     "Backpropagate through the scaler: `scaler.scale(loss).backward()`, then "
                     "`scaler.step(optimizer)` and `scaler.update()`.")
    return None
