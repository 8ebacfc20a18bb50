"""model.yolo_weights: the YOLO model can be built from what is on disk, without a download."""
from __future__ import annotations

from pathlib import Path

from cvdoctor.catalog import recipe_for_error
from cvdoctor.finding import failed, passed
from cvdoctor.registry import register
from cvdoctor.text import file_size, fmt_int
from cvdoctor.yolo.contain import REFUSED_WRITE
from cvdoctor.yolo.report import error_text, names_list, short_names, skip_unless_yolo
from cvdoctor.yolo.target import asset_url, locate_weights

TITLE = "YOLO weights"
MISSING = "yolo-weights-missing"
TRAINS_AT_IMPORT = "yolo-train-at-import"
RECIPES = [MISSING, TRAINS_AT_IMPORT, "checkpoint-unsafe-pickle", "checkpoint-load-failed"]


@register("model.yolo_weights", targets=["yolo"], order=12, title=TITLE, recipes=RECIPES,
          needs=["yolo_checkpoint", "yolo_probe"], error_recipes=True)
def check(ctx):
    """Whether the model the target names can be built here: a model yaml (random weights) is
    found in ultralytics' package or as a file; a `.pt` is found where ultralytics looks (the
    path, then its weights_dir) and is read without running it (task, classes, safety).

    Fails when the weights are missing (ultralytics would download them on first use; cvdoctor
    never does), when loading the checkpoint would run code that is not ultralytics' or
    torch's, or when ultralytics cannot build the model (the error, matched to a recipe)."""
    skip = skip_unless_yolo(ctx, TITLE)
    if skip:
        return skip
    t = ctx.yolo
    if t.kind == "pt" and not t.weights_found:
        return _missing(t.weights_name, t.weights_looked)
    ckpt = ctx.fact("yolo_checkpoint")
    if ckpt is not None and ckpt.get("safety") == "denied":
        calls = ", ".join(sorted({str(f.get("global") or f.get("reason")) for f in ckpt["unsafe"]}))
        return failed(TITLE, f"{ckpt['name']}: loading it would call {calls}; cvdoctor did not "
                      "load it (ultralytics loads checkpoints with weights_only=False)",
                      "Only use checkpoints from a source you trust; re-export the weights from "
                      "the original training run.", "checkpoint-unsafe-pickle",
                      unsafe=ckpt["unsafe"])
    if ckpt is not None and ckpt.get("yolo") is None and ckpt.get("kind") in ("zip", "pickle"):
        sam = (ckpt.get("sam") or {}).get("variant")
        fix = (f"These are SAM {sam} weights: cvdoctor model segment_anything:{sam} "
               f"--checkpoint {ckpt['name']}." if sam else
               "Point at the .pt that ultralytics saved (runs/detect/train/weights/best.pt), or "
               "load this state dict into the model it came from.")
        return failed(TITLE, f"{ckpt['name']} holds no ultralytics model ({ckpt.get('tensors')} "
                      "tensors, no `model`/`ema` object): YOLO() cannot build from it", fix,
                      "checkpoint-load-failed", kind=ckpt.get("kind"), sam=sam)
    probe = ctx.fact("yolo_probe")
    model = probe.get("model") or {}
    if model.get("missing_weights"):
        _, looked = locate_weights(model["missing_weights"], Path(ctx.cwd))
        return _missing(model["missing_weights"], looked)
    if model.get("error"):
        err = model["error"]
        if t.kind == "file" and REFUSED_WRITE in err["message"]:
            refused = err["message"].split(REFUSED_WRITE, 1)[1].lstrip(": ")
            return failed(TITLE, "importing the file starts a training run (or other work that "
                                 f"writes files) at import: {refused}; nothing was written",
                          "Put model.train(...) under `if __name__ == \"__main__\":` so that "
                          "importing the file only builds the model; cvdoctor still reads the "
                          ".train(...) keywords from the source.", TRAINS_AT_IMPORT,
                          error=err["message"], traceback=err.get("traceback"))
        match = recipe_for_error(err["message"], err.get("traceback", ""))
        recipe = match.recipe if match else "checkpoint-load-failed"
        what = "importing the file" if t.kind == "file" else f"building {Path(t.value).name}"
        return failed(TITLE, f"{what} failed: {error_text(err)}",
                      f"See `cvdoctor explain {recipe}`; -v shows the traceback.", recipe,
                      error=err["message"], traceback=err.get("traceback"))
    return passed(TITLE, _describe(t, model, ckpt), task=model.get("task"),
                  nc=model.get("nc"), params=model.get("params"))


def _missing(name: str, looked: list[str]):
    url = asset_url(name)
    where = f"; looked in {', '.join(looked)}" if looked else ""
    stem = Path(name).stem
    get = f"`wget {url}`" if url else "copy the file here"
    return failed(TITLE, f"{name} is not on this machine{where}. ultralytics would download it "
                  "on first use; cvdoctor never downloads (offline machines fail there)",
                  f"Download it once ({get}) and pass its path, or train from random weights "
                  f"with ultralytics:{stem}.yaml.", MISSING, weights=name, looked=looked, url=url)


def _describe(t, model: dict, ckpt: dict | None) -> str:
    params = fmt_int(model.get("params") or 0)
    found = f" (built by `{model['found_as']}` in the file)" if model.get("found_as") else ""
    if not model.get("from_checkpoint"):
        return (f"{Path(model.get('yaml_file') or t.value).name}{found}: {model.get('cls')}, "
                f"{params} parameters, random weights (nothing downloaded)")
    names = names_list(model.get("names"))
    src = f"{Path(ckpt['path']).name} ({file_size(ckpt.get('size'))})" if ckpt else \
        (Path(model.get("ckpt_path") or "").name or "the model")
    classes = "placeholder class names" if model.get("placeholder_names") else \
        f"{len(names)} classes ({short_names(names)})"
    safety = ""
    if ckpt and ckpt.get("safety") == "library":
        safety = "; read without running it: only torch and ultralytics classes"
    return f"{src}{found}: {model.get('task')}, {classes}, {params} parameters{safety}"

