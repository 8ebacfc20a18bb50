"""env.checkpoints on real files made here: truncated, HTML, LFS pointer, wrong hash, wrong size,
malicious pickles (whose payload must never run), safetensors, and healthy ones."""
from __future__ import annotations

import collections
import hashlib
import json
import os
import pathlib
import pickle
import struct
import sys
import types

import pytest
from click.testing import CliRunner

import cvdoctor
from cvdoctor.cli import cli
from cvdoctor.facts import EnvContext, EnvOptions
from cvdoctor.facts import checkpoints as facts

torch = pytest.importorskip("torch")

CHECK = "env.checkpoints"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """HOME, caches and config point into tmp_path: the real home is never scanned or written."""
    home = tmp_path / "home"
    home.mkdir()
    for var, sub in (("HOME", "home"), ("TORCH_HOME", "home/torch"),
                     ("XDG_CACHE_HOME", "home/cache"), ("XDG_CONFIG_HOME", "home/config")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.delenv("YOLO_CONFIG_DIR", raising=False)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return home


@pytest.fixture
def ckdir(tmp_path):
    d = tmp_path / "ckpts"
    d.mkdir()
    return d


def state_dict(n: int = 4):
    torch.manual_seed(0)
    return collections.OrderedDict(weight=torch.randn(n, n), bias=torch.zeros(n))


def save(path: pathlib.Path, obj=None, **kw) -> pathlib.Path:
    torch.save(state_dict() if obj is None else obj, path, **kw)
    return path


def sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(*dirs, deep=False):
    return cvdoctor.check_env(select=[CHECK], checkpoint_dirs=list(dirs), deep=deep)[CHECK]


def row(finding, name):
    rows = [r for r in finding.evidence["files"] if pathlib.Path(r["path"]).name == name]
    assert rows, f"{name} not among {[r['path'] for r in finding.evidence['files']]}"
    return rows[0]


class OsSystemPayload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class PathTouchPayload:
    def __init__(self, marker):
        self.marker = pathlib.Path(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


# --- nothing there, healthy files ----------------------------------------------------------------

def test_no_checkpoints_passes_and_names_the_places(ckdir, tmp_path):
    f = run(ckdir)
    assert f.status == "pass"
    assert f.message.startswith("no checkpoints found in ")
    assert str(ckdir) in f.message
    assert str(tmp_path / "home/torch/hub/checkpoints") in f.message
    assert f.evidence["files"] == []


def test_healthy_zip_and_legacy_checkpoints_load_with_weights_only(ckdir):
    save(ckdir / "model.pt")
    save(ckdir / "old_format.pth", _use_new_zipfile_serialization=False)
    f = run(ckdir)
    assert f.status == "pass", f.message
    assert "2 checkpoints look whole (2 loaded with weights_only=True" in f.message
    for name, fmt in (("model.pt", "torch-zip"), ("old_format.pth", "torch-legacy")):
        r = row(f, name)
        assert (r["status"], r["load"], r["format"]) == ("pass", "ok", fmt)


# --- truncated -----------------------------------------------------------------------------------

def test_truncated_zip_checkpoint_fails(ckdir):
    data = save(ckdir / "full.pt").read_bytes()
    (ckdir / "full.pt").unlink()
    (ckdir / "cut.pt").write_bytes(data[: len(data) // 2])
    f = run(ckdir)
    assert (f.status, f.recipe) == ("fail", "checkpoint-truncated")
    assert f.message.startswith(f"cut.pt is truncated ({len(data) // 2:,} bytes)")
    assert "end-of-central-directory" in f.message
    assert row(f, "cut.pt")["load"] is None  # never handed to torch.load


def test_truncated_legacy_checkpoint_fails(ckdir):
    data = save(ckdir / "x.pth", _use_new_zipfile_serialization=False).read_bytes()
    (ckdir / "x.pth").write_bytes(data[:200])
    f = run(ckdir)
    assert (f.status, f.recipe) == ("fail", "checkpoint-truncated")
    assert "STOP opcode" in f.message


def test_truncated_known_sam_file_reports_bytes_of_expected(ckdir):
    data = save(ckdir / "sam_vit_b_01ec64.pth").read_bytes()
    (ckdir / "sam_vit_b_01ec64.pth").write_bytes(data[:-40])
    f = run(ckdir)
    assert (f.status, f.recipe) == ("fail", "checkpoint-truncated")
    assert f"({len(data) - 40:,} of 375,042,383 bytes)" in f.message
    assert "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth" in f.fix


# --- not a checkpoint at all ---------------------------------------------------------------------

def test_html_page_named_like_a_hub_checkpoint_fails(ckdir):
    (ckdir / "resnet18-f37072fd.pth").write_text(
        "<!DOCTYPE html>\n<html><head><title>403 Forbidden</title></head></html>\n")
    f = run(ckdir)
    assert (f.status, f.recipe) == ("fail", "checkpoint-not-a-checkpoint")
    assert f.message.startswith("resnet18-f37072fd.pth is an HTML page")
    assert row(f, "resnet18-f37072fd.pth")["kind"] == "html"


def test_s3_xml_error_document_fails(ckdir):
    (ckdir / "sam_vit_h_4b8939.pth").write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code></Error>')
    f = run(ckdir)
    assert (f.status, f.recipe) == ("fail", "checkpoint-not-a-checkpoint")
    assert "XML error document" in f.message


def test_git_lfs_pointer_fails_and_says_the_real_size(ckdir):
    (ckdir / "weights.pth").write_text(
        "version https://git-lfs.github.com/spec/v1\n"
        "oid sha256:4d7a3b0a1c5e9f2b8d6e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e\n"
        "size 102540417\n")
    f = run(ckdir)
    assert (f.status, f.recipe) == ("fail", "checkpoint-not-a-checkpoint")
    assert "Git LFS pointer for a 97.8 MiB file" in f.message
    assert "git lfs pull" in f.fix


def test_empty_file_fails(ckdir):
    (ckdir / "yolov8n.pt").write_bytes(b"")
    f = run(ckdir)
    assert (f.status, f.recipe) == ("fail", "checkpoint-not-a-checkpoint")
    assert "is empty (0 bytes)" in f.message
    assert "YOLO('yolov8n.pt')" in f.fix


def test_unrecognized_bytes_fail_for_pth_but_bin_is_ignored(ckdir):
    (ckdir / "blob.bin").write_bytes(bytes(range(256)) * 4)
    assert run(ckdir).status == "pass"
    (ckdir / "blob.pth").write_bytes(bytes(range(256)) * 4)
    f = run(ckdir)
    assert (f.status, f.recipe) == ("fail", "checkpoint-not-a-checkpoint")
    assert f.message.startswith("blob.pth starts with bytes 00010203")
    assert f.evidence["ignored"] == [str(ckdir / "blob.bin")]


def test_rezipped_archive_without_subdirectory_fails(ckdir):
    import zipfile

    src = save(ckdir / "orig.pt")
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(ckdir / "rezipped.pt", "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename.split("/", 1)[1], zin.read(info))
    src.unlink()
    f = run(ckdir)
    assert (f.status, f.recipe) == ("fail", "checkpoint-not-a-checkpoint")
    assert "not in a subdirectory: data.pkl" in f.message


# --- size and hash -------------------------------------------------------------------------------

def test_hub_name_with_its_real_sha256_prefix_passes_and_is_cached(ckdir, isolated_home):
    tmp = save(ckdir / "tmp.pth")
    good = ckdir / f"resnet18-{sha256(tmp)[:8]}.pth"
    tmp.rename(good)
    shallow = run(ckdir)
    assert shallow.status == "pass"
    assert "hash not verified (full hash runs under --deep)" in shallow.message
    deep = run(ckdir, deep=True)
    assert deep.status == "pass"
    assert "sha256 prefix matches" in deep.message
    cache = json.loads((isolated_home / "cache/cvdoctor/checkpoint-hashes.json").read_text())
    assert cache[os.path.realpath(good)]["sha256"] == sha256(good)
    # The cached digest (same size and mtime) now answers without --deep.
    again = run(ckdir)
    assert "sha256 prefix matches" in again.message


def test_wrong_sha256_prefix_fails_under_deep(ckdir):
    save(ckdir / "resnet18-f37072fd.pth")
    actual = sha256(ckdir / "resnet18-f37072fd.pth")
    assert not actual.startswith("f37072fd")
    assert run(ckdir).status == "pass"  # without --deep the hash is not computed
    f = run(ckdir, deep=True)
    assert (f.status, f.recipe) == ("fail", "checkpoint-hash-mismatch")
    assert f"has SHA-256 {actual[:8]}..., the name promises f37072fd..." in f.message


def test_stale_cache_entry_is_not_trusted_after_the_file_changes(ckdir):
    path = save(ckdir / "resnet18-f37072fd.pth")
    run(ckdir, deep=True)
    save(path, collections.OrderedDict(w=torch.ones(7)))
    os.utime(path, ns=(1, 1))
    assert "hash not verified" in run(ckdir).message


def test_sam_file_of_the_wrong_size_fails(ckdir):
    save(ckdir / "sam_vit_b_01ec64.pth")
    f = run(ckdir)
    size = (ckdir / "sam_vit_b_01ec64.pth").stat().st_size
    assert (f.status, f.recipe) == ("fail", "checkpoint-hash-mismatch")
    assert f"is {size:,} bytes, the official SAM vit_b file is 375,042,383" in f.message


def _fake_ultralytics_model(monkeypatch):
    mod = types.ModuleType("ultralytics.nn.tasks")

    class DetectionModel(torch.nn.Module):
        def __init__(self, n):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(n))

    DetectionModel.__module__, DetectionModel.__qualname__ = "ultralytics.nn.tasks", "DetectionModel"
    mod.DetectionModel = DetectionModel
    for parent in ("ultralytics", "ultralytics.nn"):
        monkeypatch.setitem(sys.modules, parent, types.ModuleType(parent))
    monkeypatch.setitem(sys.modules, "ultralytics.nn.tasks", mod)
    return DetectionModel


def test_yolov8_pickle_of_official_size_passes_and_wrong_size_warns(ckdir, monkeypatch):
    Model = _fake_ultralytics_model(monkeypatch)
    save(ckdir / "yolov8n.pt", {"model": Model(1_600_000).half().float(), "epoch": -1})
    f = run(ckdir)
    assert f.status == "pass", f.message
    assert "is an ultralytics model pickle" in f.message
    assert row(f, "yolov8n.pt")["load"] is None  # pickled classes: never passed to torch.load
    save(ckdir / "yolov8n.pt", {"model": Model(10), "epoch": -1})
    f = run(ckdir)
    assert (f.status, f.recipe) == ("warn", "checkpoint-hash-mismatch")
    assert "outside the approximate" in f.message and "YOLOv8n" in f.message


# --- pickles that run code -----------------------------------------------------------------------

def test_malicious_torch_zip_checkpoint_fails_and_payload_never_runs(ckdir, tmp_path, monkeypatch):
    control = tmp_path / "control-ran"
    save(tmp_path / "control.pt", {"x": OsSystemPayload(control)})
    torch.load(tmp_path / "control.pt", weights_only=False)  # the payload is live...
    assert control.exists()

    marker = tmp_path / "PAYLOAD-RAN"
    save(ckdir / "model.pt", {"w": torch.zeros(2), "x": OsSystemPayload(marker)})
    probed = []
    real_run_probe = cvdoctor.probes.run_probe
    monkeypatch.setattr(cvdoctor.probes, "run_probe",
                        lambda *a, **kw: probed.append(kw.get("stdin")) or real_run_probe(*a, **kw))
    f = run(ckdir, deep=True)
    assert (f.status, f.recipe) == ("fail", "checkpoint-unsafe-pickle")
    assert "posix.system" in f.message or "os.system" in f.message
    assert not marker.exists()  # ...but not here
    assert probed == []  # and the file never reached the loading subprocess


def test_malicious_raw_pickle_fails_and_payload_never_runs(ckdir, tmp_path):
    control = tmp_path / "control-ran"
    pickle.loads(pickle.dumps(PathTouchPayload(control), protocol=4))
    assert control.exists()

    marker = tmp_path / "PAYLOAD-RAN"
    (ckdir / "weights.pth").write_bytes(pickle.dumps(PathTouchPayload(marker), protocol=4))
    (ckdir / "weights_p2.pth").write_bytes(pickle.dumps(PathTouchPayload(marker), protocol=2))
    f = run(ckdir, deep=True)
    assert (f.status, f.recipe) == ("fail", "checkpoint-unsafe-pickle")
    assert "pathlib.Path.touch" in row(f, "weights.pth")["verdict"]  # protocol 4: STACK_GLOBAL
    assert "builtins.getattr" in row(f, "weights_p2.pth")["verdict"]  # protocol 2: getattr
    assert "1 more failing" in f.message
    assert not marker.exists()


class NestedTorchBytes:
    """What pickle.dump of a tensor writes: torch.save bytes handed to _load_from_bytes, which
    torch.load()s them with weights_only=False."""

    def __init__(self, blob):
        self.blob = blob

    def __reduce__(self):
        return (torch.storage._load_from_bytes, (self.blob,))


def test_payload_hidden_in_nested_torch_bytes_of_a_plain_pickle_fails(ckdir, tmp_path):
    import io

    marker = tmp_path / "PAYLOAD-RAN"
    buf = io.BytesIO()
    torch.save({"x": OsSystemPayload(marker)}, buf)
    (ckdir / "nested.pkl.pt").write_bytes(pickle.dumps(NestedTorchBytes(buf.getvalue())))
    f = run(ckdir)
    assert (f.status, f.recipe) == ("fail", "checkpoint-unsafe-pickle")
    assert "posix.system" in f.message or "os.system" in f.message
    assert not marker.exists()


def test_plain_pickle_of_a_state_dict_warns_but_is_not_called_unsafe(ckdir):
    (ckdir / "pickled.pth").write_bytes(pickle.dumps(state_dict()))
    f = run(ckdir)
    assert (f.status, f.recipe) == ("warn", "checkpoint-load-failed")
    assert "torch.storage._load_from_bytes" in row(f, "pickled.pth")["globals"]


def test_unknown_class_pickle_warns_and_is_not_loaded(ckdir, monkeypatch):
    mod = types.ModuleType("mytrainer")

    class Config:
        lr = 0.1

    Config.__module__, Config.__qualname__ = "mytrainer", "Config"
    mod.Config = Config
    monkeypatch.setitem(sys.modules, "mytrainer", mod)
    save(ckdir / "run.ckpt", {"state_dict": state_dict(), "cfg": Config()})
    f = run(ckdir)
    assert (f.status, f.recipe) == ("warn", "checkpoint-unsafe-pickle")
    assert "mytrainer.Config" in f.message
    assert row(f, "run.ckpt")["load"] is None


def test_whole_pickled_torch_module_warns_load_failed(ckdir):
    save(ckdir / "whole.pt", torch.nn.Linear(3, 2))
    f = run(ckdir)
    assert (f.status, f.recipe) == ("warn", "checkpoint-load-failed")
    assert "torch.nn.modules.linear.Linear" in f.message


def test_numpy_in_checkpoint_is_refused_by_weights_only_load(ckdir):
    np = pytest.importorskip("numpy")
    save(ckdir / "with_numpy.pt", {"w": torch.zeros(2), "best": np.arange(3)})
    f = run(ckdir)
    assert (f.status, f.recipe) == ("warn", "checkpoint-load-failed")
    assert "unsupported global numpy." in f.message and "_reconstruct" in f.message
    assert "add_safe_globals([numpy." in f.fix
    assert row(f, "with_numpy.pt")["load"] == "error"  # the real torch.load said so


# --- safetensors ---------------------------------------------------------------------------------

def _safetensors_bytes(n: int = 6) -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]},
                         "__metadata__": {"format": "pt"}}).encode()
    return struct.pack("<Q", len(header)) + header + struct.pack(f"<{n}f", *range(n))


