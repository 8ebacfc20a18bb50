"""`cvdoctor model` on SAM set-ups: the checkpoint against the model type by its shapes, the
set_image contract, the prompts of predict, the encoder's memory, and mask-decoder fine-tuning.

Set-ups run on a tiny SAM built from segment-anything's own modules (same predictor code, random
weights); checkpoints carry real vit_b/vit_l key names and shapes in 100 KB (sam_helpers)."""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest

pytest.importorskip("segment_anything")
torch = pytest.importorskip("torch")

from sam_helpers import (ENCODE_NO_GRAD, ENCODE_WITH_GRAD,  # noqa: E402
                         SETUP_HEAD, shaped_checkpoint, write_finetune,
                         write_setup)
from yolo_helpers import findings, run_model, statuses  # noqa: E402


@pytest.fixture(autouse=True)
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def vit_b_file(tmp_path_factory):
    return shaped_checkpoint(tmp_path_factory.mktemp("ck") / "vitb_finetuned.pth", "vit_b")


def run(target: str, *args: str) -> dict:
    return run_model(target, *args)[1]


# --- a healthy set-up and what runs ---------------------------------------------------------

def test_healthy_inference_setup(work):
    write_setup(work / "segment.py")
    report = run("segment.py")
    got = statuses(report)
    assert got["model.sam_image"] == [("pass", None)]
    assert got["model.sam_prompts"] == [("pass", None)]
    assert got["model.sam_finetune"][0][0] == "skip"
    # an inference set-up has no loss: the classification checks are not part of its run
    assert all(c.startswith("model.sam_") for c in got), sorted(got)
    msg = findings(report)["model.sam_image"][0]["message"]
    assert "48x80x3 uint8" in msg and "a tiny SAM" in msg
    assert "1 point, multimask_output=True, predict -> masks [3, 48, 80]" in \
        findings(report)["model.sam_prompts"][0]["message"]


# --- the image contract ----------------------------------------------------------------------

IMAGES = {
    "float01": ("return (rng.integers(0, 256, (48, 80, 3)) / 255.0).astype(np.float32)",
                ("pass", None), "float 0-1 works"),
    "float255": ("return rng.integers(0, 256, (48, 80, 3)).astype(np.float32)",
                 ("fail", "sam-image-colors"), "wrapped noise"),
    "gray": ("return rng.integers(0, 256, (48, 80), dtype=np.uint8)",
             ("fail", "sam-input-format"), "grayscale"),
    "rgba": ("return rng.integers(0, 256, (48, 80, 4), dtype=np.uint8)",
             ("fail", "sam-input-format"), "RGBA"),
    "chw": ("return rng.integers(0, 256, (3, 48, 80), dtype=np.uint8)",
            ("fail", "sam-input-format"), "channels-first"),
    "uint16": ("return rng.integers(0, 65535, (48, 80, 3), dtype=np.uint16)",
               ("fail", "sam-input-format"), "dtype uint16"),
    "path": ("return 'photo.jpg'", ("fail", "sam-input-format"), "a path"),
    "pil": ("from PIL import Image\n    return Image.new('RGB', (80, 48))",
            ("fail", "sam-input-format"), "PIL image"),
    "tensor": ("import torch\n    return torch.zeros(3, 48, 80)",
               ("fail", "sam-input-format"), "a tensor"),
}


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_image_contract(work, name):
    body, expected, words = IMAGES[name]
    image = f"def get_image():\n    rng = np.random.default_rng(0)\n    {body}\n"
    write_setup(work / "segment.py", image=image)
    report = run("segment.py", "--select", "model.sam_image")
    assert statuses(report)["model.sam_image"] == [expected], findings(report)
    assert words in findings(report)["model.sam_image"][0]["message"]


def _photo(work: Path) -> None:
    import numpy as np
    from PIL import Image

    Image.fromarray(np.random.default_rng(1).integers(0, 256, (48, 80, 3), dtype=np.uint8)) \
        .save(work / "photo.jpg")


