"""Structure read without loading, and the fit library: containers, prefixes, heads, variants,
half precision, loaded fraction, and loading code that really loads."""
from __future__ import annotations

import argparse
import collections
import pathlib
import random

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from cvdoctor.checkpoint import inspect_file  # noqa: E402
from cvdoctor.checkpoint.fit import diagnose, loading_code, specs_from_state_dict  # noqa: E402
from cvdoctor.checkpoint.known import sam_variant, yolo_info  # noqa: E402


def fit(path, model, **kw):
    rec = inspect_file(path)
    st = rec["structure"]
    d = diagnose(st["tensors"], specs_from_state_dict(model.state_dict()),
                 containers=st["containers"], top=st["top"],
                 param_keys=[k for k, _ in model.named_parameters()])
    return rec, d


def run_code(rec, d, path, model):
    """Execute the generated lines against the model: they must load it."""
    lines = loading_code(d, str(path), fmt=rec.get("format"),
                         weights_only=rec["safety"]["verdict"] == "data")
    namespace = {"model": model}
    exec("\n".join(lines), namespace)  # noqa: S102 - our own generated code, our own files
    return lines, namespace["model"]


@pytest.fixture(scope="module")
def r18():
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None)


# --- structure -----------------------------------------------------------------------------------

def test_structure_of_a_state_dict_matches_the_real_one(tmp_path, r18):
    path = tmp_path / "r18.pt"
    torch.save(r18.state_dict(), path)
    rec = inspect_file(path)
    tensors = rec["structure"]["tensors"]
    assert list(tensors) == list(r18.state_dict())
    for k, v in r18.state_dict().items():
        assert tensors[k]["shape"] == list(v.shape)
        assert tensors[k]["dtype"] == str(v.dtype).replace("torch.", "")
    assert rec["structure"]["devices"] == ["cpu"]


def test_legacy_and_zip_formats_give_the_same_structure(tmp_path, r18):
    torch.save(r18.state_dict(), tmp_path / "a.pt")
    torch.save(r18.state_dict(), tmp_path / "b.pth", _use_new_zipfile_serialization=False)
    a, b = inspect_file(tmp_path / "a.pt"), inspect_file(tmp_path / "b.pth")
    assert b["format"] == "torch-legacy"
    assert {k: v["shape"] for k, v in a["structure"]["tensors"].items()} == \
        {k: v["shape"] for k, v in b["structure"]["tensors"].items()}
    assert b["legacy_data"]["expected_bytes"] == b["legacy_data"]["present_bytes"]


class BufferNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
        self.register_buffer("scratch", torch.zeros(2), persistent=False)
        self.register_buffer("anchors", torch.ones(3))


def test_a_pickled_module_unfolds_into_its_state_dict_keys(tmp_path):
    net = BufferNet()
    torch.save({"model": net, "epoch": 1}, tmp_path / "m.pt")
    rec = inspect_file(tmp_path / "m.pt")
    keys = [k[len("model."):] for k in rec["structure"]["tensors"]]
    assert sorted(keys) == sorted(net.state_dict())


def test_saved_device_and_dtypes_are_read_from_the_storages(tmp_path, monkeypatch):
    import torch.serialization as ser

    monkeypatch.setattr(ser, "location_tag", lambda storage: "cuda:1")
    torch.save({"w": torch.zeros(2, dtype=torch.float16), "b": torch.zeros(1, dtype=torch.bfloat16)},
               tmp_path / "gpu.pt")
    monkeypatch.undo()
    rec = inspect_file(tmp_path / "gpu.pt")
    t = rec["structure"]["tensors"]
    assert (t["w"]["dtype"], t["b"]["dtype"]) == ("float16", "bfloat16")
    assert rec["structure"]["devices"] == ["cuda:1"]