def test_handbuilt_safetensors_passes_and_truncated_fails(ckdir):
    data = _safetensors_bytes()
    (ckdir / "model.safetensors").write_bytes(data)
    f = run(ckdir)
    assert f.status == "pass", f.message
    assert row(f, "model.safetensors")["kind"] == "safetensors"
    (ckdir / "model.safetensors").write_bytes(data[:-8])
    f = run(ckdir)
    assert (f.status, f.recipe) == ("fail", "checkpoint-truncated")
    assert "tensor data ends at byte 24 but only 16 bytes follow the header" in f.message


# --- the probe seam: crashes, timeouts, errors ---------------------------------------------------

def _fake_probe(result):
    def fake(name, args=None, *, timeout_s=60.0, env=None, stdin=None):
        return {**result, "_probe": {"ok": False, "reason": result.get("reason", "signal"),
                                     "signal": "SIGSEGV", "timeout_s": timeout_s,
                                     "stderr": "Segmentation fault"}}
    return fake


def test_probe_crash_fails_with_load_failed(ckdir, monkeypatch):
    save(ckdir / "model.pt")
    monkeypatch.setattr(cvdoctor.probes, "run_probe", _fake_probe({"reason": "signal"}))
    f = run(ckdir)
    assert (f.status, f.recipe) == ("fail", "checkpoint-load-failed")
    assert "killed the probe process that loaded it (SIGSEGV)" in f.message


