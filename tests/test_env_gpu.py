"""env.torch, env.cuda, env.gpu_memory: recorded machines for what this one lacks, real faults for
what it can make (a torch that fails to import, a broken torchvision, a fake nvidia-smi)."""
from __future__ import annotations

import copy
import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from cvdoctor import check_env
from cvdoctor.cli import cli
from cvdoctor.facts import EnvContext, EnvOptions
from cvdoctor.facts import gpu as gpu_facts_mod
from cvdoctor.facts import gpu_probe as gpu_probe_mod
from cvdoctor.facts import torch_info

FACTS = Path(__file__).parent / "facts"
GPU_CHECKS = ["env.torch", "env.cuda", "env.gpu_memory"]
GiB = 1024 ** 3


def load(name: str) -> dict:
    return json.loads((FACTS / f"{name}.json").read_text())


def run(recorded: dict, check: str, *, require_gpu: bool = False):
    report = check_env(select=[check], recorded=recorded, require_gpu=require_gpu)
    return report.get_all(check)


def only(recorded: dict, check: str, **kw):
    findings = run(recorded, check, **kw)
    assert len(findings) == 1, [f.to_dict() for f in findings]
    return findings[0]


# --- recorded machines through the CLI (`--facts`), as a table -----------------------------------

MACHINES = [
    # file, check, status, recipe
    ("dgx_spark_gb10", "env.cuda", "pass", None),
    ("dgx_spark_gb10", "env.torch", "pass", None),
    ("dgx_spark_gb10", "env.gpu_memory", "pass", None),
    ("rtx5090_old_wheel", "env.cuda", "warn", "gpu-arch-ptx-jit"),
    ("v100_new_wheel", "env.cuda", "fail", "gpu-arch-unsupported"),
    ("cuda13_wheel_r535_driver", "env.cuda", "fail", "cuda-driver-too-old"),
    ("aarch64_cpu_torch", "env.torch", "fail", "aarch64-cpu-torch"),
    ("aarch64_cpu_torch", "env.cuda", "fail", "cpu-torch-on-gpu-machine"),
    ("h100_healthy", "env.cuda", "pass", None),
    ("h100_healthy", "env.torch", "pass", None),
    ("h100_healthy", "env.gpu_memory", "pass", None),
    ("jetson_cpu_torch", "env.torch", "fail", "aarch64-cpu-torch"),
    ("jetson_cpu_torch", "env.cuda", "fail", "cpu-torch-on-gpu-machine"),
    ("jetson_cpu_torch", "env.gpu_memory", "skip", None),
    ("cpu_only_laptop", "env.cuda", "warn", "no-gpu"),
    ("cpu_only_laptop", "env.torch", "pass", None),
    ("cpu_only_laptop", "env.gpu_memory", "skip", None),
]


@pytest.mark.parametrize("machine, check, status, recipe", MACHINES)
def test_recorded_machine_through_cli(machine, check, status, recipe):
    result = CliRunner().invoke(cli, ["env", "--select", check, "--json", "--facts",
                                      str(FACTS / f"{machine}.json")])
    assert result.exit_code == (1 if status == "fail" else 0), result.output
    report = json.loads(result.stdout)
    findings = [f for f in report["findings"] if f["check"] == check]
    assert [(f["status"], f["recipe"]) for f in findings] == [(status, recipe)]


def test_recorded_facts_are_faithful_to_real_machines():
    caps = {"dgx_spark_gb10": [12, 1], "rtx5090_old_wheel": [12, 0], "v100_new_wheel": [7, 0],
            "h100_healthy": [9, 0], "cuda13_wheel_r535_driver": [8, 0]}
    for machine, cap in caps.items():
        facts = load(machine)
        assert [d["capability"] for d in facts["gpu"]["devices"]] == [cap], machine
    gb10 = load("dgx_spark_gb10")
    assert gb10["platform"]["machine"] == "aarch64"
    assert gb10["torch"]["cuda"].startswith("13.") and "nv25.11" in gb10["torch"]["version"]
    assert {"sm_120", "sm_121"} & set(gb10["torch"]["arch_list"])
    assert gb10["gpu"]["driver_version"].startswith("580.")


