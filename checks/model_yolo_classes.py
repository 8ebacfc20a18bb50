"""model.yolo_classes: the model's classes against the dataset's, and a checkpoint's against
both."""
from __future__ import annotations

from pathlib import Path

from cvdoctor.catalog import recipe_for_error
from cvdoctor.finding import Problem, failed, report_problems, skipped
from cvdoctor.registry import register
from cvdoctor.yolo.report import (data_missing, error_text, names_list, short_names,
                                  skip_unless_yolo)

TITLE = "YOLO classes: model, dataset, checkpoint"
ORDER = "yolo-class-order"
COUNT = "yolo-class-count"
DATA_YAML = "yolo-data-yaml"
DATA_PATH = "yolo-dataset-path"
RECIPES = [ORDER, COUNT, DATA_YAML, DATA_PATH]


def _norm(name: str) -> str:
    return str(name).strip().lower()


@register("model.yolo_classes", targets=["yolo"], order=14, title=TITLE, recipes=RECIPES,
          needs=["yolo_probe", "yolo_checkpoint", "yolo_data"])
def check(ctx):
    """Reads the dataset the way ultralytics does (its own `check_det_dataset`) and compares its
    class names with the model's and, when fine-tuning a `.pt`, with the checkpoint's, row by row
    in the head ultralytics' trainer really builds.

    Fails when ultralytics refuses the data.yaml (names/nc, missing splits), and when a class of
    the dataset starts from the checkpoint's head row of another class (the same names in another
    order: a silent label swap; ultralytics remaps rows by name only from 8.4 with
    `cls_remap=True`). Warns when a model yaml of your own declares another class count than the
    dataset (ultralytics overrides it with one log line)."""
    skip = skip_unless_yolo(ctx, TITLE)
    if skip:
        return skip
    probe = ctx.fact("yolo_probe")
    data = probe.get("data") or {}
    if probe.get("skipped") or not probe.get("model") or "task" not in probe["model"]:
        static = _static_checkpoint_order(ctx, probe)
        if static is not None:
            return static
        return skipped(TITLE, "no model to compare (see model.yolo_weights)")
    if data.get("error"):
        err = data["error"]
        match = recipe_for_error(err["message"], allowed={DATA_YAML, DATA_PATH})
        recipe = match.recipe if match else DATA_YAML
        return failed(TITLE, f"ultralytics refuses {data.get('yaml')}: {error_text(err)}",
                      f"Fix the data.yaml as `cvdoctor explain {recipe}` shows; `cvdoctor data "
                      f"{data.get('yaml')}` lists every problem.", recipe, error=err["message"])
    if data.get("no_images"):  # ultralytics stops on it when the trainer builds its dataset
        train = data.get("train")
        shown = ", ".join(train) if isinstance(train, list) else str(train)
        return failed(TITLE, f"the training split of {data.get('yaml')} lists no images "
                             f"({shown}): ultralytics stops with 'No images found' when training "
                             "starts",
                      "Point train: at a folder (or .txt list) of images, relative to path: in "
                      f"the data.yaml; `cvdoctor data {data.get('yaml')}` shows where each split "
                      "resolves.", DATA_PATH, train=train)
    why = data_missing(probe)
    if why:
        return skipped(TITLE, why)
    model = probe["model"]
    data_names = names_list(data.get("names"))
    problems: list[Problem] = []
    notes: list[str] = []
    t = ctx.yolo
    if t.kind == "yaml" or (not model.get("from_checkpoint")):
        yaml_nc, yaml_file = model.get("yaml_nc"), model.get("yaml_file") or t.value
        user_yaml = t.user_yaml or model.get("user_yaml")
        if user_yaml and isinstance(yaml_nc, int) and yaml_nc != len(data_names):
            problems.append(Problem(
                "warn", COUNT,
                f"{Path(str(yaml_file)).name} declares nc: {yaml_nc}, the dataset has "
                f"{len(data_names)} classes ({short_names(data_names)}); ultralytics overrides "
                f"the yaml with {len(data_names)} and says so in one log line",
                f"Set nc: {len(data_names)} in {Path(str(yaml_file)).name}, or train on the "
                "dataset it was written for.", {"yaml_nc": yaml_nc, "data_nc": len(data_names)}))
        else:
            notes.append(f"the trainer builds the head for the dataset's {len(data_names)} "
                         f"classes ({short_names(data_names)})"
                         + (f"; the yaml's {yaml_nc} are a default" if yaml_nc
                            and yaml_nc != len(data_names) else ""))
    else:
        problems += _checkpoint_rows(probe, data_names, notes)
    return report_problems(TITLE, problems, "; ".join(notes) or "classes agree",
                           data_names=data_names[:100], model_nc=model.get("nc"))


