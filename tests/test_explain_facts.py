"""`cvdoctor explain` reads the facts in the message and answers with the fix for that case
(cvdoctor.errorfacts): class counts, the two dtypes, the two shapes, ranks, ports, memory.

Messages are real torch wordings (made on this machine where it can: load_state_dict,
cross_entropy, Linear, Conv2d, torch.cat) or the library's own wording otherwise.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cvdoctor.catalog import match_text
from cvdoctor.cli import cli
from cvdoctor.errorfacts import dtype, extract, extractor_ids

LOGS = Path(__file__).resolve().parent / "run_logs"

HEAD = ("RuntimeError: Error(s) in loading state_dict for ResNet:\n\tsize mismatch for fc.weight: "
        "copying a param with shape torch.Size([1000, 512]) from checkpoint, the shape in current "
        "model is torch.Size([10, 512]).\n\tsize mismatch for fc.bias: copying a param with shape "
        "torch.Size([1000]) from checkpoint, the shape in current model is torch.Size([10]).")


def best(text: str):
    matches = match_text(text)
    assert matches, text
    return matches[0]


def test_explain_leads_with_the_facts_and_the_fix_for_this_case():
    result = CliRunner().invoke(cli, ["explain", HEAD])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[1].startswith("Recipe:  state-dict-mismatch [checkpoint]")
    assert lines[2] == "Facts:   the checkpoint's head `fc` has 1000 classes, your model 10"
    assert lines[3].startswith("Fix:     Load everything but the head: drop the `fc.*` keys")
    assert "replace `fc` with a 10-class layer" in lines[3]
    assert "## Fix" in result.stdout  # the recipe follows, for the background


def test_explain_json_carries_the_facts():
    data = json.loads(CliRunner().invoke(cli, ["explain", "--json", HEAD]).stdout)
    first = data["matches"][0]
    assert first["facts"] == {"head": "fc", "checkpoint_classes": 1000, "model_classes": 10}
    assert first["said"].startswith("the checkpoint's head")
    assert first["on_error"] is True


def test_without_facts_the_recipes_own_fix_is_the_answer():
    result = CliRunner().invoke(cli, ["explain", "RuntimeError: Trying to backward through the "
                                                 "graph a second time"])
    lines = result.stdout.splitlines()
    assert not any(line.startswith("Facts:") for line in lines)
    assert lines[2].startswith("Fix:     Build the loss from a fresh forward pass")


@pytest.mark.parametrize("text,recipe,said,fix_has", [
    ("IndexError: Target 5 is out of bounds.", "target-out-of-bounds",
     "a label is 5, so the model needs at least 6 outputs (classes 0..5)", "at least 6 classes"),
    ("IndexError: Target -1 is out of bounds.", "target-out-of-bounds",
     "a target is -1, a negative class index", "ignore_index=-1"),
    ("RuntimeError: mat1 and mat2 shapes cannot be multiplied (4x2048 and 512x10)",
     "shape-mismatch-linear", "receives 2048 features per sample but was built for 512",
     "nn.Linear(2048, 10)"),
    ("RuntimeError: size mismatch, m1: [64 x 4608], m2: [1152 x 10] at /pytorch/aten/src/TH/"
     "generic/THTensorMath.cpp:136", "shape-mismatch-linear", "receives 4608 features",
     "nn.Linear(4608, 10)"),
    ("ValueError: Expected input batch_size (256) to match target batch_size (64).",
     "shape-mismatch-linear", "the output has 256 rows but the target 64", "x.flatten(1)"),
    ("RuntimeError: Given groups=1, weight of size [8, 3, 3, 3], expected input[2, 64, 64, 3] to "
     "have 3 channels, but got 64 channels instead", "channels-mismatch", "channels-last",
     "permute(0, 3, 1, 2)"),
    ("RuntimeError: Given groups=1, weight of size [64, 3, 7, 7], expected input[16, 1, 224, 224] "
     "to have 3 channels, but got 1 channels instead", "channels-mismatch", "grayscale",
     "convert('RGB')"),
    ("RuntimeError: Sizes of tensors must match except in dimension 1. Expected size 32 but got "
     "size 33 for tensor number 1 in the list.", "unet-shape-mismatch",
     "maps of size 32 and 33", "multiple of 2**depth"),
    ("RuntimeError: Input type (torch.cuda.HalfTensor) and weight type (torch.cuda.FloatTensor) "
     "should be the same", "dtype-mismatch", "the input is float16, the weights float32",
     "torch.autocast"),
    ("RuntimeError: mat1 and mat2 must have the same dtype, but got Double and Float",
     "dtype-mismatch", "the input is float64, the weights float32", "x.float()"),
    ("RuntimeError: expected mat1 and mat2 to have the same dtype, but got: float != c10::Half",
     "dtype-mismatch", "the input is float32, the weights float16", "torch.autocast"),
    ("RuntimeError: Found dtype Long but expected Float", "dtype-mismatch",
     "the target is int64 but the loss computes in float32", "target.float()"),
    ("RuntimeError: expected backend CUDA and dtype Float but got backend CUDA and dtype Long",
     "dtype-mismatch", "the input is int64, the other operand float32", "x.float()"),
    ("RuntimeError: expected target dtype to be Long or Byte, but got Float", "labels-wrong-dtype",
     "the target is float32", "target.long()"),
    ("AssertionError: Label class 2.0 exceeds nc=2 in data/custom.yaml. Possible class labels "
     "are 0-1", "yolo-class-out-of-range", "a label uses class 2, but the dataset declares 2 "
     "classes (0..1)", "nc: 3"),
    ("RuntimeError: Detected that PyTorch and torchvision were compiled with different CUDA major "
     "versions. PyTorch has CUDA Version=12.1 and torchvision has CUDA Version=11.8.",
     "torchvision-torch-mismatch", "torch is built for CUDA 12.1, torchvision for CUDA 11.8",
     "whl/cu121"),
    ("NVIDIA GeForce RTX 5090 with CUDA capability sm_120 is not compatible with the current "
     "PyTorch installation.\nThe current PyTorch install supports CUDA capabilities sm_50 sm_60 "
     "sm_70 sm_75 sm_80 sm_86 sm_90.", "gpu-arch-unsupported", "is sm_120", "supports sm_120"),
    ("torch.distributed.DistNetworkError: The server socket has failed to listen on any local "
     "network address. port: 29500, useIpv6: false, code: -98, name: EADDRINUSE, message: address "
     "already in use", "dist-port-in-use", "port 29500 is already taken", "--master_port 29501"),
    ("RuntimeError: Timed out initializing process group in store based barrier on rank: 2, for "
     "key: store_based_barrier_key:1 (world_size=4, worker_count=3, timeout=0:30:00)",
     "dist-rendezvous-timeout", "3 processes arrived for a world size of 4", "exactly 4"),
    ("RuntimeError: Unknown model (convnextv2_atto)", "timm-unknown-model",
     "no model named `convnextv2_atto`", "list_models('*convnextv2*')"),
])
def test_facts_and_fix_for_this_message(text, recipe, said, fix_has):
    m = best(text)
    assert m.recipe == recipe
    assert said in m.said
    assert fix_has in m.fix


def test_state_dict_prefixes_and_wrapped_checkpoints():
    prefixed = ('RuntimeError: Error(s) in loading state_dict for Net:\n\tMissing key(s) in '
                'state_dict: "body.weight", "fc.weight". \n\tUnexpected key(s) in state_dict: '
                '"module.body.weight", "module.fc.weight". ')
    m = best(prefixed)
    assert "start with `module.`" in m.said and "removeprefix('module.')" in m.fix
    wrapped = ('RuntimeError: Error(s) in loading state_dict for Net:\n\tMissing key(s) in '
               'state_dict: "body.weight". \n\tUnexpected key(s) in state_dict: "state_dict", '
               '"optimizer", "epoch". ')
    m = best(wrapped)
    assert "weights sit under `state_dict`" in m.said and "ckpt['state_dict']" in m.fix
    variant = ("RuntimeError: Error(s) in loading state_dict for Sam:\n\tsize mismatch for "
               "image_encoder.pos_embed: copying a param with shape torch.Size([1, 64, 64, 1280]) "
               "from checkpoint, the shape in current model is torch.Size([1, 64, 64, 768]).")
    m = best(variant)
    assert "`image_encoder.pos_embed` is [1, 64, 64, 1280] in the checkpoint" in m.said


def test_oom_numbers_pick_the_case():
    fragmented = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 "
                  "has a total capacity of 23.55 GiB of which 1.31 GiB is free. Of the allocated "
                  "memory 12.10 GiB is allocated by PyTorch, and 9.40 GiB is reserved by PyTorch "
                  "but unallocated.")
    m = best(fragmented)
    assert m.facts["reserved_unallocated"] == "9.40 GiB"
    assert "expandable_segments" in m.fix
    others = ("RuntimeError: CUDA out of memory. Tried to allocate 512.00 MiB (GPU 0; 15.78 GiB "
              "total capacity; 1.10 GiB already allocated; 120.00 MiB free; 1.20 GiB reserved in "
              "total by PyTorch)")
    m = best(others)
    assert "PyTorch holds 1.10 GiB" in m.said and "nvidia-smi" in m.fix
    plain = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 3.00 GiB. GPU 0 has a "
             "total capacity of 23.55 GiB of which 1.02 GiB is free. Of the allocated memory 21.90 "
             "GiB is allocated by PyTorch, and 120.40 MiB is reserved by PyTorch but unallocated.")
    m = best(plain)
    assert m.said.startswith("GPU 0: tried to allocate 3.00 GiB with 1.02 GiB free of 23.55 GiB")
    assert "batch size" in m.fix  # the recipe's own answer: the batch does not fit


def test_torchrun_facts_name_the_root_cause_rank_and_its_signal():
    m = best((LOGS / "torchrun_sigkill.log").read_text())
    assert m.recipe == "torchrun-child-failed"
    assert m.facts == {"exitcode": -9, "rank": 1, "local_rank": 1, "signal": "SIGKILL"}
    assert "OOM killer" in m.said


def test_dtype_names_are_normalised():
    assert [dtype(n) for n in ("Half", "c10::Half", "torch.cuda.HalfTensor", "CUDAHalfType",
                               "float", "unsigned char", "Long", "torch.DoubleTensor")] == \
        ["float16", "float16", "float16", "float16", "float32", "uint8", "int64", "float64"]


def test_a_broken_extractor_never_hides_the_recipe(monkeypatch):
    from cvdoctor import errorfacts

    def boom(_text):
        raise ValueError("bug")

    monkeypatch.setitem(errorfacts._EXTRACTORS, "target-out-of-bounds", boom)
    assert extract("target-out-of-bounds", "Target 5 is out of bounds") is None
    m = best("IndexError: Target 5 is out of bounds.")
    assert m.recipe == "target-out-of-bounds" and m.said == "" and m.fix


def test_every_extractor_belongs_to_a_recipe():
    from cvdoctor.catalog import load_catalog

    known = set(load_catalog())
    optional = {"head-size-mismatch", "checkpoint-key-prefix", "checkpoint-partial-load",
                "checkpoint-wrong-variant"}  # other families' recipes; harmless if renamed
    assert set(extractor_ids()) - known <= optional