def test_gb10_passes_although_torch_warns_it_is_unsupported():
    f = only(load("dgx_spark_gb10"), "env.cuda")
    assert f.status == "pass"
    assert "sm_120 cubin" in f.message and "12.1" in f.message
    assert "cuDNN 9.15.0" in f.message and "bf16 supported" in f.message


def test_rtx5090_ptx_warning_names_the_ptx_and_a_cu128_fix():
    f = only(load("rtx5090_old_wheel"), "env.cuda")
    assert "compute_90" in f.message and "12.0" in f.message
    assert "whl/cu128" in f.fix


def test_v100_failure_folds_the_probe_error_into_the_arch_finding():
    f = only(load("v100_new_wheel"), "env.cuda")
    assert "no kernel image is available" in f.message
    assert "whl/cu126" in f.fix


def test_old_driver_failure_names_driver_and_minimum():
    f = only(load("cuda13_wheel_r535_driver"), "env.cuda")
    assert "535.183.01" in f.message and "580.65.06" in f.message
    assert "R580" in f.fix


def test_aarch64_cpu_torch_fix_is_the_ngc_container():
    facts = load("aarch64_cpu_torch")
    assert "nvcr.io/nvidia/pytorch" in only(facts, "env.torch").fix
    assert "nvcr.io/nvidia/pytorch" in only(facts, "env.cuda").fix


def test_jetson_fix_is_the_jetpack_wheel():
    facts = load("jetson_cpu_torch")
    assert "JetPack" in only(facts, "env.torch").fix
    assert "JetPack" in only(facts, "env.cuda").fix


def test_aarch64_cpu_torch_without_any_nvidia_gpu_is_fine():
    facts = load("cpu_only_laptop")
    facts["platform"]["machine"] = "aarch64"  # e.g. a Graviton or Ampere server
    f = only(facts, "env.torch")
    assert f.status == "pass" and "without an NVIDIA GPU" in f.message


def test_cpu_only_laptop_fails_under_require_gpu():
    f = only(load("cpu_only_laptop"), "env.cuda", require_gpu=True)
    assert (f.status, f.recipe) == ("fail", "no-gpu")


# --- variants of the healthy H100 for the remaining findings -------------------------------------

@pytest.fixture
def h100():
    return load("h100_healthy")


def _hide_gpus_from_torch(facts: dict, init_error: str) -> None:
    facts["torch"].update(cuda_available=False, device_count=0, devices=[], cuda_init_error=init_error)


def test_cpu_torch_on_x86_gpu_machine_points_at_the_cuda_index(h100):
    h100["torch"].update(version="2.7.1+cpu", cuda=None, cudnn=None, arch_list=[],
                         cuda_available=False, device_count=0, devices=[])
    f = only(h100, "env.cuda")
    assert (f.status, f.recipe) == ("fail", "cpu-torch-on-gpu-machine")
    assert "download.pytorch.org/whl/cu128" in f.fix


def test_cuda_visible_devices_hiding_the_gpu_warns(h100):
    _hide_gpus_from_torch(h100, "RuntimeError: No CUDA GPUs are available")
    h100["gpu"]["cuda_visible_devices"] = ""
    f = only(h100, "env.cuda")
    assert (f.status, f.recipe) == ("warn", "cuda-build-no-gpu")
    assert "CUDA_VISIBLE_DEVICES=''" in f.message
    assert only(h100, "env.cuda", require_gpu=True).status == "fail"


def test_gpu_seen_by_nvml_but_not_by_torch_fails(h100):
    _hide_gpus_from_torch(h100, "RuntimeError: No CUDA GPUs are available")
    f = only(h100, "env.cuda")
    assert (f.status, f.recipe) == ("fail", "cuda-build-no-gpu")
    assert "nvml sees NVIDIA H100" in f.message and "No CUDA GPUs are available" in f.message