def test_numpy_arrays_and_values_show_in_the_structure(tmp_path):
    np = pytest.importorskip("numpy")
    torch.save({"w": torch.zeros(2), "best": np.ones((2, 3), dtype=np.float32), "epoch": 4,
                "args": argparse.Namespace(lr=0.1)}, tmp_path / "n.pt")
    st = inspect_file(tmp_path / "n.pt")["structure"]
    assert st["tensors"]["best"]["shape"] == [2, 3] and st["tensors"]["best"]["kind"] == "ndarray"
    assert st["tensors"]["best"]["dtype"] == "float32"
    assert st["meta"]["epoch"] == 4 and st["meta"]["args"]["lr"] == 0.1


def test_sam_variant_from_shapes(tmp_path):
    # The real key layout with the real encoder width; the blocks themselves kept tiny.
    state = collections.OrderedDict()
    state["image_encoder.patch_embed.proj.weight"] = torch.zeros(1024, 3, 16, 16)
    for i in range(24):
        state[f"image_encoder.blocks.{i}.norm1.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "sam_vit_l_0b3195.pth")
    tensors = inspect_file(tmp_path / "sam_vit_l_0b3195.pth")["structure"]["tensors"]
    assert sam_variant(tensors) == {"variant": "vit_l", "embed_dim": 1024, "depth": 24,
                                    "consistent": True}


@pytest.mark.slow
def test_yolo_names_and_class_count_without_loading(tmp_path):
    pytest.importorskip("ultralytics")
    from ultralytics.nn.tasks import DetectionModel

    model = DetectionModel("yolov8n.yaml", nc=3, verbose=False)
    model.names = {0: "cat", 1: "dog", 2: "bird"}
    torch.save({"model": model.half(), "ema": None, "epoch": -1, "date": "2024-01-01"},
               tmp_path / "best.pt")
    rec = inspect_file(tmp_path / "best.pt")
    info = yolo_info(rec["structure"]["meta"])
    assert (info["task"], info["nc"], info["names"]) == ("detect", 3, {"0": "cat", "1": "dog", "2": "bird"})
    assert rec["safety"]["verdict"] == "library"


# --- fit ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("wrap,strip", [
    (lambda sd: {"module." + k: v for k, v in sd.items()}, "module."),
    (lambda sd: {"_orig_mod." + k: v for k, v in sd.items()}, "_orig_mod."),
    (lambda sd: {"state_dict": {"model." + k: v for k, v in sd.items()}, "epoch": 1}, "model."),
    (lambda sd: {"model": sd, "optimizer": {"state": {}}, "epoch": 3}, ""),
    (lambda sd: {"model": {"a": torch.zeros(1)}, "ema": {"module." + k: v for k, v in sd.items()}},
     "module."),
])
def test_containers_and_prefixes_are_unwrapped_and_the_code_loads(tmp_path, r18, wrap, strip):
    path = tmp_path / "ck.pt"
    torch.save(wrap(r18.state_dict()), path)
    fresh = torchvision.models.resnet18(weights=None)
    rec, d = fit(path, fresh)
    assert d.strip == strip and d.verdict in ("fits", "prefix"), d.summary
    assert d.loaded_fraction == 1.0
    run_code(rec, d, path, fresh)
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, r18.state_dict()[k])