def test_probe_timeout_warns(ckdir, monkeypatch):
    save(ckdir / "model.pt")
    monkeypatch.setattr(cvdoctor.probes, "run_probe", _fake_probe({"reason": "timeout"}))
    f = run(ckdir)
    assert (f.status, f.recipe) == ("warn", "checkpoint-load-failed")
    assert "did not load within 60.0 s" in f.message


def _recorded(**rec):
    base = {"path": f"/data/{rec['name']}", "place": "checkpoint_dir", "kind": "zip",
            "zip": {"eocd": True, "complete": True, "format": "torch-zip"},
            "pickle": {"globals": ["collections.OrderedDict"], "allowed": ["collections.OrderedDict"],
                       "library": [], "foreign": [], "denied": []}}
    base.update(rec)
    return {"places": [{"place": "checkpoint_dir", "path": "/data", "exists": True}],
            "files": [base], "deep": False}


def _run_recorded(facts_dict):
    ctx = EnvContext(EnvOptions(), recorded={"checkpoints": facts_dict})
    from cvdoctor.runner import run as run_checks

    return run_checks("env", ctx, select=[CHECK])[CHECK]


def test_recorded_newer_format_version_fails_load_failed():
    msg = ("PytorchStreamReader failed reading zip archive: Attempted to read a PyTorch file with "
           "version 20, but the maximum supported version for reading is 13. Your PyTorch "
           "installation may be too old.")
    f = _run_recorded(_recorded(name="new.pt", size=4096,
                                load={"status": "error", "error_type": "RuntimeError", "error": msg}))
    assert (f.status, f.recipe) == ("fail", "checkpoint-load-failed")
    assert "maximum supported version" in f.message