def test_driver_too_old_reported_by_torch_text_alone(h100):
    _hide_gpus_from_torch(h100, "RuntimeError: CUDA driver version is insufficient for CUDA "
                                "runtime version")
    h100["gpu"]["driver_version"] = None  # NVML unavailable: only torch's words are left
    f = only(h100, "env.cuda")
    assert (f.status, f.recipe) == ("fail", "cuda-driver-too-old")
    assert "insufficient" in f.message


def test_ptx_needing_a_newer_driver_fails(h100):
    h100["torch"]["arch_list"] = ["sm_80", "compute_80"]
    h100["gpu"]["cuda_driver_version"] = "12.4"  # older than the wheel's CUDA 12.8
    f = only(h100, "env.cuda")
    assert (f.status, f.recipe) == ("fail", "cuda-driver-too-old")
    assert "PTX" in f.message


def test_probe_failure_on_a_supported_gpu_fails_with_its_text(h100):
    err = "RuntimeError: Could not load library libcudnn_cnn_infer.so.8"
    h100["gpu_probe"]["devices"][0]["steps"]["conv2d"] = {"ok": False, "error": err}
    h100["gpu_probe"]["devices"][0]["ok"] = False
    h100["gpu_probe"]["ok"] = False
    f = only(h100, "env.cuda")
    assert (f.status, f.recipe) == ("fail", "gpu-probe-failed")
    assert "conv2d" in f.message and "libcudnn_cnn_infer" in f.message


def test_ptx_device_whose_probe_fails_fails_too():
    facts = load("rtx5090_old_wheel")
    steps = facts["gpu_probe"]["devices"][0]["steps"]
    steps["conv2d"] = {"ok": False, "error": "RuntimeError: CUDA error: no kernel image is "
                                             "available for execution on the device"}
    facts["gpu_probe"]["devices"][0]["ok"] = False
    statuses = [(f.status, f.recipe) for f in run(facts, "env.cuda")]
    # the probe's own error names the cause: the arch recipe's fix, not "the probe failed"
    assert statuses == [("fail", "gpu-arch-unsupported"), ("warn", "gpu-arch-ptx-jit")]


@pytest.mark.parametrize("error, recipe", [
    ("RuntimeError: cuDNN error: CUDNN_STATUS_NOT_SUPPORTED. This error may appear if you passed "
     "in a non-contiguous input.", "cudnn-not-supported"),
    ("RuntimeError: CUDA error: CUDA-capable device(s) is/are busy or unavailable",
     "gpu-busy-unavailable"),
    ("RuntimeError: Could not load library libcudnn_cnn_infer.so.8", "gpu-probe-failed"),
])
def test_a_probe_failure_gets_the_recipe_its_error_names(h100, error, recipe):
    """A busy GPU or a cuDNN status is not a library-path problem: the probe's error text goes
    through the catalog, and only an error it does not know stays gpu-probe-failed."""
    h100["gpu_probe"]["devices"][0]["steps"]["conv2d"] = {"ok": False, "error": error}
    h100["gpu_probe"]["devices"][0]["ok"] = False
    h100["gpu_probe"]["ok"] = False
    f = only(h100, "env.cuda")
    assert (f.status, f.recipe) == ("fail", recipe), f.message


def test_memory_held_by_other_processes_warns(h100):
    dev = h100["gpu"]["devices"][0]
    dev.update(used_memory=62 * GiB, free_memory=dev["total_memory"] - 62 * GiB,
               processes=[{"pid": 48213, "used_memory": 61 * GiB},
                          {"pid": 4242, "used_memory": 1 * GiB}])  # 4242 is cvdoctor's own
    f = only(h100, "env.gpu_memory")
    assert (f.status, f.recipe) == ("warn", "gpu-memory-in-use")
    assert "61.0 of 79.6 GiB already in use by 1 other process(es) (pid 48213)" in f.message


def test_memory_held_by_cvdoctor_itself_does_not_warn(h100):
    dev = h100["gpu"]["devices"][0]
    dev.update(used_memory=62 * GiB, free_memory=dev["total_memory"] - 62 * GiB,
               processes=[{"pid": 4242, "used_memory": 62 * GiB}])
    assert only(h100, "env.gpu_memory").status == "pass"


