"""Does a checkpoint fit a model? Pure functions over ``{key: Spec(shape, dtype)}`` maps.

1. **Unwrap**: the state dict may sit in a container (Lightning's ``state_dict``, a
   ``{'model', 'optimizer', 'epoch'}`` dict, EMA copies, ultralytics' ``model``/``ema`` modules, a
   pickled ``nn.Module``). Every container the structure reader found is a candidate.
2. **Align** key prefixes: ``module.`` (DataParallel/DDP), ``_orig_mod.`` (``torch.compile``),
   ``model.``, ``backbone.``, ... The transform "strip P, add Q" that matches the most keys, with
   equal shapes counting first, wins.
3. **Classify** what is left: a head of another size ("checkpoint has 1000 classes, the model
   10"), another variant or family (resnet50 weights into resnet18; SAM vit_l into vit_b, by embed
   width and depth), half-precision tensors, only ``num_batches_tracked`` missing (benign), and
   the share of the model's parameters that would really be loaded.
4. **Code**: the exact lines that load this file into this model.

Nothing here needs torch: the model side comes in as the same kind of map
(``specs_from_state_dict(model.state_dict())``).
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping

LOADED_FRACTION_WARN = 0.90  # below this share of parameters, strict=False hides a bad load
HALF_DTYPES = {"float16", "bfloat16"}
MAX_PREFIX_DEPTH = 3
MIN_TRANSFORM_SHARE = 0.5  # a prefix transform must explain at least half the keys
# Container names in the order people put state dicts in them (first match wins a tie).
CONTAINER_PREFERENCE = ("state_dict", "model_state_dict", "model_state", "model", "module",
                        "net", "network", "params", "weights", "student", "teacher",
                        "ema", "model_ema", "state_dict_ema", "ema_state_dict", "shadow")
BENIGN_SUFFIXES = ("num_batches_tracked",)


@dataclass(frozen=True)
class Spec:
    shape: tuple[int, ...]
    dtype: str

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


def specs(tensors: Mapping[str, Any]) -> dict[str, Spec]:
    """Specs from the structure reader's tensor dicts (or anything with shape and dtype)."""
    out = {}
    for k, v in tensors.items():
        if isinstance(v, Spec):
            out[k] = v
        elif isinstance(v, Mapping):
            out[k] = Spec(tuple(v.get("shape") or ()), str(v.get("dtype")))
        else:
            out[k] = Spec(tuple(getattr(v, "shape", ())), str(getattr(v, "dtype", "")).replace("torch.", ""))
    return out


def specs_from_state_dict(state: Mapping[str, Any]) -> dict[str, Spec]:
    """From a real state dict (torch tensors): shapes and dtypes only."""
    return {k: Spec(tuple(v.shape), str(v.dtype).replace("torch.", ""))
            for k, v in state.items() if hasattr(v, "shape")}


# --- 1. containers -------------------------------------------------------------------------------

@dataclass
class Candidate:
    path: str  # "" for the top level
    kind: str  # dict | module | object
    cls: str | None
    tensors: dict[str, Spec]


def candidates(tensors: Mapping[str, Any], containers: Iterable[Mapping[str, Any]] = (),
               top: Mapping[str, Any] | None = None) -> list[Candidate]:
    """Every container that holds tensors, as a state dict relative to it."""
    all_specs = specs(tensors)
    top = top or {}
    out = [Candidate("", top.get("type") or "dict", top.get("class"), all_specs)]
    for c in containers:
        path = c.get("path") or ""
        if not path:
            continue
        pre = path + "."
        sub = {k[len(pre):]: v for k, v in all_specs.items() if k.startswith(pre)}
        if sub:
            out.append(Candidate(path, c.get("type") or "dict", c.get("class"), sub))
    return out


# --- 2. prefixes ---------------------------------------------------------------------------------

@dataclass
class Alignment:
    strip: str = ""
    add: str = ""
    matched: int = 0  # keys that map onto a model key
    same_shape: int = 0

    def apply(self, key: str) -> str | None:
        if not key.startswith(self.strip):
            return None
        return self.add + key[len(self.strip):]


def _prefixes(key: str) -> list[tuple[str, str]]:
    """(prefix, rest) at each of the first dots, starting with ('', key)."""
    out = [("", key)]
    pos = 0
    for _ in range(MAX_PREFIX_DEPTH):
        dot = key.find(".", pos)
        if dot < 0:
            break
        out.append((key[:dot + 1], key[dot + 1:]))
        pos = dot + 1
    return out