def test_recorded_big_sam_checkpoint_is_not_loaded_by_default_and_says_so():
    f = _run_recorded(_recorded(
        name="sam_vit_h_4b8939.pth", size=2564550879,
        known=facts.identify_name("sam_vit_h_4b8939.pth", "cwd"),
        hash_skipped="full hash runs under --deep",
        load={"status": "skipped", "reason": "larger than 512 MiB; --deep loads it"}))
    assert f.status == "pass"
    assert f.message == ("sam_vit_h_4b8939.pth: not loaded: larger than 512 MiB; --deep loads it; "
                         "hash not verified (full hash runs under --deep)")


# --- discovery -----------------------------------------------------------------------------------

def test_discovery_covers_cwd_hub_cache_and_ultralytics_weights_dir(tmp_path, isolated_home):
    cwd = pathlib.Path.cwd()
    save(cwd / "top.pt")
    (cwd / "weights").mkdir()
    save(cwd / "weights" / "one_level.pt")
    (cwd / "weights" / "deeper").mkdir()
    save(cwd / "weights" / "deeper" / "too_deep.pt")
    (cwd / ".git").mkdir()
    save(cwd / ".git" / "hidden.pt")
    hub = tmp_path / "home/torch/hub/checkpoints"
    hub.mkdir(parents=True)
    (hub / "resnet18-f37072fd.pth").write_text("<html>")
    yolo_weights = tmp_path / "yolo-weights"
    yolo_weights.mkdir()
    (yolo_weights / "yolov8s.pt").write_bytes(b"")
    cfg = isolated_home / "config/Ultralytics"
    cfg.mkdir(parents=True)
    (cfg / "settings.json").write_text(json.dumps({"weights_dir": str(yolo_weights)}))

    data = EnvContext(EnvOptions(cwd=cwd)).fact("checkpoints")
    found = {pathlib.Path(f["path"]).name: f["place"] for f in data["files"]}
    assert found == {"top.pt": "cwd", "one_level.pt": "cwd", "resnet18-f37072fd.pth": "torch_hub",
                     "yolov8s.pt": "ultralytics"}
    assert [p["place"] for p in data["places"]] == ["cwd", "torch_hub", "ultralytics"]