def _checkpoint_rows(probe: dict, data_names: list[str], notes: list[str]) -> list[Problem]:
    model = probe["model"]
    ck_names = names_list(model.get("names"))
    rows = (probe.get("head_rows") or {})
    version = probe.get("ultralytics", "?")
    remap = (probe.get("trainer") or {}).get("cls_remap")
    if not rows.get("checked"):
        return _by_names(ck_names, data_names, notes, version, measured=False)
    swapped = [r for r in rows["rows"] if r["source"] == "index"
               and r.get("checkpoint_index_of_name") is not None
               and r["checkpoint_index_of_name"] != r["class"]]
    by_name = [r for r in rows["rows"] if r["source"] == "name"
               and r.get("checkpoint_index_of_name") != r["class"]]
    fresh = [r for r in rows["rows"] if r["source"] == "new"]
    if swapped:
        first = swapped[0]
        pairs = "; ".join(f"class {r['class']} {r['name']!r} starts from the checkpoint's "
                          f"{r['checkpoint_name_at_index']!r}" for r in swapped[:3])
        more = f" and {len(swapped) - 3} more" if len(swapped) > 3 else ""
        return [Problem(
            "fail", ORDER,
            f"the checkpoint knows the same classes in another order and ultralytics "
            f"{version}{' with cls_remap=False' if remap is False else ''} copies its head by "
            f"position: {pairs}{more}. Training starts with the labels swapped",
            "Keep the checkpoint's class order in data.yaml (names: "
            f"{ck_names[:6]}{'...' if len(ck_names) > 6 else ''}) and remap the label files, "
            "or set cls_remap=True (ultralytics >= 8.4).",
            {"swapped": swapped[:20], "checkpoint_names": ck_names[:100],
             "first": first, "cls_remap": remap})]
    if by_name:
        notes.append(f"ultralytics {version} remapped {len(by_name)} head rows by class name "
                     f"(cls_remap=True): the checkpoint's order differs from the dataset's; "
                     "older releases, or cls_remap=False, copy rows by position")
    if fresh and len(fresh) == len(rows["rows"]):
        notes.append(f"the checkpoint's {rows.get('checkpoint_nc')}-class head "
                     f"({short_names(ck_names)}) is replaced: the dataset's "
                     f"{len(data_names)} classes start from fresh rows")
    elif fresh:
        notes.append(f"{len(fresh)} of the dataset's {len(data_names)} classes are new to the "
                     "checkpoint (fresh head rows)")
    kept = [r for r in rows["rows"] if r["source"] == "index"]
    if kept and not by_name:
        same = all(r.get("checkpoint_name_at_index") is not None
                   and _norm(r["checkpoint_name_at_index"]) == _norm(r["name"]) for r in kept)
        notes.append("checkpoint and dataset classes match in order" if same else
                     f"{len(kept)} head rows are copied by position from classes of other names "
                     "(no name in common moved)")
    return []


def _by_names(ck: list[str], data: list[str], notes: list[str], version: str,
              measured: bool) -> list[Problem]:
    """Without the trainer's head: the names alone."""
    if len(ck) == len(data):
        ck_index = {_norm(n): i for i, n in enumerate(ck)}
        moved = [(i, n, ck_index[_norm(n)]) for i, n in enumerate(data)
                 if _norm(n) in ck_index and ck_index[_norm(n)] != i]
        if moved:
            i, n, j = moved[0]
            return [Problem(
                "warn", ORDER,
                f"the checkpoint has the dataset's classes in another order ({n!r} is class {i} "
                f"in the dataset, {j} in the checkpoint, and {len(moved) - 1} more moved): "
                "ultralytics copies the head by position unless it remaps by name "
                "(8.4+, cls_remap=True), and a swap then goes unnoticed",
                "Keep the checkpoint's class order in data.yaml and remap the label files.",
                {"moved": moved[:20], "checkpoint_names": ck[:100]})]
    if ck:
        notes.append(f"checkpoint classes {short_names(ck)}; dataset {short_names(data)}")
    return []


def _static_checkpoint_order(ctx, probe: dict):
    """When nothing ran (no model built), the checkpoint's names read from the file and the
    dataset's read by the dataset library still say whether the dataset reorders them."""
    ckpt = ctx.fact("yolo_checkpoint")
    static = ctx.fact("yolo_data") or {}
    data_names = names_list((probe.get("data") or {}).get("names")) or \
        names_list(static.get("names"))
    if not ckpt or not ckpt.get("yolo") or not data_names:
        return None
    problems = _by_names(names_list(ckpt["yolo"].get("names")), data_names, [],
                         probe.get("ultralytics", "?"), measured=False)
    return report_problems(TITLE, problems, "") if problems else None