def align(ckpt: Mapping[str, Spec], model: Mapping[str, Spec]) -> Alignment:
    """The 'strip P, add Q' transform under which the most checkpoint keys land on model keys."""
    by_rest: dict[str, list[tuple[str, str]]] = {}
    for mk in model:
        for pre, rest in _prefixes(mk):
            if rest:
                by_rest.setdefault(rest, []).append((pre, mk))
    votes: dict[tuple[str, str], list[int]] = {}
    for ck, spec in ckpt.items():
        for strip, rest in _prefixes(ck):
            for add, mk in by_rest.get(rest, ()):
                v = votes.setdefault((strip, add), [0, 0])
                v[0] += 1
                v[1] += model[mk].shape == spec.shape
    if not votes:
        return Alignment()
    (strip, add), (matched, same) = max(
        votes.items(), key=lambda kv: (kv[1][1], kv[1][0], -len(kv[0][0]) - len(kv[0][1])))
    if (strip or add) and (same < 1 or same < MIN_TRANSFORM_SHARE * min(len(ckpt), len(model))):
        # A couple of keys that happen to line up (fc. -> head.) is no prefix: keep keys as they are.
        same_id = votes.get(("", ""), [0, 0])
        return Alignment("", "", same_id[0], same_id[1])
    return Alignment(strip, add, matched, same)


# --- 3. what is left -----------------------------------------------------------------------------

@dataclass
class Diagnosis:
    container: str
    container_kind: str
    container_class: str | None
    strip: str
    add: str
    matched: int
    model_keys: int
    checkpoint_keys: int
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[dict[str, Any]] = field(default_factory=list)
    benign_missing: list[str] = field(default_factory=list)
    loaded_fraction: float = 0.0
    loaded_params: int = 0
    model_params: int = 0
    half: dict[str, int] = field(default_factory=dict)
    head: dict[str, Any] | None = None
    checkpoint_arch: dict[str, Any] | None = None
    model_arch: dict[str, Any] | None = None
    verdict: str = "fits"  # fits | prefix | head | variant | partial | unrelated | empty
    summary: str = ""
    code: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _parent(key: str) -> str:
    return key.rsplit(".", 1)[0] if "." in key else ""


def _head(mismatched: list[dict[str, Any]], model_order: list[str]) -> dict[str, Any] | None:
    """Mismatches confined to the model's last layers and to the output dimension: a head of
    another size."""
    if not mismatched:
        return None
    pos = {k: i for i, k in enumerate(model_order)}
    n = len(model_order)
    for m in mismatched:
        cs, ms = m["checkpoint_shape"], m["model_shape"]
        if len(cs) != len(ms) or cs[1:] != ms[1:] or cs[0] == ms[0]:
            return None
        if pos.get(m["key"], 0) < 0.8 * n:
            return None
    pairs = sorted({(m["checkpoint_shape"][0], m["model_shape"][0]) for m in mismatched})
    modules = sorted({_parent(m["key"]) for m in mismatched})
    out: dict[str, Any] = {"modules": modules, "keys": [m["key"] for m in mismatched]}
    if len(pairs) == 1:
        out["checkpoint_classes"], out["model_classes"] = pairs[0]
    else:
        # YOLO-style heads: several output convs, the class count is the most common out dim.
        out["checkpoint_classes"] = min(p[0] for p in pairs)
        out["model_classes"] = min(p[1] for p in pairs)
    return out