# --- the pickle scanner on its own ---------------------------------------------------------------

@pytest.mark.parametrize("ref,expected", [
    ("torch._utils._rebuild_tensor_v2", "allowed"),
    ("torch.FloatStorage", "allowed"),
    ("torch.bfloat16", "allowed"),
    ("collections.OrderedDict", "allowed"),
    ("numpy.core.multiarray._reconstruct", "allowed"),
    ("torch.nn.modules.conv.Conv2d", "library"),
    ("ultralytics.nn.tasks.DetectionModel", "library"),
    ("pathlib.PosixPath", "library"),
    ("builtins.set", "allowed"),
    ("posix.system", "denied"),
    ("os.system", "denied"),
    ("builtins.eval", "denied"),
    ("builtins.getattr", "denied"),
    ("subprocess.Popen", "denied"),
    ("pathlib.Path.touch", "denied"),
    ("torch.storage._load_from_bytes", "library"),  # its embedded torch.save bytes are scanned
    ("torch.load", "denied"),
    ("__main__.Net", "foreign"),
])
def test_classify_global(ref, expected):
    assert facts.classify_global(ref) == expected


def test_stack_global_is_resolved_through_the_memo():
    import io

    # Two references to the same global: the second one reads both names back from the memo.
    data = pickle.dumps([pathlib.Path.touch, pathlib.Path.touch, os.system], protocol=4)
    scan = facts.scan_pickle(io.BytesIO(data))
    assert set(scan["globals"]) == {"pathlib.Path.touch", "posix.system"} or \
        set(scan["globals"]) == {"pathlib.Path.touch", "os.system"}