@pytest.mark.parametrize("image, extra, expected", [
    ("def get_image():\n    img = cv2.imread('photo.jpg')\n    return img\n", "",
     [("warn", "sam-image-colors")]),
    ("def get_image():\n    img = cv2.imread('photo.jpg')\n"
     "    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)\n", "", [("pass", None)]),
    ("def get_image():\n    return cv2.imread('photo.jpg')[..., ::-1]\n", "", [("pass", None)]),
    ("def get_image():\n    return cv2.imread('photo.jpg')\n",
     "def segment():\n    predictor.set_image(get_image(), image_format='BGR')\n",
     [("pass", None)]),
    (None, "image = cv2.imread('photo.jpg')\nsmall = cv2.resize(image, (40, 24))\n"
     "predictor.set_image(small)\n", [("warn", "sam-image-colors")]),
])
def test_opencv_images_are_bgr(work, image, extra, expected):
    _photo(work)
    write_setup(work / "segment.py", image=image, head="import cv2\n" + SETUP_HEAD, extra=extra)
    report = run("segment.py", "--select", "model.sam_image")
    assert statuses(report)["model.sam_image"] == expected, findings(report)
    if expected[0][0] == "warn":
        assert "cv2.imread (BGR)" in findings(report)["model.sam_image"][0]["message"]


# --- prompts ---------------------------------------------------------------------------------

PROMPTS = {
    "point_not_2d": ('{"point_coords": np.array([40, 20]), "point_labels": np.array([1])}',
                     ("fail", "sam-empty-masks"), "shape (2,); SAM needs (N, 2)"),
    "no_labels": ('{"point_coords": np.array([[40, 20]])}', ("fail", "sam-empty-masks"),
                  "without point_labels"),
    "labels_count": ('{"point_coords": np.array([[40, 20], [10, 10]]), '
                     '"point_labels": np.array([1])}', ("fail", "sam-empty-masks"),
                     "for 2 points; SAM needs (2,)"),
    "list_coords": ('{"point_coords": [[40, 20]], "point_labels": [1]}',
                    ("fail", "sam-empty-masks"), "not a NumPy array"),
    "box_list": ('{"box": [10, 10, 50, 40]}', ("fail", "sam-empty-masks"), "box is a list"),
    "box_xywh": ('{"box": np.array([30, 20, 10, 8])}', ("warn", "sam-empty-masks"),
                 "[x, y, w, h]"),
    "outside_row_col": ('{"point_coords": np.array([[20, 70]]), "point_labels": np.array([1])}',
                        ("warn", "sam-empty-masks"), "(row, col)"),
    "normalized": ('{"point_coords": np.array([[0.5, 0.25]]), "point_labels": np.array([1])}',
                   ("warn", "sam-empty-masks"), "normalized"),
    "background_only": ('{"point_coords": np.array([[40, 20]]), "point_labels": np.array([0])}',
                        ("warn", "sam-empty-masks"), "background"),
    "mask_input": ('{"point_coords": np.array([[40, 20]]), "point_labels": np.array([1]), '
                   '"mask_input": np.zeros((1, 64, 64))}', ("fail", "sam-empty-masks"),
                   "(1, 256, 256)"),
    "single_mask": ('{"point_coords": np.array([[40, 20]]), "point_labels": np.array([1]), '
                    '"multimask_output": False}', ("warn", "sam-empty-masks"), "ambiguous"),
    "nothing": ("{}", ("warn", "sam-empty-masks"), "no prompt at all"),
    "not_a_dict": ('[np.array([[40, 20]])]', ("fail", "sam-empty-masks"), "not the dict"),
    "box_ok": ('{"box": np.array([10, 10, 50, 40]), "multimask_output": False}',
               ("pass", None), "box [10, 10, 50, 40]"),
}


@pytest.mark.parametrize("name", sorted(PROMPTS))
def test_prompt_contract(work, name):
    body, expected, words = PROMPTS[name]
    write_setup(work / "segment.py", prompts=f"def get_prompts():\n    return {body}\n")
    report = run("segment.py", "--select", "model.sam_prompts")
    assert statuses(report)["model.sam_prompts"] == [expected], findings(report)
    assert words in findings(report)["model.sam_prompts"][0]["message"]


def test_literal_prompts_in_the_source_are_checked(work):
    """The guide's style: prompts written in the predict(...) call itself."""
    write_setup(work / "segment.py", prompts=None, extra=(
        "def segment():\n    predictor.set_image(get_image())\n"
        "    return predictor.predict(point_coords=np.array([500, 375]),\n"
        "                             point_labels=np.array([1]), multimask_output=True)\n"))
    report = run("segment.py", "--select", "model.sam_prompts")
    assert statuses(report)["model.sam_prompts"] == [("fail", "sam-empty-masks")]
    assert "predict(...) at line" in findings(report)["model.sam_prompts"][0]["message"]


# --- checkpoints -----------------------------------------------------------------------------