def describe_architecture(keys: Mapping[str, Spec]) -> dict[str, Any] | None:
    """Family and variant from key names and shapes (resnet, SAM, ViT, YOLOv8)."""
    if not keys:
        return None
    from cvdoctor.checkpoint.known import sam_variant

    sam = sam_variant({k: {"shape": list(v.shape)} for k, v in keys.items()})
    if sam and sam.get("embed_dim"):
        return {"family": "sam", "variant": sam["variant"] or f"embed {sam['embed_dim']}",
                "embed_dim": sam["embed_dim"], "depth": sam["depth"]}
    if "layer1.0.conv1.weight" in keys and "conv1.weight" in keys:
        bottleneck = "layer1.0.conv3.weight" in keys
        blocks = []
        for layer in range(1, 5):
            idx = {int(k.split(".")[1]) for k in keys if k.startswith(f"layer{layer}.")
                   and k.split(".")[1].isdigit()}
            blocks.append(max(idx) + 1 if idx else 0)
        if 0 in blocks:  # only some stages: a partial checkpoint, not another variant
            return {"family": "resnet", "variant": None, "blocks": blocks, "partial": True}
        name = {((2, 2, 2, 2), False): "resnet18", ((3, 4, 6, 3), False): "resnet34",
                ((3, 4, 6, 3), True): "resnet50", ((3, 4, 23, 3), True): "resnet101",
                ((3, 8, 36, 3), True): "resnet152"}.get((tuple(blocks), bottleneck))
        width = keys["layer1.0.conv2.weight"].shape[0] if "layer1.0.conv2.weight" in keys else None
        if name == "resnet50" and width and width > 64:
            name = "wide_resnet50_2"
        return {"family": "resnet", "variant": name or f"resnet with blocks {blocks}",
                "blocks": blocks, "bottleneck": bottleneck}
    if "patch_embed.proj.weight" in keys and any(k.startswith("blocks.") for k in keys):
        dim = keys["patch_embed.proj.weight"].shape[0]
        depth = 1 + max(int(k.split(".")[1]) for k in keys if k.startswith("blocks.")
                        and k.split(".")[1].isdigit())
        name = {(192, 12): "vit_tiny", (384, 12): "vit_small", (768, 12): "vit_base",
                (1024, 24): "vit_large", (1280, 32): "vit_huge"}.get((dim, depth))
        return {"family": "vit", "variant": name or f"vit embed {dim} depth {depth}",
                "embed_dim": dim, "depth": depth}
    if "conv_proj.weight" in keys and any(k.startswith("encoder.layers.") for k in keys):
        dim = keys["conv_proj.weight"].shape[0]
        depth = len({k.split(".")[2] for k in keys if k.startswith("encoder.layers.")})
        return {"family": "vit", "variant": {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}.get(
            dim, f"vit embed {dim}"), "embed_dim": dim, "depth": depth}
    first = keys.get("model.0.conv.weight")
    if first is not None and len(first.shape) == 4 and first.shape[1] == 3:
        scale = {16: "n", 32: "s", 48: "m", 64: "l", 80: "x"}.get(first.shape[0])
        return {"family": "yolov8", "variant": f"yolov8{scale}" if scale else
                f"yolo width {first.shape[0]}"}
    return None


def _numel(keys: Iterable[str], table: Mapping[str, Spec]) -> int:
    return sum(table[k].numel for k in keys if k in table)


def diagnose(ckpt: Mapping[str, Any], model: Mapping[str, Any], *,
             containers: Iterable[Mapping[str, Any]] = (), top: Mapping[str, Any] | None = None,
             param_keys: Iterable[str] | None = None) -> Diagnosis:
    """Best container + alignment, and what a load would do. `ckpt` is the structure reader's
    flat tensor map; `param_keys` names the model's parameters (buffers excluded)."""
    model_specs = specs(model)
    order = list(model_specs)
    best = None
    for cand in candidates(ckpt, containers, top):
        al = align(cand.tensors, model_specs)
        pref = (CONTAINER_PREFERENCE.index(cand.path.rsplit(".", 1)[-1])
                if cand.path.rsplit(".", 1)[-1] in CONTAINER_PREFERENCE else len(CONTAINER_PREFERENCE))
        score = (al.same_shape, al.matched, -len(al.strip) - len(al.add), cand.path == "", -pref)
        if best is None or score > best[0]:
            best = (score, cand, al)
    _, cand, al = best
    d = Diagnosis(cand.path, cand.kind, cand.cls, al.strip, al.add, 0, len(model_specs),
                  len(cand.tensors))
    mapped: dict[str, str] = {}
    for ck in cand.tensors:
        mk = al.apply(ck)
        if mk is not None and mk in model_specs:
            mapped[mk] = ck
        else:
            d.unexpected.append(ck)
    for mk in order:
        if mk not in mapped:
            (d.benign_missing if mk.endswith(BENIGN_SUFFIXES) else d.missing).append(mk)
            continue
        cs, ms = cand.tensors[mapped[mk]], model_specs[mk]
        if cs.shape != ms.shape:
            d.mismatched.append({"key": mk, "checkpoint_key": mapped[mk],
                                 "checkpoint_shape": list(cs.shape), "model_shape": list(ms.shape)})
        else:
            d.matched += 1
            if cs.dtype in HALF_DTYPES and ms.dtype not in HALF_DTYPES:
                d.half[cs.dtype] = d.half.get(cs.dtype, 0) + 1
    params = set(param_keys) if param_keys is not None else {
        k for k, v in model_specs.items() if v.dtype.startswith(("float", "bfloat", "complex"))
        and not k.endswith(("running_mean", "running_var"))}
    bad = {m["key"] for m in d.mismatched}
    d.model_params = _numel(params, model_specs)
    d.loaded_params = _numel((k for k in params if k in mapped and k not in bad), model_specs)
    d.loaded_fraction = round(d.loaded_params / d.model_params, 4) if d.model_params else 0.0
    d.head = _head(d.mismatched, order) if not d.missing else None
    stripped = {al.apply(k) or k: v for k, v in cand.tensors.items()}
    d.checkpoint_arch = describe_architecture(stripped)
    d.model_arch = describe_architecture(model_specs)
    _verdict(d)
    return d