def test_stack_global_names_come_from_the_simulated_stack():
    import io

    # "os", "x", POP, "system", STACK_GLOBAL: the real stack holds os/system, and so does the
    # simulated one (a scanner that only remembers the last two strings sees x/system).
    body = (b"\x80\x04" + b"\x8c\x02os" + b"\x8c\x01x" + b"0" + b"\x8c\x06system" + b"\x93" + b".")
    scan = facts.scan_pickle(io.BytesIO(body))
    assert scan["globals"] == ["os.system"]
    assert facts.classify_global(scan["globals"][0]) == "denied"


def test_stack_global_that_cannot_be_resolved_counts_as_denied():
    import io

    # The module name is the result of a call (collections.OrderedDict()), not a string: the
    # machine cannot know what a load would resolve, so it does not guess.
    body = (b"\x80\x04" + b"\x8c\x0bcollections\x8c\x0bOrderedDict\x93)R"
            + b"\x8c\x06system\x93" + b".")
    scan = facts.scan_pickle(io.BytesIO(body))
    unresolved = [x for x in scan["findings"] if x["global"] and x["global"].startswith("<")]
    assert unresolved and unresolved[0]["category"] == "denied"
    assert "STACK_GLOBAL" in unresolved[0]["global"]


# --- command line --------------------------------------------------------------------------------

