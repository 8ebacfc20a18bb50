"""Loading `cvdoctor model` targets, and the command itself (CliRunner, exit codes, JSON)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from cvdoctor.cli import cli
from cvdoctor.model.loader import LoadOptions, TargetError, load_target, parse_input_shape

TARGETS = Path(__file__).parent / "model_targets"
EXAMPLES = Path(__file__).parent.parent / "examples"
BASIC = "model.data,model.dtype,model.forward,model.output,model.initial_loss"


def target(name: str) -> str:
    return str(TARGETS / name)


def load(name: str, **options):
    return load_target(target(name), LoadOptions(**options))


# --- files -----------------------------------------------------------------------------------
def test_healthy_file_gives_factory_model_batch_loss_and_optimizer_factory():
    spec = load("healthy.py")  # imports its sibling _shared.py
    assert type(spec.model).__name__ == "TinyNet"
    assert spec.batch_source == "get_batch" and tuple(spec.inputs.shape) == (8, 3, 16, 16)
    assert isinstance(spec.loss_fn, torch.nn.CrossEntropyLoss) and spec.loss_source == "given"
    assert spec.optimizer is None and spec.optimizer_factory is not None
    opt = spec.optimizer_factory(spec.model.parameters())
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.9
    assert spec.num_classes == 4
    assert "build_model()" in spec.name


def test_loader_batch_module_instance_and_criterion():
    spec = load("loader_batch.py")
    assert spec.batch_source == "loader" and tuple(spec.inputs.shape) == (8, 3, 16, 16)
    assert spec.loss_fn.label_smoothing == 0.1
    assert spec.loss_source == "given" and spec.optimizer is None and spec.optimizer_factory is None


def test_dataloader_factory_with_dict_batches():
    spec = load("dataloader_factory.py")
    assert spec.batch_source == "loader"
    assert tuple(spec.inputs.shape) == (8, 3, 16, 16) and spec.targets.dtype == torch.int64


def test_training_step_is_used_and_default_loss_is_cross_entropy():
    spec = load("training_step_target.py")
    assert spec.training_step is not None and spec.loss_source == "training_step"
    assert load("optimizer_instance.py").loss_source == "default"


def test_optimizer_instance_keeps_class_hyperparameters_and_groups():
    spec = load("optimizer_instance.py")
    assert spec.optimizer is not None and spec.optimizer_factory is None
    assert [g["lr"] for g in spec.optimizer.param_groups] == [0.01, 0.1]
    held = {id(p) for g in spec.optimizer.param_groups for p in g["params"]}
    assert all(id(p) in held for p in spec.model.parameters())  # bound to the model we check


def test_optimizer_instance_picks_the_model_it_is_bound_to_over_a_fresh_factory_model():
    spec = load("factory_and_optimizer_instance.py")
    held = {id(p) for g in spec.optimizer.param_groups for p in g["params"]}
    assert all(id(p) in held for p in spec.model.parameters())


def test_synthesized_batch_from_hints_and_num_classes_reaches_the_factory():
    spec = load("synthesized.py")
    assert spec.batch_source == "synthesized" and tuple(spec.inputs.shape) == (8, 3, 16, 16)
    assert spec.targets.max() < 4 and spec.model.fc.out_features == 4
    spec = load("synthesized.py", num_classes=6, batch_size=12, input_shape=(3, 24, 24))
    assert spec.model.fc.out_features == 6 and spec.num_classes == 6
    assert tuple(spec.inputs.shape) == (12, 3, 24, 24)
    assert sorted(spec.targets.unique().tolist()) == list(range(6))  # balanced labels


def test_batch_size_keeps_the_first_samples_of_a_given_batch():
    spec = load("healthy.py", batch_size=3)
    assert spec.inputs.shape[0] == 3 and spec.targets.shape[0] == 3


def test_model_option_picks_another_attribute():
    spec = load("module_instance_other_name.py", model_name="net")
    assert type(spec.model).__name__ == "TinyNet"


def test_package_module_attr_form(monkeypatch):
    monkeypatch.chdir(TARGETS)
    spec = load_target("pkg_target.models:big")
    assert isinstance(spec.model, torch.nn.Sequential) and spec.batch_source == "batch"
    spec = load_target("pkg_target.models:small")
    assert type(spec.model).__name__ == "TinyNet"


# --- what cannot be loaded -------------------------------------------------------------------
@pytest.mark.parametrize("name, options, expected", [
    ("missing_file.py", {}, ["missing_file.py: no such file"]),
    ("syntax_error.py", {}, ["syntax error", "syntax_error.py, line 4", "build_model(:"]),
    ("no_model.py", {}, ["nothing that looks like a model", "build_model()", "get_model()",
                         "create_model()", "model"]),
    ("module_instance_other_name.py", {}, ["--model NAME", "net"]),
    ("module_instance_other_name.py", {"model_name": "nett"}, ["no attribute 'nett'",
                                                               "did you mean net"]),
    ("factory_raises.py", {}, ["build_model() raised ValueError", "unsupported depth 20",
                               "make_backbone", "factory_raises.py"]),
    ("factory_returns_dict.py", {}, ["build_model() returned dict, not a torch nn.Module"]),
    ("import_raises.py", {}, ["importing", "FileNotFoundError", "import_raises.py", "labels.csv"]),
    ("no_batch.py", {}, ["no batch", "get_batch()", "train_loader", "get_dataloader()",
                         "--input-shape"]),
    ("empty_loader.py", {}, ["train_loader is empty"]),
])
def test_target_errors_say_what_is_wrong(name, options, expected):
    with pytest.raises(TargetError) as info:
        load(name, **options)
    for text in expected:
        assert text in str(info.value)


def test_factory_error_shows_the_users_frames_not_ours():
    with pytest.raises(TargetError) as info:
        load("factory_raises.py")
    assert "loader.py" not in str(info.value)
    assert 'raise ValueError(f"unsupported depth {depth}")' in str(info.value)


@pytest.mark.parametrize("text, shape", [("3,32,32", (3, 32, 32)), ("1x28x28", (1, 28, 28)),
                                         (" 3, 64 ,64", (3, 64, 64))])
def test_parse_input_shape(text, shape):
    assert parse_input_shape(text) == shape


@pytest.mark.parametrize("text", ["3,32", "a,b,c", "3,0,32", "3,32,32,1"])
def test_parse_input_shape_rejects(text):
    with pytest.raises(TargetError, match="C,H,W"):
        parse_input_shape(text)


# --- zoo specs -------------------------------------------------------------------------------
def test_torchvision_zoo_uses_its_own_input_size_and_the_head_from_num_classes():
    spec = load_target("torchvision:resnet18", LoadOptions(num_classes=10))
    assert spec.input_shape == (3, 224, 224) and tuple(spec.inputs.shape[1:]) == (3, 224, 224)
    assert spec.model.fc.out_features == 10 and spec.num_classes == 10
    assert spec.batch_source == "synthesized" and int(spec.targets.max()) < 10


def test_timm_zoo_default_size_and_requested_size():
    spec = load_target("timm:vit_tiny_patch16_224", LoadOptions(num_classes=5))
    assert spec.input_shape == (3, 224, 224) and spec.model.num_classes == 5
    spec = load_target("timm:vit_tiny_patch16_224",
                       LoadOptions(num_classes=5, input_shape=(3, 32, 32), batch_size=2))
    assert tuple(spec.inputs.shape) == (2, 3, 32, 32)
    assert spec.model(spec.inputs).shape == (2, 5)  # built for 32 px: its patch grid fits


@pytest.mark.parametrize("spec, expected", [
    ("torchvision:resnet19", ["no classification model 'resnet19'", "resnet18"]),
    ("torchvision:fasterrcnn_resnet50_fpn", ["only torchvision classification models"]),
    ("timm:resnet_18", ["timm has no model 'resnet_18'"]),
    ("timm:", ["give a model name"]),
    ("not a target", ["not a file"]),
])
def test_zoo_errors(spec, expected):
    with pytest.raises(TargetError) as info:
        load_target(spec)
    for text in expected:
        assert text in str(info.value)


# --- the command -----------------------------------------------------------------------------
def invoke(*args):
    return CliRunner().invoke(cli, ["model", *args])


def test_cli_healthy_json_exit_0_and_stdout_is_only_the_report():
    result = invoke(target("chatty.py"), "--select", BASIC, "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)  # the prints of the user's code went to stderr
    assert report["schema_version"] == 1 and report["command"] == "model"
    assert report["target"] == target("chatty.py")
    assert {f["check"] for f in report["findings"]} == set(BASIC.split(","))
    assert all(f["status"] in ("pass", "skip") for f in report["findings"])
    assert "loading my model" in result.stderr


def test_cli_broken_labels_exit_1_with_the_real_error():
    result = invoke(target("broken_labels.py"), "--select", BASIC, "--json")
    assert result.exit_code == 1
    findings = {f["check"]: f for f in json.loads(result.stdout)["findings"]}
    assert findings["model.forward"]["status"] == "fail"
    assert "Target 4 is out of bounds" in findings["model.forward"]["message"]
    assert findings["model.data"]["recipe"] == "target-out-of-bounds"


@pytest.mark.parametrize("name, expected", [
    ("syntax_error.py", "syntax_error.py, line 4"),
    ("no_model.py", "nothing that looks like a model"),
    ("factory_raises.py", "unsupported depth 20"),
    ("missing_file.py", "no such file"),
])
def test_cli_unloadable_target_exits_2_with_message_and_no_traceback_spew(name, expected):
    result = invoke(target(name))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert expected in result.stderr and result.stderr.startswith("cvdoctor: cannot load")
    assert "Traceback (most recent call last)" not in result.stderr
    shown = result.stderr.split("cannot load ", 1)[1].split(": ", 1)[0]
    assert f"cannot load {shown}: {shown}:" not in result.stderr  # named once, no stutter


def test_cli_usage_errors_exit_2():
    assert invoke(target("healthy.py"), "--input-shape", "3,32").exit_code == 2
    assert invoke(target("healthy.py"), "--select", "model.nope").exit_code == 2
    if not torch.cuda.is_available():
        result = invoke(target("healthy.py"), "--device", "cuda")
        assert result.exit_code == 2 and "no CUDA device" in result.stderr


def test_cli_options_reach_the_loader_and_the_text_report():
    result = invoke(target("synthesized.py"), "--num-classes", "3", "--input-shape", "3,8,8",
                    "--batch-size", "6", "--select", "model.forward", "-v")
    assert result.exit_code == 0, result.stderr
    assert "outputs (6, 3)" in result.stdout
    assert "cvdoctor: loading" in result.stderr  # -v: progress on stderr


def test_cli_zoo_spec_runs():
    result = invoke("torchvision:resnet18", "--num-classes", "10", "--input-shape", "3,32,32",
                    "--batch-size", "4", "--select", "model.forward,model.output", "--json")
    assert result.exit_code == 0, result.stderr
    findings = {f["check"]: f for f in json.loads(result.stdout)["findings"]}
    assert findings["model.output"]["evidence"]["output_shape"] == [4, 10]


def test_cli_strict_turns_a_warning_into_exit_1(tmp_path):
    single = tmp_path / "single_class.py"
    single.write_text(
        "import torch\nfrom torch import nn\n"
        "model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))\n"
        "batch = (torch.randn(8, 3, 2, 2), torch.zeros(8, dtype=torch.long))\n")
    assert invoke(str(single), "--select", "model.data").exit_code == 0
    assert invoke(str(single), "--select", "model.data", "--strict").exit_code == 1


def test_explain_stays_torch_free_with_the_model_command_registered():
    import subprocess
    import sys

    code = ("import sys; import click; from cvdoctor.cli import cli; "
            "ctx = click.Context(cli); assert 'model' in cli.list_commands(ctx); "
            "assert cli.get_command(ctx, 'model').name == 'model'; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("example, code", [
    ("cifar10_cnn.py", 0), ("broken_off_by_one_labels.py", 1), ("broken_softmax_twice.py", 1),
    ("broken_unnormalized.py", 1),
])
def test_examples_basic_checks(example, code):
    result = invoke(str(EXAMPLES / example), "--select", BASIC, "--json")
    assert result.exit_code == code, result.stdout + result.stderr


@pytest.mark.parametrize("make, expected", [
    (lambda p: os.mkfifo(p / "model.py") or p / "model.py", "is a FIFO (named pipe), not a Python"),
    (lambda p: Path("/dev/zero"), "is a character device, not a Python file"),
])
def test_cli_never_opens_a_fifo_or_a_device(tmp_path, make, expected):
    """Opening a FIFO blocks until a writer comes; reading /dev/zero never ends."""
    result = invoke(str(make(tmp_path)))
    assert result.exit_code == 2, result.stderr
    assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_cli_a_syntax_error_is_one_line_with_the_offending_source():
    result = invoke(target("syntax_error.py"))
    assert len(result.stderr.strip().splitlines()) == 1 and "`" in result.stderr


EXITING_FORWARD = '''
import sys
from torch import nn


class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, 2)

    def forward(self, x):
        sys.exit(0)


model = M()
input_shape = (3, 8, 8)
num_classes = 2
'''


def test_sys_exit_in_forward_is_a_failed_forward_not_a_silent_pass(tmp_path):
    """sys.exit(0) in the user's forward used to end cvdoctor with exit 0 and no report."""
    (tmp_path / "m.py").write_text(EXITING_FORWARD)
    result = invoke(str(tmp_path / "m.py"), "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    forward = next(f for f in report["findings"] if f["check"] == "model.forward")
    assert forward["status"] == "fail" and "SystemExit" in forward["message"]
    assert not [f for f in report["findings"] if f["status"] == "error"], report


def test_sys_exit_in_build_model_is_a_target_error(tmp_path):
    (tmp_path / "m.py").write_text("import sys\n\ndef build_model():\n    sys.exit(3)\n")
    result = invoke(str(tmp_path / "m.py"))
    assert result.exit_code == 2 and "build_model() called sys.exit(3)" in result.stderr


HANGING_FORWARD = EXITING_FORWARD.replace("sys.exit(0)", "while True:\n            pass")


def test_a_forward_that_never_returns_is_stopped_and_reported(tmp_path, monkeypatch):
    """No hang: each check (and loading) runs the user's code under a time limit in the CLI."""
    (tmp_path / "m.py").write_text(HANGING_FORWARD)
    monkeypatch.setenv("CVDOCTOR_CHECK_TIMEOUT", "2")
    result = invoke(str(tmp_path / "m.py"), "--json")
    report = json.loads(result.stdout)
    stopped = [f for f in report["findings"] if f["status"] == "error"]
    assert len(stopped) == 1 and "did not finish within 2 s" in stopped[0]["message"], report
    assert stopped[0]["fix"], stopped[0]
    rest = [f for f in report["findings"] if f is not stopped[0]]
    assert rest and all(f["status"] == "skip" for f in rest)
    assert result.exit_code == 1


def test_a_model_file_that_loops_at_import_is_a_target_error(tmp_path, monkeypatch):
    (tmp_path / "m.py").write_text("while True:\n    pass\n")
    monkeypatch.setenv("CVDOCTOR_CHECK_TIMEOUT", "1")
    result = invoke(str(tmp_path / "m.py"))
    assert result.exit_code == 2 and "did not finish within 1 s" in result.stderr
    assert "watchdog.py" not in result.stderr  # the user's frames, not ours


def test_a_model_file_that_crashes_the_interpreter_says_where(tmp_path):
    """A segfault in the user's code cannot be caught, but it must not be silent: Python's fault
    handler names the file and line (exit 139 = 128 + SIGSEGV, as the signal gives)."""
    import subprocess
    import sys

    (tmp_path / "segv.py").write_text("import ctypes\nctypes.string_at(0)\n")
    cvdoctor = Path(sys.executable).with_name("cvdoctor")
    done = subprocess.run([str(cvdoctor), "model", str(tmp_path / "segv.py")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode in (-11, 139), (done.returncode, done.stderr[-500:])
    assert "Segmentation fault" in done.stderr and 'segv.py", line 2' in done.stderr