def _verdict(d: Diagnosis) -> None:
    transform = bool(d.strip or d.add)
    ca, ma = d.checkpoint_arch or {}, d.model_arch or {}
    if d.checkpoint_keys == 0:
        d.verdict, d.summary = "empty", "the checkpoint holds no tensors"
        return
    if d.matched == 0 and not d.mismatched:
        d.verdict = "unrelated"
        d.summary = (f"none of the checkpoint's {d.checkpoint_keys} keys match the model's "
                     f"{d.model_keys}: another architecture")
    elif ca.get("family") and ca.get("family") == ma.get("family") and ca.get("variant") and \
            ma.get("variant") and ca["variant"] != ma["variant"] and (
                d.missing or d.unexpected or len(d.mismatched) > 2):
        d.verdict = "variant"
        d.summary = f"{_arch(ca)} weights into a {_arch(ma)} model"
    elif ca.get("variant") and ma.get("family") and ca.get("family") != ma["family"]:
        d.verdict = "variant"
        d.summary = f"{_arch(ca)} weights into a {_arch(ma)} model"
    elif d.head and not d.missing:
        d.verdict = "head"
        h = d.head
        d.summary = (f"checkpoint has {h['checkpoint_classes']} classes, the model "
                     f"{h['model_classes']} ({', '.join(h['modules'][:3])})")
    elif d.missing or d.mismatched:
        d.verdict = "partial"
        d.summary = (f"{d.matched} of {d.model_keys} model keys load; {len(d.missing)} missing, "
                     f"{len(d.mismatched)} of another shape")
    elif transform:
        d.verdict = "prefix"
        d.summary = "keys need " + _transform_words(d.strip, d.add)
    else:
        d.verdict = "fits"
        d.summary = f"all {d.matched} model keys load"
    if d.verdict in ("head", "partial", "fits") and transform:
        d.summary += "; keys need " + _transform_words(d.strip, d.add)
    if d.half:
        kinds = ", ".join(sorted(d.half))
        d.summary += (f"; {sum(d.half.values())} tensors stored as {kinds} (load_state_dict "
                      "copies them into the model's dtype; the values keep half precision)")
    if d.unexpected and d.verdict == "fits":
        d.summary += f"; {len(d.unexpected)} checkpoint keys unused"


def _arch(a: dict[str, Any]) -> str:
    if a.get("family") == "sam":
        return f"SAM {a['variant']} (embed {a['embed_dim']}, {a['depth']} blocks)"
    if a.get("family") == "vit" and a.get("embed_dim"):
        return f"{a['variant']} (embed {a['embed_dim']}, depth {a.get('depth')})"
    return str(a.get("variant"))


def _transform_words(strip: str, add: str) -> str:
    parts = []
    if strip:
        parts.append(f"'{strip}' removed")
    if add:
        parts.append(f"'{add}' added")
    return " and ".join(parts)


# --- 4. the loading code -------------------------------------------------------------------------

_IDENT = re.compile(r"^[A-Za-z_]\w*$")


def _subscript(path: str) -> str:
    return "".join(f"[{int(p)}]" if p.isdigit() else f"[{p!r}]" for p in path.split(".")) if path else ""


MAX_SAFE_GLOBALS_SHOWN = 6  # more classes than this: a whole pickled model, say so instead