def test_vit_b_weights_built_as_vit_l(vit_b_file):
    report = run("segment_anything:vit_l", "--checkpoint", str(vit_b_file),
                 "--select", "model.sam_checkpoint")
    f = findings(report)["model.sam_checkpoint"][0]
    assert (f["status"], f["recipe"]) == ("fail", "checkpoint-wrong-variant")
    assert "SAM vit_b (embed 768, 12 blocks) weights into a SAM vit_l" in f["message"]
    assert "sam_model_registry['vit_b'](checkpoint='vitb_finetuned.pth')" in f["fix"]


def test_vit_b_weights_built_as_vit_b(vit_b_file):
    report = run("segment_anything:vit_b", "--checkpoint", str(vit_b_file),
                 "--select", "model.sam_checkpoint")
    f = findings(report)["model.sam_checkpoint"][0]
    assert f["status"] == "pass", f
    assert "SAM vit_b weights (embed 768, 12 blocks)" in f["message"]
    assert "every key fits sam_model_registry['vit_b']" in f["message"]


def test_missing_published_checkpoint(work):
    report = run("segment_anything:vit_h", "--checkpoint", "sam_vit_h_4b8939.pth",
                 "--select", "model.sam_checkpoint")
    f = findings(report)["model.sam_checkpoint"][0]
    assert (f["status"], f["recipe"]) == ("fail", "sam-checkpoint-missing")
    assert "dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth" in f["fix"]
    assert "2.39 GiB" in f["message"]