def test_a_prefix_to_add(tmp_path, r18):
    class Detector(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = torchvision.models.resnet18(weights=None)

    path = tmp_path / "bb.pt"
    torch.save(r18.state_dict(), path)
    det = Detector()
    rec, d = fit(path, det)
    assert (d.verdict, d.add) == ("prefix", "backbone.")
    run_code(rec, d, path, det)


def test_head_of_another_size(tmp_path, r18):
    path = tmp_path / "r18.pt"
    torch.save(r18.state_dict(), path)
    model = torchvision.models.resnet18(weights=None, num_classes=10)
    rec, d = fit(path, model)
    assert d.verdict == "head"
    assert d.summary.startswith("checkpoint has 1000 classes, the model 10")
    lines, loaded = run_code(rec, d, path, model)
    assert torch.equal(loaded.conv1.weight, r18.conv1.weight)
    assert d.loaded_fraction > 0.99


@pytest.mark.parametrize("seed", range(6))
def test_heads_and_prefixes_over_random_seeds(tmp_path, seed):
    rng = random.Random(seed)
    classes = rng.choice([2, 5, 37, 100])
    src = torchvision.models.resnet18(weights=None, num_classes=rng.choice([10, 1000]))
    prefix = rng.choice(["", "module.", "_orig_mod.", "model.module."])
    path = tmp_path / f"s{seed}.pt"
    torch.save({prefix + k: v for k, v in src.state_dict().items()}, path)
    model = torchvision.models.resnet18(weights=None, num_classes=classes)
    rec, d = fit(path, model)
    assert d.strip == prefix
    if src.fc.out_features == classes:
        assert d.verdict in ("fits", "prefix")
    else:
        assert d.verdict == "head"
        assert (d.head["checkpoint_classes"], d.head["model_classes"]) == (src.fc.out_features, classes)
    run_code(rec, d, path, model)


def test_another_variant_of_the_family(tmp_path):
    path = tmp_path / "r50.pt"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    rec, d = fit(path, torchvision.models.resnet18(weights=None))
    assert d.verdict == "variant"
    assert d.summary == "resnet50 weights into a resnet18 model"
    lines, model = run_code(rec, d, path, None)
    assert isinstance(model, torchvision.models.ResNet) and model.layer1[0].conv3 is not None


def test_sam_vit_l_weights_into_vit_b():
    sam = pytest.importorskip("segment_anything")
    with torch.device("meta"):
        vit_b = sam.sam_model_registry["vit_b"]()
        vit_l = sam.sam_model_registry["vit_l"]()
    ck = {k: {"shape": list(v.shape), "dtype": "float32"} for k, v in vit_l.state_dict().items()}
    d = diagnose(ck, specs_from_state_dict(vit_b.state_dict()))
    assert d.verdict == "variant"
    assert d.summary == ("SAM vit_l (embed 1024, 24 blocks) weights into a SAM vit_b "
                         "(embed 768, 12 blocks) model")
    assert loading_code(d, "sam_vit_l_0b3195.pth")[-1] == \
        "model = sam_model_registry['vit_l'](checkpoint='sam_vit_l_0b3195.pth')"
    same = diagnose({k: {"shape": list(v.shape), "dtype": "float32"}
                     for k, v in vit_b.state_dict().items()}, specs_from_state_dict(vit_b.state_dict()))
    assert same.verdict == "fits"


def test_half_precision_and_benign_num_batches_tracked(tmp_path, r18):
    path = tmp_path / "half.pt"
    torch.save({k: v.half() for k, v in r18.state_dict().items()
                if not k.endswith("num_batches_tracked")}, path)
    model = torchvision.models.resnet18(weights=None)
    rec, d = fit(path, model)
    assert d.verdict == "fits" and d.benign_missing and not d.missing
    assert "stored as float16" in d.summary and d.half == {"float16": 102}
    run_code(rec, d, path, model)


def test_loaded_fraction_when_much_is_missing(tmp_path, r18):
    path = tmp_path / "part.pt"
    torch.save({k: v for k, v in r18.state_dict().items() if k.startswith(("conv1", "bn1"))}, path)
    rec, d = fit(path, torchvision.models.resnet18(weights=None))
    assert d.verdict == "partial" and d.loaded_fraction < 0.01


@pytest.mark.parametrize("ctor", ["resnet18", "mobilenet_v3_small", "efficientnet_b0", "squeezenet1_0",
                                  "shufflenet_v2_x0_5"])
def test_healthy_pairs_always_fit(tmp_path, ctor):
    model = getattr(torchvision.models, ctor)(weights=None)
    path = tmp_path / f"{ctor}.pt"
    torch.save(model.state_dict(), path)
    rec, d = fit(path, model)
    assert d.verdict == "fits" and d.summary.startswith("all ")
    assert d.loaded_fraction == 1.0 and not d.unexpected


def test_a_whole_pickled_model_fits_its_architecture(tmp_path, r18):
    path = tmp_path / "whole.pt"
    torch.save(r18, path)
    rec, d = fit(path, torchvision.models.resnet18(weights=None))
    assert d.verdict == "fits" and d.container_kind == "module"
    assert any("weights_only=False" in line for line in loading_code(d, str(path), weights_only=False))
    assert pathlib.Path(path).exists()
