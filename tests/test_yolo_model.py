"""`cvdoctor model` on YOLO set-ups: one real training step through ultralytics' own trainer on
a generated 64 px dataset (4 + 2 images), healthy and broken, contained (no socket opened, no
file of the user's written, no download, no runs/ folder).

Every probe run imports ultralytics and builds yolov8n in a subprocess (3-5 s here): the healthy
run is the quick loop's; the broken variants are marked slow.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

pytest.importorskip("ultralytics")
torch = pytest.importorskip("torch")

from datasets import snapshot  # noqa: E402
from yolo_helpers import (findings, make_checkpoints, make_dataset, run_model,  # noqa: E402
                          statuses)


@pytest.fixture(autouse=True)
def contained(tmp_path, monkeypatch):
    """Every test: its own working folder, an empty ultralytics settings folder (the user's
    settings must not decide), and sockets refused in the probe (creating one is recorded)."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "ultralytics-config"))
    monkeypatch.setenv("CVDOCTOR_YOLO_STRICT_SOCKETS", "1")
    return work


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A fine-tuned checkpoint trained on [dog, cat] and one whose first layer holds NaN."""
    root = tmp_path_factory.mktemp("ckpts")
    ft, nan = root / "ft_dogcat.pt", root / "nan_dogcat.pt"
    make_checkpoints([(ft, ["dog", "cat"], False), (nan, ["dog", "cat"], True)])
    return ft, nan


# --- healthy ---------------------------------------------------------------------------------

def run_api(target: str, **values):
    """The same run through the API, keeping the context: (report as JSON, the probe's facts)."""
    from cvdoctor.api import make_context, run_context
    from cvdoctor.commands.model import COMMAND

    ctx = make_context(COMMAND, target, values)
    report = run_context("model", ctx)
    return report.to_dict(), ctx.fact("yolo_probe")


@pytest.fixture(scope="module")
def healthy(tmp_path_factory):
    """yolov8n.yaml on 4 + 2 images, names not ASCII (ultralytics then asks for its Unicode
    font): (report, probe facts, dataset snapshot before, after, the working folder)."""
    root = tmp_path_factory.mktemp("healthy")
    work = root / "work"
    work.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        mp.setenv("YOLO_CONFIG_DIR", str(root / "ultralytics-config"))
        mp.setenv("CVDOCTOR_YOLO_STRICT_SOCKETS", "1")
        (root / "tmp").mkdir()
        mp.setenv("TMPDIR", str(root / "tmp"))  # the probe's copies must not outlive it
        data = make_dataset(root / "ds", names=("cat", "dög"))
        before = snapshot(root / "ds")
        report, probe = run_api("ultralytics:yolov8n.yaml", data=str(data), imgsz=64)
        after = snapshot(root / "ds")
    return report, probe, before, after, work


def test_healthy_one_step_contained(healthy):
    """Every check passes, in a probe that opened no socket (socket creation refused), wrote
    nothing of the user's and downloaded nothing (the font it asked for was refused)."""
    report, probe, before, after, work = healthy
    got = statuses(report)
    assert report["status"] == "pass", got
    for check in ("model.yolo_weights", "model.yolo_classes", "model.yolo_settings",
                  "model.yolo_train_step"):
        assert got[check] == [("pass", None)], (check, findings(report)[check])
    assert got["model.yolo_amp"] == [("skip", None)]
    step = findings(report)["model.yolo_train_step"][0]
    assert "one step through ultralytics' trainer on 4 images at 64x64" in step["message"]
    assert "gradients reach 48 of 48 head tensors" in step["message"]
    # the classification checks are not part of a YOLO run
    assert not [c for c in got if not c.startswith("model.yolo_")]
    guard = probe["containment"]
    assert guard["strict_sockets"] and guard["network"] == [] and guard["writes"] == []
    assert {d["via"] for d in guard["downloads"]} <= {"check_font"}
    assert any("Unicode" in d["what"] for d in guard["downloads"])
    # the dataset is byte-for-byte unchanged (no labels/*.cache), and no runs/ appeared
    assert after == before and not [k for k in after if k.endswith(".cache")]
    assert not list(work.iterdir())
    # its temporary copy of the images, caches and runs/ is gone (it used to stay: the write
    # guard refused shutil.rmtree's unlinks relative to a directory descriptor)
    assert not list((work.parent / "tmp").iterdir())


def _recorded_machine() -> dict:
    """A training box with a busy H100 (another job holds all but 60 MiB), /dev/shm of a
    default Docker container mostly in use, and a 2-CPU quota on a 16-core host."""
    import copy
    import json

    here = Path(__file__).parent
    gpu = copy.deepcopy(json.loads((here / "facts" / "h100_healthy.json").read_text())["gpu"])
    dev = gpu["devices"][0]
    dev.update(free_memory=60 * 2 ** 20, used_memory=dev["total_memory"] - 60 * 2 ** 20)
    shm = {"path": "/dev/shm", "exists": True, "mounted": True, "fstype": "tmpfs",
           "size_bytes": 64 * 2 ** 20, "free_bytes": 9 * 2 ** 20, "used_bytes": 55 * 2 ** 20}
    cpus = {"cpu_count": 16, "affinity": 16, "cgroup_quota": 2.0, "effective": 2,
            "suggested_num_workers": 2}
    memory = {"total": 64 * 2 ** 30, "available": 40 * 2 ** 30}
    return {"gpu": gpu, "shm": shm, "resources": {"cpus": cpus, "memory": memory}}


def test_settings_against_a_recorded_machine(healthy, tmp_path, contained):
    """The healthy run's real probe replayed on a recorded machine: 8 workers on 2 usable CPUs
    warn, their prefetched batches do not fit the shared memory left (fail), and batch 16 does not
    fit the GPU memory left (warn); the same probe passes on this machine (test above)."""
    from cvdoctor.api import make_context, run_context
    from cvdoctor.commands.model import COMMAND

    _, probe, _, _, _ = healthy
    recorded = {"yolo_probe": probe, **_recorded_machine()}
    ctx = make_context(COMMAND, "ultralytics:yolov8n.yaml", {"data": "data.yaml", "imgsz": 64},
                       recorded=recorded)
    report = run_context("model", ctx, select=["model.yolo_settings"]).to_dict()
    got = sorted(statuses(report)["model.yolo_settings"])
    assert got == [("fail", "shm-docker-ipc"), ("warn", "cuda-oom"),
                   ("warn", "resources-few-cpus")], findings(report)
    text = " | ".join(f["message"] for f in report["findings"])
    assert "8 loader workers hold about" in text and "9.0 MiB free" in text
    assert "on 2 usable CPUs" in text
    assert "batch 16 at 64 px needs about" in text


def test_containment_refuses_network_and_foreign_writes(tmp_path):
    """The guard on its own, in a subprocess: connections and name lookups raise and are
    recorded; writes and removals outside the probe's folder raise; inside they work."""
    import subprocess
    import sys
    import textwrap

    victim = tmp_path / "user_file.txt"
    victim.write_text("keep me")
    script = textwrap.dedent(f"""
        import json, os, socket, tempfile
        from pathlib import Path
        from cvdoctor.yolo.contain import Containment, NetworkBlocked
        tmp = Path(tempfile.mkdtemp())
        g = Containment(tmp, [tmp])
        g.install(None)
        res = {{}}
        for name, call in (("connect", lambda: socket.create_connection(("1.1.1.1", 443))),
                           ("lookup", lambda: socket.getaddrinfo("example.com", 443)),
                           ("write", lambda: open({str(victim)!r}, "w")),
                           ("remove", lambda: os.remove({str(victim)!r}))):
            try:
                call(); res[name] = "ran"
            except NetworkBlocked: res[name] = "network-blocked"
            except PermissionError: res[name] = "write-blocked"
        (tmp / "ok.txt").write_text("inside is fine")
        res["summary"] = g.summary()
        print(json.dumps(res))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    import json

    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["connect"] == res["lookup"] == "network-blocked"
    assert res["write"] == res["remove"] == "write-blocked"
    assert len(res["summary"]["network"]) == 2 and len(res["summary"]["writes"]) == 2
    assert victim.read_text() == "keep me"


# --- broken variants -------------------------------------------------------------------------

@pytest.mark.slow
def test_class_out_of_range_and_imgsz_not_a_stride_multiple(tmp_path):
    data = make_dataset(tmp_path / "ds", bad_class=5)
    before = snapshot(tmp_path / "ds")
    code, report = run_model("ultralytics:yolov8n.yaml", "--data", str(data), "--imgsz", "100")
    got = statuses(report)
    assert code == 1
    assert got["model.yolo_train_step"] == [("fail", "yolo-class-out-of-range")]
    step = findings(report)["model.yolo_train_step"][0]
    assert "drops 1 of the 4 sampled images" in step["message"]
    assert "im2.txt:3 class 5" in step["message"]
    assert got["model.yolo_settings"] == [("warn", "yolo-imgsz-stride")]
    assert "ultralytics trains at 128" in findings(report)["model.yolo_settings"][0]["message"]
    assert snapshot(tmp_path / "ds") == before  # ultralytics' verdicts, our copy of the files


def test_ddp_asked_for_on_a_yolo_set_up_says_it_does_not_apply(tmp_path):
    """--ddp on a YOLO target used to be dropped without a word."""
    data = make_dataset(tmp_path / "ds")
    code, report = run_model("ultralytics:yolov8n.yaml", "--data", str(data), "--ddp", "2",
                             "--select", "model.yolo_weights,model.ddp*")
    ddp = [f for f in report["findings"] if f["check"].startswith("model.ddp")]
    assert ddp and all(f["status"] == "skip" and "not checked on a yolo target" in f["message"]
                       for f in ddp), ddp
    code, report = run_model("ultralytics:yolov8n.yaml", "--data", str(data),
                             "--select", "model.yolo_weights")
    assert not [f for f in report["findings"] if f["check"].startswith("model.ddp")]


def test_a_script_that_trains_at_import_is_named_and_nothing_is_created(tmp_path):
    """No `if __name__ == "__main__":` around model.train(): cvdoctor's import starts training,
    whose first write (ultralytics makes runs/.../weights) is refused; no folder appears."""
    data = make_dataset(tmp_path / "ds")
    script = tmp_path / "train.py"
    script.write_text("from ultralytics import YOLO\nmodel = YOLO('yolov8n.yaml')\n"
                      f"model.train(data={str(data)!r}, imgsz=64, epochs=1, batch=2, "
                      f"workers=0, project={str(tmp_path / 'runs')!r})\n")
    code, report = run_model(str(script))
    got = statuses(report)
    assert got["model.yolo_weights"] == [("fail", "yolo-train-at-import")], \
        findings(report)["model.yolo_weights"]
    assert "at import" in findings(report)["model.yolo_weights"][0]["message"]
    assert not (tmp_path / "runs").exists()  # not even an empty folder


def test_a_training_split_without_images_fails_instead_of_passing(tmp_path):
    """train: pointing at a missing folder: both YOLO data checks used to skip, pointing at each
    other, and the run said 'No problems found'; ultralytics stops with 'No images found'."""
    data = make_dataset(tmp_path / "ds")
    data.write_text(data.read_text().replace("train: images/train", "train: images/nothere"))
    assert "images/nothere" in data.read_text()
    code, report = run_model("ultralytics:yolov8n.yaml", "--data", str(data))
    got = statuses(report)
    assert code == 1 and got["model.yolo_classes"] == [("fail", "yolo-dataset-path")], got
    assert "lists no images" in findings(report)["model.yolo_classes"][0]["message"]


@pytest.mark.slow
def test_file_with_own_yaml_frozen_head_frozen_params_and_empty_labels(tmp_path, contained):
    import ultralytics

    stock = Path(ultralytics.__file__).parent / "cfg" / "models" / "v8" / "yolov8.yaml"
    (contained / "my-yolov8n.yaml").write_text(stock.read_text().replace("nc: 80", "nc: 3"))
    make_dataset(contained / "ds", empty_labels=True)
    (contained / "train.py").write_text(
        "from ultralytics import YOLO\n\n"
        "model = YOLO('my-yolov8n.yaml')\n"
        "for p in model.model.model[0].parameters():\n"
        "    p.requires_grad = False\n"
        "data = 'ds/data.yaml'\n"
        "freeze = [22]\n\n"
        "if __name__ == '__main__':\n"
        "    model.train(data=data, imgsz=64, epochs=3, batch=8)\n")
    code, report = run_model("train.py")
    got = statuses(report)
    assert code == 1
    assert got["model.yolo_classes"] == [("warn", "yolo-class-count")]
    assert "my-yolov8n.yaml declares nc: 3, the dataset has 2 classes" in \
        findings(report)["model.yolo_classes"][0]["message"]
    assert sorted(got["model.yolo_train_step"]) == [("fail", "yolo-head-frozen"),
                                                    ("warn", "yolo-freeze-ignored"),
                                                    ("warn", "yolo-labels-not-found")]
    assert "none of the 4 sampled training images has a box" in " ".join(
        f["message"] for f in findings(report)["model.yolo_train_step"])
    settings = findings(report)["model.yolo_settings"][0]
    assert settings["evidence"]["batch"] == 8  # from the file's train(...) call
    assert not (contained / "runs").exists()


@pytest.mark.slow
def test_fine_tune_reordered_names_remapped_by_ultralytics(tmp_path, checkpoints):
    """Checkpoint [dog, cat], dataset [cat, dog]: ultralytics 8.4 remaps the head by name."""
    ft, _ = checkpoints
    data = make_dataset(tmp_path / "ds", names=("cat", "dog"))
    code, report = run_model(str(ft), "--data", str(data), "--imgsz", "64")
    got = statuses(report)
    assert code == 0, got
    assert got["model.yolo_classes"] == [("pass", None)]
    assert "remapped 2 head rows by class name" in \
        findings(report)["model.yolo_classes"][0]["message"]
    assert got["model.yolo_weights"] == [("pass", None)]
    assert "2 classes ('dog', 'cat')" in findings(report)["model.yolo_weights"][0]["message"]


@pytest.mark.slow
def test_fine_tune_reordered_names_swapped_and_nan_weights(tmp_path, contained, checkpoints):
    """Without the remap (cls_remap=False, as older releases do) the rows are copied by position:
    the labels swap. The NaN checkpoint makes the step's loss NaN."""
    _, nan = checkpoints
    make_dataset(contained / "ds", names=("cat", "dog"))
    (contained / "finetune.py").write_text(
        "from ultralytics import YOLO\n"
        f"model = YOLO({str(nan)!r})\n"
        "data = 'ds/data.yaml'\nimgsz = 64\ncls_remap = False\n")
    code, report = run_model("finetune.py")
    got = statuses(report)
    assert code == 1
    assert got["model.yolo_classes"] == [("fail", "yolo-class-order")]
    msg = findings(report)["model.yolo_classes"][0]["message"]
    assert "class 0 'cat' starts from the checkpoint's 'dog'" in msg
    assert got["model.yolo_train_step"] == [("fail", "nan-loss")]


@pytest.mark.slow
@pytest.mark.parametrize("body, recipe, words", [
    ("train: images/train\nval: images/val\nnc: 3\nnames: [cat, dog]\n", "yolo-data-yaml",
     "'names' length 2 and 'nc: 3' must match"),
    ("train: images/train\nval: images/valid\nnames: [cat, dog]\n", "yolo-dataset-path",
     "images not found"),
])
def test_dataset_ultralytics_refuses(tmp_path, body, recipe, words):
    make_dataset(tmp_path / "ds")
    data = tmp_path / "ds" / "data.yaml"
    data.write_text(f"path: {tmp_path / 'ds'}\n" + body)
    code, report = run_model("ultralytics:yolov8n.yaml", "--data", str(data), "--imgsz", "64")
    got = statuses(report)
    assert got["model.yolo_classes"] == [("fail", recipe)]
    assert words in findings(report)["model.yolo_classes"][0]["message"]
    assert got["model.yolo_train_step"][0][0] == "skip"


@pytest.mark.slow
def test_trainer_refusal_is_reported_with_its_message(tmp_path, contained):
    """An error no recipe knows (here ultralytics' own imgsz validation) is a fail with the
    trainer's message and the stage it stopped at."""
    make_dataset(contained / "ds")
    (contained / "train.py").write_text("from ultralytics import YOLO\n"
                                        "model = YOLO('yolov8n.yaml')\n"
                                        "data = 'ds/data.yaml'\nimgsz = '64px'\n")
    code, report = run_model("train.py")
    got = statuses(report)
    assert got["model.yolo_train_step"] == [("fail", "forward-error")]
    f = findings(report)["model.yolo_train_step"][0]
    assert "'imgsz=64px' is not a valid image size" in f["message"]
    assert "imgsz '64px' is not a size" in findings(report)["model.yolo_settings"][0]["message"]


def test_amp_on_a_gpu_ultralytics_runs_in_fp32(healthy):
    """A recorded GTX 1660 SUPER (ultralytics switches AMP off on the 16xx series by name)."""
    import copy
    import json

    from cvdoctor.api import make_context, run_context
    from cvdoctor.commands.model import COMMAND

    _, probe, _, _, _ = healthy
    here = Path(__file__).parent
    gpu = copy.deepcopy(json.loads((here / "facts" / "rtx5090_old_wheel.json").read_text())["gpu"])
    gpu["devices"][0].update(name="NVIDIA GeForce GTX 1660 SUPER", total_memory=6 * 2 ** 30,
                             free_memory=5 * 2 ** 30, used_memory=2 ** 30, capability=[7, 5])
    ctx = make_context(COMMAND, "ultralytics:yolov8n.yaml", {"data": "data.yaml"},
                       recorded={"yolo_probe": probe, "gpu": gpu})
    report = run_context("model", ctx, select=["model.yolo_amp"]).to_dict()
    f = report["findings"][0]
    assert (f["status"], f["recipe"]) == ("warn", "ultralytics-amp-check"), f
    assert "GTX 1660 SUPER" in f["message"]


# --- weights ---------------------------------------------------------------------------------

def test_missing_official_weights_is_a_finding_not_a_download(contained):
    code, report = run_model("ultralytics:yolov8n.pt", "--data", "data.yaml")
    got = statuses(report)
    assert code == 1
    assert got["model.yolo_weights"] == [("fail", "yolo-weights-missing")]
    f = findings(report)["model.yolo_weights"][0]
    assert str(contained / "yolov8n.pt") in f["message"]
    assert "releases/download" in f["fix"] and "ultralytics:yolov8n.yaml" in f["fix"]
    assert all(s[0][0] == "skip" for c, s in got.items() if c != "model.yolo_weights")
    assert not list(contained.iterdir())  # nothing downloaded, nothing written


@pytest.mark.slow
def test_file_naming_missing_weights_is_blocked_in_the_probe(tmp_path, contained):
    make_dataset(contained / "ds")
    (contained / "train.py").write_text(
        "from ultralytics import YOLO\nmodel = YOLO('yolov8s.pt')\ndata = 'ds/data.yaml'\n")
    code, report = run_model("train.py")
    assert statuses(report)["model.yolo_weights"] == [("fail", "yolo-weights-missing")]
    assert "yolov8s.pt is not on this machine" in findings(report)["model.yolo_weights"][0][
        "message"]
    assert sorted(p.name for p in contained.iterdir()) == ["ds", "train.py"]


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch MARKER_should_never_exist",))


def test_unsafe_checkpoint_is_never_loaded(contained):
    with open("evil.pt", "wb") as fh:
        pickle.dump({"model": _Payload()}, fh)
    code, report = run_model("evil.pt", "--data", "data.yaml")
    assert statuses(report)["model.yolo_weights"] == [("fail", "checkpoint-unsafe-pickle")]
    assert "os.system" in findings(report)["model.yolo_weights"][0]["message"] or \
        "posix.system" in findings(report)["model.yolo_weights"][0]["message"]
    assert not Path("MARKER_should_never_exist").exists()


def test_plain_state_dict_is_not_an_ultralytics_checkpoint(contained):
    torch.save(torch.nn.Linear(2, 2).state_dict(), "weights.pt")
    code, report = run_model("weights.pt", "--data", "data.yaml")
    assert statuses(report)["model.yolo_weights"] == [("fail", "checkpoint-load-failed")]
    assert "holds no ultralytics model" in findings(report)["model.yolo_weights"][0]["message"]


def test_sam_weights_given_as_yolo_weights(contained):
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from sam_helpers import shaped_checkpoint

    shaped_checkpoint(contained / "sam_b.pt", "vit_b")
    code, report = run_model("sam_b.pt", "--data", "data.yaml")
    f = findings(report)["model.yolo_weights"][0]
    assert (f["status"], f["recipe"]) == ("fail", "checkpoint-load-failed")
    assert "segment_anything:vit_b --checkpoint sam_b.pt" in f["fix"]


def test_pytest_helper_fails_with_the_report(contained):
    from pytest_cvdoctor import assert_yolo_ready

    with open("evil.pt", "wb") as fh:
        pickle.dump({"model": _Payload()}, fh)
    with pytest.raises(AssertionError, match="model.yolo_weights"):
        assert_yolo_ready("evil.pt", "data.yaml")


@pytest.mark.parametrize("target, words", [
    ("ultralytics:yolov99z.yaml", "no such model yaml"),
    ("ultralytics:", "give a model yaml or weights"),
    ("ultralytics:yolov8n", "name a model yaml"),
    ("nothere.pt", "no such file"),
])
def test_bad_targets_one_line_exit_2(contained, target, words):
    from click.testing import CliRunner

    from cvdoctor.cli import cli

    result = CliRunner().invoke(cli, ["model", target])
    assert result.exit_code == 2, result.output
    assert words in result.stderr and "Traceback" not in result.output + result.stderr


@pytest.mark.slow
def test_yolo_examples(contained):
    """examples/yolo_make_data.py's toy set: yolo_train.py passes, yolo_broken_freeze.py fails
    as its docstring says."""
    import runpy

    examples = Path(__file__).resolve().parent.parent / "examples"
    runpy.run_path(str(examples / "yolo_make_data.py"), run_name="cvdoctor_example").get(
        "make")(contained / "yolo_shapes")
    code, report = run_model(str(examples / "yolo_train.py"))
    assert code == 0, statuses(report)
    code, report = run_model(str(examples / "yolo_broken_freeze.py"), "--data",
                             "yolo_shapes/data.yaml")
    assert sorted(statuses(report)["model.yolo_train_step"]) == [
        ("fail", "yolo-head-frozen"), ("warn", "yolo-freeze-ignored")]


@pytest.mark.slow
def test_sigterm_stops_the_probe_too(tmp_path):
    """The probe runs in its own session; SIGTERM to cvdoctor used to leave it running under
    PID 1. Now cvdoctor unwinds as for Ctrl-C, stops it, and exits 128 + 15."""
    import signal
    import subprocess
    import sys
    import time

    data = make_dataset(tmp_path / "ds")
    target = tmp_path / "sleeper_yolo.py"
    target.write_text("import time\nfrom ultralytics import YOLO\n"
                      "model = YOLO('yolov8n.yaml')\n"
                      f"data = {str(data)!r}\ntime.sleep(300)\n")
    cvdoctor = Path(sys.executable).with_name("cvdoctor")  # the console script, as users run it
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    proc = subprocess.Popen([str(cvdoctor), "model", str(target)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "TMPDIR": str(scratch)})
    deadline = time.monotonic() + 60
    probe = None
    while time.monotonic() < deadline and probe is None:  # wait until its probe is running
        time.sleep(0.5)
        out = subprocess.run(["pgrep", "-P", str(proc.pid), "-f", "cvdoctor.probes.yolo_probe"],
                             capture_output=True, text=True).stdout.split()
        probe = int(out[0]) if out else None
    assert probe is not None, "the probe never started"
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    time.sleep(1)
    with pytest.raises(ProcessLookupError):  # the probe was not left running
        os.kill(probe, 0)
    assert not list(scratch.iterdir())  # nor its scratch copy of the images