def test_cli_json_reports_the_failing_checkpoint(ckdir):
    (ckdir / "resnet18-f37072fd.pth").write_text("<!DOCTYPE html><html></html>")
    save(ckdir / "ok.pt")
    result = CliRunner().invoke(
        cli, ["env", "--select", CHECK, "--checkpoints", str(ckdir), "--json"])
    assert result.exit_code == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["schema_version"] == 1 and report["status"] == "fail"
    (finding,) = report["findings"]
    assert (finding["check"], finding["recipe"]) == (CHECK, "checkpoint-not-a-checkpoint")
    statuses = {pathlib.Path(r["path"]).name: r["status"] for r in finding["evidence"]["files"]}
    assert statuses == {"resnet18-f37072fd.pth": "fail", "ok.pt": "pass"}
    assert "1 ok, of 2 checkpoints" in finding["message"]


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.script/save are deprecated
def test_torchscript_archive_passes_without_being_unpickled(ckdir):
    scripted = torch.jit.script(torch.nn.Linear(2, 2))
    torch.jit.save(scripted, str(ckdir / "scripted.pt"))
    f = run(ckdir)
    assert f.status == "pass", f.message
    assert "TorchScript archive (torch.jit.load), not loaded" in f.message
    assert row(f, "scripted.pt")["format"] == "torchscript"


# --- the recipes explain the real error text -----------------------------------------------------

def checkpoint_recipes():
    """The checkpoint recipes (env.checkpoints and cvdoctor ckpt), parsed from their files
    (independent of the rest of the catalog, which the consistency test covers)."""
    from cvdoctor.catalog import parse_recipe

    root = pathlib.Path(__file__).resolve().parents[1] / "recipes"
    recipes = [parse_recipe(p.read_text(encoding="utf-8"), p.name)
               for p in sorted(root.glob("checkpoint-*.md"))]
    assert len(recipes) == 12
    return {r.id: r for r in recipes}


WEIGHTS_ONLY = ("_pickle.UnpicklingError: Weights only load failed. In PyTorch 2.6, we changed "
                "the default value of the `weights_only` argument in `torch.load` from `False` to "
                "`True`. Re-running `torch.load` with `weights_only` set to `False` will likely "
                "succeed, but it can result in arbitrary code execution.\n")


@pytest.mark.parametrize("text,recipe", [
    ("RuntimeError: PytorchStreamReader failed reading zip archive: failed finding central "
     "directory", "checkpoint-truncated"),
    ("RuntimeError: PytorchStreamReader failed reading zip archive: failed finding central "
     "directory. This is an internal miniz error. If you are seeing this error, there is a high "
     "likelihood that your checkpoint file is corrupted.", "checkpoint-truncated"),
    ("RuntimeError: unexpected EOF, expected 4733 more bytes. The file might be corrupted.",
     "checkpoint-truncated"),
    ("  File \".../torch/serialization.py\", line 1384, in _legacy_load\n"
     "    magic_number = pickle_module.load(f, **pickle_load_args)\nEOFError: Ran out of input",
     "checkpoint-truncated"),
    ("_pickle.UnpicklingError: invalid load key, '<'.", "checkpoint-not-a-checkpoint"),
    ("_pickle.UnpicklingError: invalid load key, 'v'.", "checkpoint-not-a-checkpoint"),
    (WEIGHTS_ONLY + "Please file an issue with the following so that we can make `weights_only="
     "True` compatible with your use case: WeightsUnpickler error: \n\nUnsupported operand 60\n",
     "checkpoint-not-a-checkpoint"),
    (WEIGHTS_ONLY + "WeightsUnpickler error: \n\nUnsupported operand 118\n",
     "checkpoint-not-a-checkpoint"),
    ("RuntimeError: PytorchStreamReader failed reading zip archive: file in archive is not in a "
     "subdirectory: data.pkl", "checkpoint-not-a-checkpoint"),
    ('RuntimeError: invalid hash value (expected "f37072fd", got '
     '"3c1e0b6a9d8e2f04b5a1c7d9e3f20b6a1c7d9e3f20b6a1c7d9e3f20b6a1c7d9e")',
     "checkpoint-hash-mismatch"),
    ("ERROR: SHA256 checksum mismatch for yolov8n.pt", "checkpoint-hash-mismatch"),
    (WEIGHTS_ONLY + "\nTrying to load unsupported GLOBAL posix.system whose module posix is "
     "blocked.\n", "checkpoint-unsafe-pickle"),
    (WEIGHTS_ONLY + "WeightsUnpickler error: Unsupported global: GLOBAL builtins.eval was not an "
     "allowed global by default.", "checkpoint-unsafe-pickle"),
    (WEIGHTS_ONLY + "\tWeightsUnpickler error: Unsupported global: GLOBAL "
     "numpy.core.multiarray._reconstruct was not an allowed global by default. Please use "
     "`torch.serialization.add_safe_globals([_reconstruct])` or the "
     "`torch.serialization.safe_globals([_reconstruct])` context manager to allowlist this global",
     "checkpoint-load-failed"),
    (WEIGHTS_ONLY + "WeightsUnpickler error: Unsupported global: GLOBAL argparse.Namespace was "
     "not an allowed global by default.", "checkpoint-load-failed"),
    ("RuntimeError: PytorchStreamReader failed reading zip archive: Attempted to read a PyTorch "
     "file with version 20, but the maximum supported version for reading is 13. Your PyTorch "
     "installation may be too old.", "checkpoint-load-failed"),
])
def test_recipe_patterns_match_real_messages(text, recipe):
    from cvdoctor.catalog import match_text

    matches = match_text(text, checkpoint_recipes())
    assert matches and matches[0].recipe == recipe, [(m.recipe, m.score) for m in matches]


