"""`cvdoctor ckpt FILE...` through CliRunner (and the Python API): every finding each ckpt check
can emit from a real file made here, healthy files that must pass, --fix, model.checkpoint, the
pytest helper, and bad input (exit 2, never a hang, never exit 3)."""
from __future__ import annotations

import collections
import hashlib
import io
import json
import os
import zipfile

import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from cvdoctor.cli import cli  # noqa: E402


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Caches and config in tmp_path; the real home is never read or written."""
    for var, sub in (("HOME", "home"), ("TORCH_HOME", "home/torch"),
                     ("XDG_CACHE_HOME", "home/cache"), ("XDG_CONFIG_HOME", "home/config")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def r18_state():
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).state_dict()


def ckpt(*args):
    result = CliRunner().invoke(cli, ["ckpt", *map(str, args), "--json"])
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.output, result.stderr)
    if result.exit_code == 2:
        return result.exit_code, None, result.stderr
    report = json.loads(result.stdout)
    return result.exit_code, report, result.stderr


def findings(report, check):
    return [f for f in report["findings"] if f["check"] == check]


def one(report, check):
    got = findings(report, check)
    assert len(got) == 1, got
    return got[0]


class Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class MyConfig:  # foreign: not a library cvdoctor knows
    lr = 0.1


# --- healthy files pass every check ------------------------------------------------------------

def test_a_healthy_state_dict_passes(tmp_path, r18_state):
    torch.save(r18_state, tmp_path / "r18.pt")
    code, report, _ = ckpt(tmp_path / "r18.pt", "--model", "torchvision:resnet18")
    assert code == 0 and report["schema_version"] == 1
    status = {f["check"]: f["status"] for f in report["findings"]}
    assert status == {"ckpt.format": "pass", "ckpt.safety": "pass", "ckpt.integrity": "pass",
                      "ckpt.known": "skip", "ckpt.loadable": "pass", "ckpt.fit": "pass"}
    fit = one(report, "ckpt.fit")
    assert "fits torchvision:resnet18: all 122 model keys load" in fit["message"]
    assert fit["evidence"]["code"][-1] == "model.load_state_dict(state)  # strict: every key matches"


def test_text_report_prints_the_loading_lines(tmp_path, r18_state):
    torch.save({"module." + k: v for k, v in r18_state.items()}, tmp_path / "ddp.pt")
    result = CliRunner().invoke(cli, ["ckpt", str(tmp_path / "ddp.pt"), "--model",
                                      "torchvision:resnet18"])
    assert result.exit_code == 0, result.output
    assert "keys need 'module.' removed" in result.stdout
    assert "        state = {k.removeprefix('module.'): v for k, v in state.items()" in result.stdout
    assert "cvdoctor explain checkpoint-key-prefix" in result.stdout


def test_safetensors_and_legacy_files_pass(tmp_path, r18_state):
    from safetensors.torch import save_file

    save_file(dict(r18_state), tmp_path / "m.safetensors")
    torch.save(r18_state, tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    code, report, _ = ckpt(tmp_path / "m.safetensors", tmp_path / "old.pth")
    assert code == 0
    assert [f["status"] for f in findings(report, "ckpt.integrity")] == ["pass", "pass"]
    assert "header of 122 tensors" in findings(report, "ckpt.integrity")[0]["message"]


# --- ckpt.format ---------------------------------------------------------------------------------

@pytest.mark.parametrize("content,words", [
    (b"<!DOCTYPE html><html>403</html>", "HTML page"),
    (b"", "is empty (0 bytes)"),
    (b"version https://git-lfs.github.com/spec/v1\nsize 1000\n", "Git LFS pointer"),
    (b"\x89PNG\r\n\x1a\n" + bytes(20), "is an image"),
])
def test_files_that_are_not_checkpoints_fail_format(tmp_path, content, words):
    (tmp_path / "w.pth").write_bytes(content)
    code, report, _ = ckpt(tmp_path / "w.pth")
    assert code == 1
    f = one(report, "ckpt.format")
    assert (f["status"], f["recipe"]) == ("fail", "checkpoint-not-a-checkpoint")
    assert words in f["message"]
    assert one(report, "ckpt.safety")["status"] == "skip"


# --- ckpt.safety ---------------------------------------------------------------------------------

def test_payload_fails_safety_and_never_runs(tmp_path):
    marker = tmp_path / "RAN"
    torch.save({"w": torch.zeros(2), "x": Payload(marker)}, tmp_path / "evil.pt")
    code, report, _ = ckpt(tmp_path / "evil.pt", "--deep")
    assert code == 1 and not marker.exists()
    f = one(report, "ckpt.safety")
    assert (f["status"], f["recipe"]) == ("fail", "checkpoint-unsafe-pickle")
    assert "posix.system" in f["message"] and "evil/data.pkl" in f["message"]
    assert "not loaded" in one(report, "ckpt.loadable")["message"] or \
        one(report, "ckpt.loadable")["status"] == "skip"


def test_foreign_and_library_classes_warn(tmp_path):
    torch.save({"w": torch.zeros(2), "cfg": MyConfig()}, tmp_path / "foreign.pt")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "whole.pt")
    code, report, _ = ckpt(tmp_path / "foreign.pt", tmp_path / "whole.pt")
    assert code == 0
    foreign, library = findings(report, "ckpt.safety")
    assert (foreign["status"], foreign["recipe"]) == ("warn", "checkpoint-pickle-foreign-code")
    assert "test_checkpoint_cli.MyConfig" in foreign["message"]
    assert (library["status"], library["recipe"]) == ("warn", "checkpoint-pickle-library-code")
    assert "loading runs this library's code; fine if you trust the source" in library["message"]
    refusals = findings(report, "ckpt.loadable")
    assert all((f["status"], f["recipe"]) == ("warn", "checkpoint-load-failed") for f in refusals)
    assert "torch.nn.modules.linear.Linear" in refusals[1]["message"]


def test_archive_that_torch_and_zipfile_read_differently_warns(tmp_path):
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as z:
        members = [(i.filename, z.read(i)) for i in z.infolist()]
    with zipfile.ZipFile(tmp_path / "dup.pt", "w") as z:
        z.writestr(zipfile.ZipInfo(members[0][0]), members[0][1])
        for name, data in members:
            z.writestr(zipfile.ZipInfo(name), data)
    code, report, _ = ckpt(tmp_path / "dup.pt")
    f = one(report, "ckpt.safety")
    assert (f["status"], f["recipe"]) == ("warn", "checkpoint-zip-readers-disagree")
    assert "2 members named archive/data.pkl" in f["message"]


# --- ckpt.integrity ------------------------------------------------------------------------------

def test_truncated_and_bit_rotten_files(tmp_path, r18_state):
    torch.save(r18_state, tmp_path / "full.pt")
    data = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    rot = bytearray(data)
    start = rot.find(b"full/data/0") + 200
    rot[start] ^= 0xFF  # inside the first storage: torch would load it silently
    (tmp_path / "rot.pt").write_bytes(bytes(rot))
    code, report, _ = ckpt(tmp_path / "cut.pt", tmp_path / "rot.pt", "--deep")
    cut, rot_f = findings(report, "ckpt.integrity")
    assert (cut["status"], cut["recipe"]) == ("fail", "checkpoint-truncated")
    assert "end-of-central-directory" in cut["message"]
    assert (rot_f["status"], rot_f["recipe"]) == ("fail", "checkpoint-truncated")
    assert "fail their CRC" in rot_f["message"]
    assert [f["status"] for f in findings(report, "ckpt.known")] == ["skip", "skip"]


def test_bytes_after_a_safetensors_file_warn(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(4)}, tmp_path / "m.safetensors")
    with open(tmp_path / "m.safetensors", "ab") as f:
        f.write(b"appended")
    code, report, _ = ckpt(tmp_path / "m.safetensors")
    f = one(report, "ckpt.integrity")
    assert (f["status"], f["recipe"]) == ("warn", "checkpoint-truncated")
    assert "8 bytes after its last tensor" in f["message"]


# --- ckpt.known ----------------------------------------------------------------------------------

def test_known_names(tmp_path, r18_state):
    torch.save({"w": torch.zeros(3)}, tmp_path / "sam_vit_b_01ec64.pth")
    torch.save({"w": torch.zeros(3)}, tmp_path / "tmp.pth")
    digest = hashlib.sha256((tmp_path / "tmp.pth").read_bytes()).hexdigest()
    (tmp_path / "tmp.pth").rename(tmp_path / f"resnet18-{digest[:8]}.pth")
    torch.save({"w": torch.zeros(3)}, tmp_path / "resnet50-0123abcd.pth")
    code, report, _ = ckpt(tmp_path / "sam_vit_b_01ec64.pth", tmp_path / f"resnet18-{digest[:8]}.pth",
                           tmp_path / "resnet50-0123abcd.pth", "--deep")
    sam, good, bad = findings(report, "ckpt.known")
    assert (sam["status"], sam["recipe"]) == ("fail", "checkpoint-hash-mismatch")
    assert "the official SAM vit_b file is 375,042,383" in sam["message"]
    assert good["status"] == "pass" and f"sha256 prefix {digest[:8]} matches" in good["message"]
    assert bad["status"] == "fail" and "the name promises 0123abcd" in bad["message"]


def test_yolov8_size_warns(tmp_path):
    torch.save({"w": torch.zeros(3)}, tmp_path / "yolov8n.pt")
    code, report, _ = ckpt(tmp_path / "yolov8n.pt")
    f = one(report, "ckpt.known")
    assert (f["status"], f["recipe"]) == ("warn", "checkpoint-hash-mismatch")
    assert "outside the approximate" in f["message"]


# --- ckpt.loadable -------------------------------------------------------------------------------

def test_weights_only_refusal_quotes_the_global(tmp_path):
    np = pytest.importorskip("numpy")
    torch.save({"w": torch.zeros(2), "best": np.arange(3)}, tmp_path / "np.pt")
    code, report, _ = ckpt(tmp_path / "np.pt")
    f = one(report, "ckpt.loadable")
    assert (f["status"], f["recipe"]) == ("warn", "checkpoint-load-failed")
    assert "unsupported global numpy." in f["message"]
    assert "add_safe_globals([numpy." in f["fix"]
    # every global it needs, not just the first torch names (allowing only that one meets the
    # next refusal)
    assert "numpy.ndarray" in f["fix"] and "numpy.dtype" in f["fix"], f["fix"]


def test_pickle_protocol_4_is_named_not_called_corrupt(tmp_path):
    torch.save({"w": torch.zeros(2)}, tmp_path / "p4.pt", pickle_protocol=4)
    code, report, _ = ckpt(tmp_path / "p4.pt")
    f = one(report, "ckpt.loadable")
    assert f["status"] == "warn" and "FRAME, pickle protocol 4" in f["message"], f
    assert "the file itself is whole" in f["message"] and "pickle_protocol" in f["fix"]


def test_cuda_saved_file_on_a_cpu_machine(tmp_path, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    import torch.serialization as ser

    monkeypatch.setattr(ser, "location_tag", lambda storage: "cuda:0")
    torch.save({"w": torch.zeros(2)}, tmp_path / "gpu.pt")
    monkeypatch.undo()
    code, report, _ = ckpt(tmp_path / "gpu.pt")
    f = one(report, "ckpt.loadable")
    assert (f["status"], f["recipe"]) == ("warn", "checkpoint-cuda-saved")
    assert f["fix"].endswith("gpu.pt', map_location='cpu')")
    assert "saved from cuda:0" in one(report, "ckpt.format")["message"]


def test_load_errors_and_crashes(tmp_path, monkeypatch):
    import cvdoctor.probes

    torch.save({"w": torch.zeros(2)}, tmp_path / "m.pt")

    def fake(name, args=None, *, timeout_s=60.0, env=None, stdin=None):
        paths = [it["path"] for it in json.loads(stdin)]
        return {"results": {p: {"status": "error", "error_type": "RuntimeError",
                                "error": "PytorchStreamReader failed reading zip archive: "
                                         "Attempted to read a PyTorch file with version 20"}
                            for p in paths}, "_probe": {"ok": True}}

    monkeypatch.setattr(cvdoctor.probes, "run_probe", fake)
    code, report, _ = ckpt(tmp_path / "m.pt")
    f = one(report, "ckpt.loadable")
    assert (f["status"], f["recipe"]) == ("fail", "checkpoint-load-failed")
    assert "version 20" in f["message"] and code == 1


# --- ckpt.fit ------------------------------------------------------------------------------------

def test_fit_verdicts(tmp_path, r18_state):
    torch.save(r18_state, tmp_path / "r18.pt")
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), tmp_path / "r50.pt")
    torch.save({k: v for k, v in r18_state.items() if k.startswith(("conv1", "bn1", "layer1"))},
               tmp_path / "part.pt")
    torch.save({"other.weight": torch.zeros(2)}, tmp_path / "other.pt")
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "empty.pt")
    code, report, _ = ckpt(tmp_path / "r18.pt", tmp_path / "r50.pt", tmp_path / "part.pt",
                           tmp_path / "other.pt", tmp_path / "empty.pt", "--model",
                           "torchvision:resnet18", "--num-classes", "10")
    head, variant, part, other, empty = findings(report, "ckpt.fit")
    assert (head["status"], head["recipe"]) == ("warn", "head-size-mismatch")
    assert "checkpoint has 1000 classes, the model 10" in head["message"]
    assert (variant["status"], variant["recipe"]) == ("fail", "checkpoint-wrong-variant")
    assert "resnet50 weights into a resnet18 model" in variant["message"]
    assert (part["status"], part["recipe"]) == ("warn", "checkpoint-partial-load")
    assert (other["status"], other["recipe"]) == ("fail", "state-dict-mismatch")
    assert empty["status"] == "skip"


def test_fit_of_a_state_dict_with_a_few_missing_keys(tmp_path, r18_state):
    torch.save({k: v for k, v in r18_state.items() if not k.startswith("layer4.1.bn2")},
               tmp_path / "m.pt")
    code, report, _ = ckpt(tmp_path / "m.pt", "--model", "torchvision:resnet18")
    f = one(report, "ckpt.fit")
    assert (f["status"], f["recipe"]) == ("warn", "state-dict-mismatch")
    assert "missing `layer4.1.bn2.weight`" in f["message"]


def test_fit_is_left_out_without_a_model(tmp_path, r18_state):
    """ckpt.fit is opt-in: no --model, no fit line; asked for by name, it says what to give."""
    torch.save(r18_state, tmp_path / "r18.pt")
    code, report, _ = ckpt(tmp_path / "r18.pt")
    assert "ckpt.fit" not in {f["check"] for f in report["findings"]}
    code, report, _ = ckpt(tmp_path / "r18.pt", "--select", "ckpt.fit")
    fit = one(report, "ckpt.fit")
    assert fit["status"] == "skip" and "give --model" in fit["message"]


def test_sam_variant_through_the_command(tmp_path):
    pytest.importorskip("segment_anything")
    state = collections.OrderedDict()
    state["image_encoder.patch_embed.proj.weight"] = torch.zeros(1024, 3, 16, 16)
    for i in range(24):
        state[f"image_encoder.blocks.{i}.norm1.weight"] = torch.zeros(1024)
    torch.save(state, tmp_path / "sam_l_part.pth")
    code, report, _ = ckpt(tmp_path / "sam_l_part.pth", "--model", "segment_anything:vit_b")
    f = one(report, "ckpt.fit")
    assert (f["status"], f["recipe"]) == ("fail", "checkpoint-wrong-variant")
    assert "SAM vit_l (embed 1024, 24 blocks) weights into a SAM vit_b (embed 768, 12 blocks)" \
        in f["message"]
    assert "sam_model_registry['vit_l']" in f["message"]
    known = one(report, "ckpt.known")
    assert known["status"] == "pass" and "SAM vit_l encoder" in known["message"]


# --- --fix ---------------------------------------------------------------------------------------

def test_fix_writes_a_verified_copy_and_never_touches_the_input(tmp_path, r18_state):
    src = tmp_path / "lt.ckpt"
    torch.save({"state_dict": {"model._orig_mod." + k: v for k, v in r18_state.items()},
                "epoch": 2}, src)
    before = src.read_bytes()
    out = tmp_path / "clean.safetensors"
    code, report, _ = ckpt(src, "--model", "torchvision:resnet18", "--fix", out)
    fix = findings(report, "ckpt.fit")[-1]
    assert fix["status"] == "pass", fix
    assert "it loads strictly into the model" in fix["message"]
    assert src.read_bytes() == before
    from safetensors.torch import load_file

    model = torchvision.models.resnet18(weights=None)
    model.load_state_dict(load_file(out))  # strict
    assert torch.equal(model.conv1.weight, r18_state["conv1.weight"])
    code, report, stderr = ckpt(src, "--model", "torchvision:resnet18", "--fix", out)
    assert code == 2 and "exists; add --force" in stderr
    code, report, _ = ckpt(src, "--model", "torchvision:resnet18", "--fix", out, "--force")
    assert findings(report, "ckpt.fit")[-1]["status"] == "pass"


def test_fix_with_the_head_skipped(tmp_path, r18_state):
    torch.save(r18_state, tmp_path / "r18.pt")
    out = tmp_path / "backbone.pt"
    code, report, _ = ckpt(tmp_path / "r18.pt", "--model", "torchvision:resnet18",
                           "--num-classes", "10", "--fix", out)
    refused = findings(report, "ckpt.fit")[-1]
    assert (refused["status"], refused["recipe"]) == ("fail", "head-size-mismatch")
    assert "add --skip-head" in refused["message"] and not out.exists()
    code, report, _ = ckpt(tmp_path / "r18.pt", "--model", "torchvision:resnet18",
                           "--num-classes", "10", "--fix", out, "--skip-head")
    fix = findings(report, "ckpt.fit")[-1]
    assert fix["status"] == "pass" and "exactly the head missing" in fix["message"]
    state = torch.load(out, weights_only=True)
    assert "fc.weight" not in state and len(state) == 120


def test_fix_refuses_what_it_cannot_repair(tmp_path):
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), tmp_path / "r50.pt")
    torch.save({"w": torch.zeros(2), "cfg": MyConfig()}, tmp_path / "foreign.pt")
    buf = io.BytesIO()
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as zin, \
            zipfile.ZipFile(tmp_path / "cut.pt", "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            zout.writestr(info, data[:100] if info.filename.endswith("data/0") else data)
    expected = {"r50.pt": "checkpoint-wrong-variant", "foreign.pt": "checkpoint-unsafe-pickle",
                "cut.pt": "checkpoint-truncated"}
    for name, recipe in expected.items():
        out = tmp_path / f"fixed-{name}.safetensors"
        code, report, _ = ckpt(tmp_path / name, "--model", "torchvision:resnet18", "--fix", out)
        fix = findings(report, "ckpt.fit")[-1]
        assert (fix["status"], fix["recipe"]) == ("fail", recipe), (name, fix)
        assert not out.exists()


def test_fix_never_allows_getattr_or_a_called_library_class(tmp_path, r18_state):
    """A state dict next to a bound method (pickled as getattr(obj, name)): a weights_only load
    would need builtins.getattr allowed, which lets a pickle fetch and hand on any method; --fix
    refuses instead of loading it, and the load lines fall back to 'only if you trust it'."""
    holder = torch.nn.Linear(2, 2)
    torch.save({"model": r18_state, "fwd": holder.forward}, tmp_path / "bound.pt")
    out = tmp_path / "fixed.safetensors"
    code, report, _ = ckpt(tmp_path / "bound.pt", "--model", "torchvision:resnet18", "--fix", out)
    fix = findings(report, "ckpt.fit")[-1]
    assert fix["status"] == "fail" and "builtins.getattr" in fix["message"], fix
    assert not out.exists()
    fit = findings(report, "ckpt.fit")[0]
    assert "safe_globals" not in fit["message"] and "weights_only=False" in fit["message"], fit


def test_fix_that_does_not_verify_fails(tmp_path, r18_state, monkeypatch):
    import cvdoctor.probes

    torch.save(r18_state, tmp_path / "r18.pt")
    real = cvdoctor.probes.run_probe

    def fake(name, *a, **kw):
        if name == "ckpt_fix_probe":
            return {"ok": False, "missing": ["fc.bias"], "unexpected": [], "wrong_shape": [],
                    "_probe": {"ok": True}}
        return real(name, *a, **kw)

    monkeypatch.setattr(cvdoctor.probes, "run_probe", fake)
    code, report, _ = ckpt(tmp_path / "r18.pt", "--model", "torchvision:resnet18", "--fix",
                           tmp_path / "out.pt")
    fix = findings(report, "ckpt.fit")[-1]
    assert (fix["status"], fix["recipe"]) == ("fail", "checkpoint-load-failed")
    assert "does not verify (missing `fc.bias`)" in fix["message"]


# --- bad input -----------------------------------------------------------------------------------

def test_bad_input_is_a_usage_error_not_a_crash(tmp_path, r18_state):
    torch.save(r18_state, tmp_path / "ok.pt")
    fifo = tmp_path / "pipe.pt"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.pt"
    os.symlink(loop, loop)
    cases = [
        ([tmp_path], "is a directory"),
        ([tmp_path / "nope.pt"], "no such file"),
        ([fifo], "is a FIFO (named pipe), not a checkpoint file"),
        (["/dev/zero"], "is a character device"),
        ([loop], "cannot read it"),
        ([tmp_path / "ok.pt", "--fix", tmp_path / "o.pt"], "--fix needs --model"),
        ([tmp_path / "ok.pt", "--model", "torchvision:resnet18", "--fix", tmp_path / "ok.pt"],
         "is the input itself"),
        ([tmp_path / "ok.pt", tmp_path / "ok.pt", "--model", "torchvision:resnet18", "--fix",
          tmp_path / "o.pt"], "one checkpoint at a time"),
        ([tmp_path / "ok.pt", "--skip-head"], "--skip-head goes with --fix"),
        ([tmp_path / "ok.pt", "--model", "torchvision:resnet999"], "torchvision has no"),
        ([tmp_path / "ok.pt", "--model", "segment_anything:vit_x"], "vit_b, vit_l and vit_h"),
    ]
    for args, words in cases:
        result = CliRunner().invoke(cli, ["ckpt", *map(str, args)])
        assert result.exit_code == 2, (args, result.exit_code, result.output)
        assert words in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_is_a_usage_error(tmp_path):
    path = tmp_path / "secret.pt"
    torch.save({"w": torch.zeros(1)}, path)
    path.chmod(0)
    result = CliRunner().invoke(cli, ["ckpt", str(path)])
    assert result.exit_code == 2 and "permission denied" in result.stderr


def test_garbage_files_never_error(tmp_path):
    """Random and cut bytes: findings, never an `error` (exit 3)."""
    import random

    rng = random.Random(3)
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(5)}, buf)
    good = buf.getvalue()
    names = []
    for i in range(12):
        data = bytearray(good[: rng.randrange(1, len(good))])
        for _ in range(rng.randrange(0, 6)):
            if data:
                data[rng.randrange(len(data))] = rng.randrange(256)
        (tmp_path / f"g{i}.pt").write_bytes(bytes(data))
        names.append(tmp_path / f"g{i}.pt")
    (tmp_path / "junk.pkl").write_bytes(b"\x80\x04" + bytes(rng.randrange(256) for _ in range(500)))
    names.append(tmp_path / "junk.pkl")
    result = CliRunner().invoke(cli, ["ckpt", *map(str, names), "--json", "--deep"])
    assert result.exit_code in (0, 1), result.output
    report = json.loads(result.stdout)
    assert not [f for f in report["findings"] if f["status"] == "error"]


# --- the Python API, the pytest helper, model.checkpoint --------------------------------------------

def test_api_takes_a_model_object(tmp_path, r18_state):
    import cvdoctor

    torch.save(r18_state, tmp_path / "r18.pt")
    model = torchvision.models.resnet18(weights=None)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = cvdoctor.check_ckpt(str(tmp_path / "r18.pt"), model=model, select=["ckpt.fit"])
    assert report["ckpt.fit"].status == "pass"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_assert_checkpoint_fits(tmp_path, r18_state):
    from pytest_cvdoctor import assert_checkpoint_fits

    torch.save(r18_state, tmp_path / "r18.pt")
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), tmp_path / "r50.pt")
    model = torchvision.models.resnet18(weights=None)
    assert assert_checkpoint_fits(model, tmp_path / "r18.pt").ok
    with pytest.raises(AssertionError, match="resnet50 weights into a resnet18 model"):
        assert_checkpoint_fits(model, tmp_path / "r50.pt")


MODEL_FILE = """
import torchvision
checkpoint = {path!r}
input_shape = (3, 32, 32)
def build_model():
    return torchvision.models.resnet18(weights=None{extra})