def loading_code(d: Diagnosis, path: str, *, model_name: str = "model", fmt: str = "torch-zip",
                 weights_only: bool = True, skip_head: bool = False,
                 safe_globals: list[str] | None = None) -> list[str]:
    """The lines that load `path` into `model_name`, given the diagnosis. `safe_globals`
    ("module.Name" classes the scan judged library code) keeps weights_only=True for files that
    pickle a few library objects (argparse.Namespace, pathlib paths)."""
    lines: list[str] = []
    if fmt == "safetensors":
        lines += ["from safetensors.torch import load_file", f"ckpt = load_file({path!r})"]
    else:
        if not weights_only and safe_globals and len(safe_globals) <= MAX_SAFE_GLOBALS_SHOWN:
            modules = sorted({g.rpartition(".")[0] for g in safe_globals})
            lines += [f"import {m}" for m in modules if m != "torch"] + ["import torch"]
            lines.append("# the file pickles these library objects; allow exactly them")
            lines.append(f"with torch.serialization.safe_globals([{', '.join(safe_globals)}]):")
            lines.append(f"    ckpt = torch.load({path!r}, map_location='cpu', weights_only=True)")
            weights_only = True
        else:
            lines.append("import torch")
        if weights_only and not lines[-1].startswith("    ckpt"):
            lines.append(f"ckpt = torch.load({path!r}, map_location='cpu', weights_only=True)")
        elif not weights_only:
            lines.append("# the file pickles whole objects: only load it if you trust its source")
            lines.append(f"ckpt = torch.load({path!r}, map_location='cpu', weights_only=False)")
    expr = "ckpt" + _subscript(d.container)
    if d.container_kind == "module":
        lines.append(f"state = {expr}.float().state_dict()")
    elif d.container:
        lines.append(f"state = {expr}")
    else:
        lines.append("state = ckpt")
    if d.strip and d.add:
        lines.append(f"state = {{{d.add!r} + k.removeprefix({d.strip!r}): v for k, v in state.items()"
                     f" if k.startswith({d.strip!r})}}")
    elif d.strip:
        lines.append(f"state = {{k.removeprefix({d.strip!r}): v for k, v in state.items()"
                     f" if k.startswith({d.strip!r})}}")
    elif d.add:
        lines.append(f"state = {{{d.add!r} + k: v for k, v in state.items()}}")
    if d.verdict == "head" or skip_head:
        head = d.head or {}
        keys = sorted(head.get("keys", []))
        lines.append(f"head = {keys!r}  # checkpoint has {head.get('checkpoint_classes')} "
                     f"classes, the model {head.get('model_classes')}")
        lines.append("state = {k: v for k, v in state.items() if k not in head}")
        lines.append(f"missing, unexpected = {model_name}.load_state_dict(state, strict=False)")
        lines.append("assert set(missing) <= set(head) and not unexpected, (missing, unexpected)")
    elif d.verdict in ("fits", "prefix"):
        if d.benign_missing and not d.missing:
            lines.append(f"missing, unexpected = {model_name}.load_state_dict(state, strict=False)")
            lines.append("assert all(k.endswith('num_batches_tracked') for k in missing) "
                         "and not unexpected")
        elif d.unexpected:
            lines.append(f"missing, unexpected = {model_name}.load_state_dict(state, strict=False)")
            lines.append(f"assert not missing  # {len(d.unexpected)} extra checkpoint keys are "
                         "ignored")
        else:
            lines.append(f"{model_name}.load_state_dict(state)  # strict: every key matches")
    elif d.verdict == "variant":
        lines = _right_model_code(d, path, lines, model_name)
    else:
        lines.append(f"missing, unexpected = {model_name}.load_state_dict(state, strict=False)")
        lines.append(f"# only {d.loaded_fraction:.0%} of the model's parameters come from the file")
    return lines


def _right_model_code(d: Diagnosis, path: str, lines: list[str], model_name: str) -> list[str]:
    """For weights of another variant: build the model they belong to instead."""
    a = d.checkpoint_arch or {}
    family, variant = a.get("family"), a.get("variant")
    if family == "sam" and variant in ("vit_b", "vit_l", "vit_h"):
        return ["from segment_anything import sam_model_registry",
                f"{model_name} = sam_model_registry[{variant!r}](checkpoint={path!r})"]
    if family == "resnet" and variant and variant.startswith(("resnet", "wide_resnet")):
        return lines[:-1] + [f"# these are {variant} weights: build the model they belong to",
                             "import torchvision",
                             f"{model_name} = torchvision.models.{variant}(weights=None)",
                             lines[-1], f"{model_name}.load_state_dict(state)"]
    if family == "yolov8":
        return ["from ultralytics import YOLO", f"{model_name} = YOLO({path!r})"]
    return lines[:-1] + [f"# these weights are {variant or 'another architecture'}: build that "
                         "model, then load them strictly", lines[-1],
                         f"{model_name}.load_state_dict(state)"]