def test_unified_memory_uses_torch_numbers():
    f = only(load("dgx_spark_gb10"), "env.gpu_memory")
    assert "112.7 of 119.7 GiB free" in f.message and "unified memory" in f.message


# --- provider robustness (the probe's output turned into facts) ---------------------------------

def test_probe_timeout_becomes_facts_not_an_exception():
    facts = torch_info.from_probe({"_probe": {"ok": False, "reason": "timeout", "timeout_s": 60,
                                              "stderr": ""}})
    assert facts["ok"] is False and "did not finish within 60 s" in facts["error"]
    assert facts["torchvision_ops"]["ok"] is False


def test_probe_killed_while_loading_torchvision_keeps_the_torch_facts():
    partial = {"ok": True, "version": "2.7.1+cu128", "cuda": "12.8",
               "_probe": {"ok": False, "reason": "signal", "signal": "SIGSEGV", "returncode": -11,
                          "stderr": ""}}
    facts = torch_info.from_probe(partial)
    assert facts["ok"] is True and facts["version"] == "2.7.1+cu128"
    assert facts["torchvision_ops"]["ok"] is False
    assert "SIGSEGV" in facts["torchvision_ops"]["error"]


def test_parse_nvidia_smi_csv():
    out = ("NVIDIA H100 80GB HBM3, 9.0, 570.124.06, 81559, 531, 81028, "
           "GPU-3c2b1a09-8f7e-6d5c-4b3a-291807f6e5d4\n"
           "NVIDIA GB10, 12.1, 580.95.05, [N/A], [N/A], [N/A], GPU-5a3c1a2e-7f5e-4d0b-9c1a-2b3c4d5e6f70\n")
    parsed = gpu_facts_mod.parse_smi(out)
    h100, gb10 = parsed["devices"]
    assert h100["capability"] == [9, 0] and h100["free_memory"] == 81028 * 1024 * 1024
    assert gb10["capability"] == [12, 1] and gb10["total_memory"] is None
    assert parsed["driver_version"] == "570.124.06"


# --- this machine: a real probe ------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_torch():
    return EnvContext(EnvOptions()).fact("torch")


def test_real_torch_probe(real_torch):
    import importlib.util

    assert real_torch["ok"] is True and real_torch["error"] is None
    assert real_torch["version"] and real_torch["file"]
    spec_dir = Path(importlib.util.find_spec("torch").origin).parent
    assert Path(real_torch["file"]) == spec_dir
    assert real_torch["arch_list"] and all(a.startswith(("sm_", "compute_"))
                                           for a in real_torch["arch_list"])
    assert real_torch["sharing_strategy"] in ("file_descriptor", "file_system")
    ops = real_torch["torchvision_ops"]
    assert ops["found"] is True and ops["ok"] is True and ops["error"] is None
    assert Path(ops["library"]).name.startswith("_C") and ops["version"]


def test_real_machine_warns_no_gpu_and_fails_when_required(real_torch):
    real_gpu = gpu_facts_mod.collect(EnvOptions())
    if real_gpu["present"] or real_torch["device_count"]:
        pytest.skip("this machine has a GPU")
    f = only({}, "env.cuda")
    assert (f.status, f.recipe) == ("warn", "no-gpu")
    assert "no /dev/nvidia* device nodes" in f.message
    assert only({}, "env.cuda", require_gpu=True).status == "fail"
    assert only({"torch": real_torch}, "env.gpu_memory").status == "skip"