def test_truncated_unsafe_and_wrapped_checkpoints(work, vit_b_file):
    data = vit_b_file.read_bytes()
    (work / "cut.pth").write_bytes(data[: len(data) // 2])
    with open(work / "evil.pth", "wb") as fh:
        pickle.dump({"image_encoder.patch_embed.proj.weight": _Payload()}, fh)
    state = torch.load(vit_b_file, weights_only=True)
    torch.save({"model": state, "epoch": 3}, work / "wrapped.pth")
    expected = {"cut.pth": "checkpoint-truncated", "evil.pth": "checkpoint-unsafe-pickle",
                "wrapped.pth": "state-dict-mismatch"}
    for name, recipe in expected.items():
        report = run("segment_anything:vit_b", "--checkpoint", name,
                     "--select", "model.sam_checkpoint")
        assert statuses(report)["model.sam_checkpoint"] == [("fail", recipe)], (name, report)
    assert not (work / "MARKER_should_never_exist").exists()


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch MARKER_should_never_exist",))


def test_setup_file_with_mismatched_checkpoint_is_not_imported(work, vit_b_file):
    """Importing it would raise 'size mismatch': cvdoctor explains instead, from the shapes."""
    write_setup(work / "segment.py", head=(
        "import numpy as np\nfrom segment_anything import SamPredictor, sam_model_registry\n"
        f"model_type = 'vit_l'\ncheckpoint = {str(vit_b_file)!r}\n"
        "sam = sam_model_registry[model_type](checkpoint=checkpoint)\n"
        "predictor = SamPredictor(sam)\n"))
    report = run("segment.py")
    got = statuses(report)
    assert got["model.sam_checkpoint"] == [("fail", "checkpoint-wrong-variant")]
    assert got["model.sam_image"][0][0] == "skip"
    assert "not imported" in findings(report)["model.sam_image"][0]["message"]


def test_setup_file_with_missing_checkpoint(work):
    write_setup(work / "segment.py", head=(
        "import numpy as np\nfrom segment_anything import SamPredictor, sam_model_registry\n"
        "sam = sam_model_registry['vit_b'](checkpoint='sam_vit_b_01ec64.pth')\n"
        "predictor = SamPredictor(sam)\n"))
    report = run("segment.py")
    assert statuses(report)["model.sam_checkpoint"] == [("fail", "sam-checkpoint-missing")]


@pytest.mark.slow
def test_guide_style_setup_with_and_without_checkpoint(work, vit_b_file):
    """The guide's file, on the real vit_b: with a fitting checkpoint every check passes; built
    without one (random weights) the checkpoint check warns."""
    head = ("import numpy as np\nfrom segment_anything import SamPredictor, sam_model_registry\n"
            "model_type = 'vit_b'\ncheckpoint = {ck}\n"
            "sam = sam_model_registry[model_type](checkpoint=checkpoint)\n"
            "predictor = SamPredictor(sam)\n")
    write_setup(work / "segment.py", head=head.format(ck=repr(str(vit_b_file))))
    report = run("segment.py")
    got = statuses(report)
    for check in ("model.sam_checkpoint", "model.sam_image", "model.sam_prompts",
                  "model.sam_memory"):
        assert got[check] == [("pass", None)], (check, findings(report)[check])
    write_setup(work / "segment.py", head=head.format(ck="None"))
    report = run("segment.py", "--select", "model.sam_checkpoint")
    assert statuses(report)["model.sam_checkpoint"] == [("warn", "sam-empty-masks")]


# --- memory ----------------------------------------------------------------------------------

def _busy_h100(free_gib: float) -> dict:
    import copy

    here = Path(__file__).parent
    gpu = copy.deepcopy(json.loads((here / "facts" / "h100_healthy.json").read_text())["gpu"])
    dev = gpu["devices"][0]
    free = int(free_gib * 2 ** 30)
    dev.update(free_memory=free, used_memory=dev["total_memory"] - free)
    return gpu


@pytest.mark.parametrize("model_type, expected", [("vit_h", ("warn", "sam-oom")),
                                                  ("vit_b", ("pass", None))])
def test_memory_against_a_busy_gpu(model_type, expected):
    """An H100 another job holds all but 5 GiB of: vit_h (about 6 GiB at 1024 px) does not fit,
    vit_b (about 2.8 GiB) does."""
    from cvdoctor.api import make_context, run_context
    from cvdoctor.commands.model import COMMAND

    ctx = make_context(COMMAND, f"segment_anything:{model_type}", {},
                       recorded={"gpu": _busy_h100(5.0)})
    report = run_context("model", ctx, select=["model.sam_memory"]).to_dict()
    f = report["findings"][0]
    assert (f["status"], f["recipe"]) == expected, f
    assert "NVIDIA H100 80GB HBM3 has 5.0 GiB free" in f["message"]
    if expected[0] == "warn":
        assert f["fix"].startswith("Use vit_l")


def test_memory_on_this_machine():
    report = run("segment_anything:vit_b", "--select", "model.sam_memory")
    f = findings(report)["model.sam_memory"][0]
    assert f["status"] in ("pass", "warn") and "SAM vit_b needs about 2.8 GiB" in f["message"]


# --- mask-decoder fine-tuning ----------------------------------------------------------------

@pytest.mark.parametrize("freeze, params, encode, expected, words", [
    ("sam.image_encoder.requires_grad_(False)\nsam.prompt_encoder.requires_grad_(False)",
     "[p for p in sam.mask_decoder.parameters() if p.requires_grad]", ENCODE_NO_GRAD,
     ("pass", None), "is frozen: no gradient reaches it"),
    ("sam.image_encoder.eval()", "[p for p in sam.parameters() if p.requires_grad]",
     ENCODE_WITH_GRAD, ("fail", "sam-encoder-not-frozen"), "is meant to be frozen"),
    ("", "[p for p in sam.mask_decoder.parameters() if p.requires_grad]", ENCODE_WITH_GRAD,
     ("warn", "sam-encoder-not-frozen"), "does not hold them"),
    ("", "[p for p in sam.parameters() if p.requires_grad]", ENCODE_WITH_GRAD,
     ("pass", None), "full fine-tuning"),
])
def test_finetune_encoder_frozen(work, freeze, params, encode, expected, words):
    write_finetune(work / "finetune.py", freeze, params, encode)
    report = run("finetune.py", "--select",
                 "model.sam_finetune,model.forward,model.optimizer,model.data")
    got = statuses(report)
    assert got["model.sam_finetune"] == [expected], findings(report)["model.sam_finetune"]
    assert words in findings(report)["model.sam_finetune"][0]["message"]
    # a fine-tuning set-up is an ordinary model set-up too: the usual checks run on it (and
    # model.optimizer says the trainable encoder is missing from the optimizer)
    assert got["model.forward"] == [("pass", None)]
    # 0-255 images are what SAM wants: its training_step normalizes them (model.preprocess)
    # before the first conv, which is where model.data looks (it used to fail them as raw)
    assert got["model.data"] == [("pass", None)], findings(report)["model.data"]
    # opt-in checks nobody asked for stay out of a SAM fine-tune's full report
    full_report = run("finetune.py")
    full = statuses(full_report)
    assert not [c for c in full if c.startswith("model.ddp") or c == "model.amp"], full
    # the eval-mode checks say why model(inputs) cannot run here, not "see model.forward" (which
    # passed: it ran the training_step)
    for check in ("model.train_eval", "model.batch_independence", "model.input_dependency"):
        (f,) = findings(full_report)[check]
        assert f["status"] == "skip" and "driven by its training_step" in f["message"], f
    assert got["model.optimizer"][0][1] == ("optimizer-missing-params"
                                            if "does not hold" in words else None)


# --- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize("target, args, words", [
    ("segment_anything:vit_x", (), "SAM model types are vit_b, vit_l, vit_h"),
])
def test_bad_sam_targets(target, args, words):
    from click.testing import CliRunner

    from cvdoctor.cli import cli

    result = CliRunner().invoke(cli, ["model", target, *args])
    assert result.exit_code == 2 and words in result.stderr, result.output