"""


def _model_check(tmp_path, ckpt_path, extra=""):
    f = tmp_path / f"m{abs(hash((str(ckpt_path), extra)))}.py"
    f.write_text(MODEL_FILE.format(path=str(ckpt_path), extra=extra))
    result = CliRunner().invoke(cli, ["model", str(f), "--select", "model.checkpoint", "--json"])
    assert result.exit_code in (0, 1), result.output
    (finding,) = json.loads(result.stdout)["findings"]
    return finding


def test_model_checkpoint_from_the_model_file(tmp_path, r18_state):
    torch.save(r18_state, tmp_path / "good.pt")
    torch.save({"module." + k: v for k, v in r18_state.items()}, tmp_path / "ddp.pt")
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), tmp_path / "r50.pt")
    torch.save({k: v for k, v in r18_state.items() if k.startswith("conv1")}, tmp_path / "p.pt")
    torch.save({"x.weight": torch.zeros(1)}, tmp_path / "other.pt")
    marker = tmp_path / "RAN"
    torch.save({"x": Payload(marker)}, tmp_path / "evil.pt")
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[:1000])
    (tmp_path / "page.pt").write_text("<html>not found</html>")
    cases = [
        ("good.pt", "", ("pass", None)),
        ("ddp.pt", "", ("warn", "checkpoint-key-prefix")),
        ("good.pt", ", num_classes=10", ("warn", "head-size-mismatch")),
        ("r50.pt", "", ("fail", "checkpoint-wrong-variant")),
        ("p.pt", "", ("warn", "checkpoint-partial-load")),
        ("other.pt", "", ("fail", "state-dict-mismatch")),
        ("evil.pt", "", ("fail", "checkpoint-unsafe-pickle")),
        ("cut.pt", "", ("fail", "checkpoint-truncated")),
        ("page.pt", "", ("fail", "checkpoint-not-a-checkpoint")),
        ("missing.pt", "", ("fail", "checkpoint-not-a-checkpoint")),
        ("sam_vit_b_01ec64.pth", "", ("fail", "sam-checkpoint-missing")),
    ]
    for name, extra, expected in cases:
        f = _model_check(tmp_path, tmp_path / name, extra)
        assert (f["status"], f.get("recipe")) == expected, (name, f)
    assert not marker.exists()


def test_model_checkpoint_stays_out_when_none_is_named(tmp_path):
    result = CliRunner().invoke(cli, ["model", "torchvision:resnet18", "--select",
                                      "model.checkpoint", "--json"])
    (finding,) = json.loads(result.stdout)["findings"]
    assert finding["status"] == "skip" and "give --checkpoint" in finding["message"]
    assert "`weights = ...`" in finding["message"]


def test_requirement_check_for_the_pytest_marker(tmp_path, r18_state):
    from cvdoctor.checkpoint.records import requirement_unmet

    torch.save(r18_state, tmp_path / "ok.pt")
    data = (tmp_path / "ok.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[:5000])
    assert requirement_unmet(tmp_path / "ok.pt") is None
    reason, recipe = requirement_unmet(tmp_path / "cut.pt")
    assert recipe == "checkpoint-truncated" and "is truncated or corrupted" in reason
    assert requirement_unmet(tmp_path / "gone.pt")[1] == "checkpoint-not-a-checkpoint"