def test_gpu_probe_starts_nothing_without_a_gpu(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("the GPU probe must not start without a GPU")

    monkeypatch.setattr(gpu_probe_mod, "run_probe", boom)
    ctx = EnvContext(EnvOptions(), recorded={"gpu": {"present": False}})
    assert ctx.fact("gpu_probe") == {"ran": False, "reason": "no NVIDIA GPU found",
                                                  "ok": None, "devices": []}


# --- real faults: a torch that does not import, a broken torchvision, a fake nvidia-smi ---------

def _stub_package(root: Path, name: str, init: str, files: dict[str, bytes] | None = None) -> None:
    pkg = root / name
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(init)
    for fname, data in (files or {}).items():
        (pkg / fname).write_bytes(data)


def test_torch_import_failure_fails_env_torch_with_the_text(tmp_path, monkeypatch):
    _stub_package(tmp_path, "torch", "raise ImportError('libtorch_cuda.so: cannot open shared "
                                     "object file: No such file or directory')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    report = check_env(select=GPU_CHECKS)
    f = report["env.torch"]
    assert (f.status, f.recipe) == ("fail", "torch-import-failed")
    assert "libtorch_cuda.so: cannot open shared object file" in f.message
    assert report["env.cuda"].status == "skip"
    from cvdoctor.catalog import match_text

    assert match_text(f.evidence["error"])[0].recipe == "torch-import-failed"


@pytest.mark.parametrize("files, init, expect", [
    ({"_C.so": b"this is not an ELF file"}, "", "loading _C.so failed"),
    ({}, "", "no compiled extension"),
    ({"_C.so": b"\x7fELF garbage"}, "raise RuntimeError('broken torchvision')\n",
     "loading _C.so failed"),
])
@pytest.mark.slow
def test_broken_torchvision_is_reported_not_fatal(tmp_path, monkeypatch, files, init, expect):
    _stub_package(tmp_path, "torchvision", init,
                  dict(files, **{"version.py": b"__version__ = '0.99.0+stub'\n"}))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    facts = EnvContext(EnvOptions()).fact("torch")
    ops = facts["torchvision_ops"]
    assert facts["ok"] is True  # torch itself is fine
    assert ops["found"] is True and ops["ok"] is False and ops["version"] == "0.99.0+stub"
    assert expect in ops["error"]
    result = CliRunner().invoke(cli, ["env", "--select", "env.torch,env.cuda", "--json"])
    assert result.exit_code in (0, 1), result.output
    assert {f["status"] for f in json.loads(result.stdout)["findings"]} <= {"pass", "warn", "skip"}


def _fake_nvidia_smi(bin_dir: Path, calls: Path) -> None:
    bin_dir.mkdir()
    exe = bin_dir / "nvidia-smi"
    exe.write_text("#!/bin/sh\n"
                   f"echo call >> {calls}\n"
                   "echo 'NVIDIA A100-SXM4-80GB, 8.0, 535.183.01, 81920, 4, 81916, "
                   "GPU-1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f809'\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)


def test_nvidia_smi_fallback_and_one_call_per_run(tmp_path, monkeypatch):
    calls = tmp_path / "calls"
    _fake_nvidia_smi(tmp_path / "bin", calls)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(gpu_facts_mod, "_nvml", lambda: {"error": "NVML: test has no NVML"})
    monkeypatch.setattr(gpu_facts_mod, "_nvcc", lambda timeout: None)
    ctx = EnvContext(EnvOptions())
    ctx.prepare(["gpu", "gpu_probe"])  # both gathered in parallel, as in a run
    ctx.fact("gpu_probe")
    first = ctx.fact("gpu")
    again = ctx.fact("gpu")
    assert first is again and calls.read_text().count("call") == 1
    assert first["present"] and first["source"] == "nvidia-smi"
    assert first["devices"][0]["capability"] == [8, 0]
    assert first["driver_version"] == "535.183.01"


def test_gpu_listed_by_nvidia_smi_but_invisible_to_real_torch(tmp_path, monkeypatch, real_torch):
    if real_torch["device_count"]:
        pytest.skip("torch sees a GPU here")
    _fake_nvidia_smi(tmp_path / "bin", tmp_path / "calls")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(gpu_facts_mod, "_nvml", lambda: {"error": "NVML: test has no NVML"})
    recorded = {"torch": copy.deepcopy(real_torch)}
    recorded["torch"]["cuda"] = recorded["torch"]["cuda"] or "12.8"
    f = only(recorded, "env.cuda")
    # The real torch says why it sees nothing; the driver rule also applies (R535 vs CUDA 13).
    assert f.status == "fail"
    assert f.recipe in ("cuda-build-no-gpu", "cuda-driver-too-old")
    assert "A100" in f.message