@pytest.mark.parametrize("text", [
    "KeyError: 'lr'",
    "FileNotFoundError: [Errno 2] No such file or directory: 'data/train.csv'",
    "OSError: [Errno 28] No space left on device",
    "RuntimeError: Error(s) in loading state_dict for ResNet:\n\tMissing key(s) in state_dict: "
    "\"fc.weight\"",
])
def test_checkpoint_recipes_stay_out_of_unrelated_errors(text):
    from cvdoctor.catalog import match_text

    assert match_text(text, checkpoint_recipes()) == []


# --- what the structure reader and the zip reader add ------------------------------------------

def test_checkpoint_saved_on_cuda_warns_on_a_machine_without_cuda(ckdir, monkeypatch):
    import torch.serialization as ser

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: a plain torch.load would work")
    monkeypatch.setattr(ser, "location_tag", lambda storage: "cuda:0")
    save(ckdir / "gpu.pt")
    monkeypatch.undo()
    f = run(ckdir)
    assert (f.status, f.recipe) == ("warn", "checkpoint-load-failed")
    assert "was saved from cuda:0; this machine has no CUDA" in f.message
    assert f.fix.endswith("gpu.pt', map_location='cpu')")


def test_archive_torch_cannot_read_fails_load_failed(ckdir):
    data = bytearray(save(ckdir / "enc.pt").read_bytes())
    cd = data.find(b"PK\x01\x02")
    data[cd + 8] |= 1  # the directory says data.pkl is encrypted: miniz refuses it
    (ckdir / "enc.pt").write_bytes(bytes(data))
    f = run(ckdir)
    assert (f.status, f.recipe) == ("fail", "checkpoint-load-failed")
    assert "cannot be read by torch.load: data.pkl is flagged as encrypted" in f.message


def test_payload_in_a_duplicate_data_pkl_fails(ckdir, tmp_path):
    import zipfile

    marker = tmp_path / "PAYLOAD-RAN"
    good = save(tmp_path / "good.pt")
    with zipfile.ZipFile(good) as z:
        members = [(i.filename, z.read(i)) for i in z.infolist()]
    evil = pickle.dumps(OsSystemPayload(marker), protocol=2)
    name = members[0][0]
    with zipfile.ZipFile(ckdir / "dup.pt", "w") as z:
        z.writestr(zipfile.ZipInfo(name), evil)
        for n, d in members:
            z.writestr(zipfile.ZipInfo(n), d)
    f = run(ckdir, deep=True)
    assert (f.status, f.recipe) == ("fail", "checkpoint-unsafe-pickle")
    assert not marker.exists()