def test_pytest_helper(work):
    from pytest_cvdoctor import assert_sam_ready

    write_setup(work / "ok.py")
    report = assert_sam_ready("ok.py")
    assert report.status == "pass"
    write_setup(work / "bad.py", prompts="def get_prompts():\n    return {'point_coords': "
                "np.array([1, 2]), 'point_labels': np.array([1])}\n")
    with pytest.raises(AssertionError, match="point_coords has shape"):
        assert_sam_ready("bad.py")



# --- the examples ----------------------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_examples_say_what_their_docstrings_say(work):
    """Without the checkpoint on disk: the missing file is the finding with its download line,
    and the broken example's BGR image and (2,)-shaped point are read from its source."""
    good = statuses(run(str(EXAMPLES / "sam_segment.py")))
    assert good["model.sam_checkpoint"] == [("fail", "sam-checkpoint-missing")]
    assert good["model.sam_prompts"][0][0] == "skip"
    bad = statuses(run(str(EXAMPLES / "sam_broken_prompts.py")))
    assert bad["model.sam_image"] == [("warn", "sam-image-colors")]
    assert bad["model.sam_prompts"] == [("fail", "sam-empty-masks")]


# --- gradients of a decoder fine-tune: what SAM's design leaves idle is not "dead" -----------

TUTORIAL_FREEZE = ("sam.image_encoder.requires_grad_(False)\n"
                   "sam.prompt_encoder.requires_grad_(False)")
DECODER_PARAMS = "[p for p in sam.mask_decoder.parameters() if p.requires_grad]"


def _tutorial_finetune(work: Path, *, multimask: bool = False, loss_on: str = "masks") -> None:
    """The common tutorial fine-tune: optimizer over the whole mask decoder, nothing else frozen
    in it, a mask-only loss (or, broken, a loss that reads the IoU scores only)."""
    path = write_finetune(work / "finetune.py", TUTORIAL_FREEZE, DECODER_PARAMS, ENCODE_NO_GRAD)
    text = path.read_text()
    for line in ("sam.mask_decoder.iou_prediction_head.requires_grad_(False)\n",
                 "sam.mask_decoder.output_hypernetworks_mlps[1:].requires_grad_(False)\n"):
        assert line in text
        text = text.replace(line, "")
    if multimask:
        text = text.replace("multimask_output=False", "multimask_output=True").replace(
            "pred[0]", "pred[0].mean(0, keepdim=True)")
    if loss_on == "iou":
        text = text.replace("low, _ = model.mask_decoder", "low, iou = model.mask_decoder").replace(
            "F.binary_cross_entropy_with_logits(pred[0], target)", "(iou - 1).pow(2).mean()")
    path.write_text(text)


@pytest.mark.parametrize("multimask, idle_tokens", [(False, "1, 2, 3"), (True, "0")])
def test_mask_tokens_and_iou_head_the_decoder_leaves_out_are_not_dead(work, multimask,
                                                                     idle_tokens):
    _tutorial_finetune(work, multimask=multimask)
    report = run("finetune.py", "--select", "model.gradients")
    (f,) = findings(report)["model.gradients"]
    assert f["status"] == "pass", f
    assert f"mask token{'s' if ',' in idle_tokens else ''} {idle_tokens} " in f["message"], f
    idle = f["evidence"]["idle_by_design"]
    assert any(".iou_prediction_head." in n for n in idle)
    assert any(".output_hypernetworks_mlps.0." in n for n in idle) == multimask


def test_a_loss_that_never_reads_the_masks_still_fails(work):
    _tutorial_finetune(work, loss_on="iou")
    report = run("finetune.py", "--select", "model.gradients")
    got = findings(report)["model.gradients"]
    assert [f["status"] for f in got] == ["fail"], got
    assert "output_hypernetworks_mlps" in got[0]["message"] and "get no gradient" in \
        got[0]["message"], got
