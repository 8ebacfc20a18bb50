"""env.platform, env.resources, env.hub, env.packages: rules on recorded facts, real faults where
this machine can make them (ulimit -n 128, hidden packages, a stub torchvision), and privacy."""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from cvdoctor.api import check_env
from cvdoctor.cli import cli
from cvdoctor.facts.hub import gather_hub
from cvdoctor.facts.packages import PACKAGES, inspect_package, satisfies, version_tuple
from cvdoctor.facts.platform_info import (detect_container, detect_dgx, detect_jetson,
                                          detect_ngc, detect_wsl)
from cvdoctor.facts.resources import cgroup_cpu_quota, cgroup_memory, suggested_workers
from envfacts import platform_facts

GiB = 2**30
REPO = Path(__file__).resolve().parents[1]
CLI = "from cvdoctor.cli import main; main()"
SYSTEM_CHECKS = "env.platform,env.shm,env.resources,env.hub,env.packages"


def run_cli(*args: str, env: dict | None = None, preexec_fn=None, timeout: float = 180):
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([sys.executable, "-c", CLI, "env", *args], capture_output=True,
                          text=True, env=full_env, preexec_fn=preexec_fn, cwd=REPO,
                          timeout=timeout)
    return proc


def findings_of(proc, check: str) -> list[dict]:
    report = json.loads(proc.stdout)
    return [f for f in report["findings"] if f["check"] == check]


def write(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ---- env.platform --------------------------------------------------------------------------

def platform_findings(**over):
    return check_env(select=["env.platform"],
                     recorded={"platform": platform_facts(**over)}).get_all("env.platform")


@pytest.mark.parametrize("files,environ,expected", [
    ({}, {}, None),
    ({".dockerenv": ""}, {}, "docker"),
    ({"run/.containerenv": ""}, {}, "podman"),
    ({"proc/1/cgroup": "0::/kubepods/besteffort/pod1234/abc\n"}, {}, "kubernetes"),
    ({}, {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, "kubernetes"),
    ({"proc/1/cgroup": "12:cpu:/system.slice/containerd.service/x\n"}, {}, "containerd"),
    ({"proc/self/mountinfo": "1 0 0:50 / / rw,relatime - overlay overlay rw,lowerdir=/a\n"},
     {}, "unknown"),
    ({"proc/self/mountinfo": "1 0 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n"}, {}, None),
])
def test_container_detection(tmp_path, files, environ, expected):
    for rel, text in files.items():
        write(tmp_path / rel, text)
    name, hints = detect_container(tmp_path, environ)
    assert name == expected
    assert bool(hints) == (expected is not None)


def test_ngc_jetson_dgx_wsl_detection(tmp_path):
    assert detect_ngc({"NVIDIA_PYTORCH_VERSION": "25.11",
                       "PYTORCH_BUILD_VERSION": "2.10.0a0+b558c98"})[0] == "25.11"
    assert detect_ngc({"PYTORCH_BUILD_VERSION": "2.6.0a0", "NVIDIA_BUILD_ID": "1"})[0] == "unknown"
    assert detect_ngc({"CUDA_VERSION": "12.8"})[0] is None
    assert detect_jetson(tmp_path) is None
    write(tmp_path / "etc/nv_tegra_release",
          "# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64\n")
    assert detect_jetson(tmp_path) == "R36.4.0"
    assert detect_dgx(tmp_path) is None
    write(tmp_path / "sys/class/dmi/id/product_name", "NVIDIA DGX Spark\n")
    assert detect_dgx(tmp_path) == "NVIDIA DGX Spark"
    assert detect_wsl("5.15.153.1-microsoft-standard-WSL2", tmp_path, {}) is True
    assert detect_wsl("6.8.0-45-generic", tmp_path, {}) is False


def test_platform_healthy_passes_with_os_arch_container_python():
    (f,) = platform_findings(container="docker")
    assert f.status == "pass"
    assert f.message == "Linux 6.8.0, x86_64, docker container, CPython 3.11.7"


def test_platform_ngc_on_dgx_spark_passes():
    (f,) = platform_findings(machine="aarch64", container="docker", ngc="25.11",
                             dgx="NVIDIA DGX Spark", python="3.12.3")
    assert f.status == "pass" and "NGC PyTorch container 25.11" in f.message


@pytest.mark.parametrize("over,needle", [
    ({"python": "3.9.18", "torch_version": None, "torch_requires_python": None}, "older than 3.10"),
    ({"python": "3.16.0", "torch_version": None, "torch_requires_python": None}, "newer than 3.14"),
    ({"python": "3.10.12"}, "requires Python >=3.11"),
    ({"python_implementation": "PyPy", "python": "3.10.14"}, "CPython only"),
])
def test_unsupported_python_warns(over, needle):
    (f,) = platform_findings(**over)
    assert f.status == "warn" and f.recipe == "platform-python-unsupported"
    assert needle in f.message


def test_new_python_with_a_torch_that_supports_it_passes():
    # The installed torch's metadata is the truth, not cvdoctor's table.
    (f,) = platform_findings(python="3.15.0", torch_requires_python=">=3.11")
    assert f.status == "pass"


def test_aarch64_outside_a_container_warns_toward_ngc():
    (f,) = platform_findings(machine="aarch64", dgx="NVIDIA DGX Spark")
    assert f.status == "warn" and f.recipe == "platform-aarch64-no-container"
    assert "nvcr.io/nvidia/pytorch" in f.fix and "DGX Spark" in f.message


@pytest.mark.parametrize("over", [
    {"machine": "aarch64", "container": "docker"},
    {"machine": "aarch64", "jetson": "R36.4.0"},
    {"machine": "arm64", "system": "Darwin", "release": "24.1.0"},
])
def test_aarch64_in_container_on_jetson_or_macos_does_not_warn(over):
    (f,) = platform_findings(**over)
    assert f.status == "pass"


def test_platform_on_this_machine_passes():
    f = check_env(select=["env.platform"])["env.platform"]
    assert f.status == "pass" and f.evidence["machine"] and f.evidence["python"]


# ---- env.resources -------------------------------------------------------------------------

def test_cgroup_v2_and_v1_cpu_quota(tmp_path):
    v2 = tmp_path / "v2"
    write(v2 / "proc/self/cgroup", "0::/\n")
    write(v2 / "sys/fs/cgroup/cpu.max", "250000 100000\n")
    assert cgroup_cpu_quota(v2) == 2.5
    write(v2 / "sys/fs/cgroup/cpu.max", "max 100000\n")
    assert cgroup_cpu_quota(v2) is None
    v1 = tmp_path / "v1"
    write(v1 / "proc/self/cgroup", "4:cpu,cpuacct:/docker/abc\n")
    write(v1 / "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "200000\n")
    write(v1 / "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_quota(v1) == 2.0
    write(v1 / "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "-1\n")
    assert cgroup_cpu_quota(v1) is None


def test_cgroup_memory_limits(tmp_path):
    write(tmp_path / "proc/self/cgroup", "0::/\n")
    write(tmp_path / "sys/fs/cgroup/memory.max", f"{8 * GiB}\n")
    write(tmp_path / "sys/fs/cgroup/memory.current", f"{GiB}\n")
    assert cgroup_memory(tmp_path)["limit"] == 8 * GiB
    write(tmp_path / "sys/fs/cgroup/memory.max", "max\n")
    assert cgroup_memory(tmp_path)["limit"] is None


def test_suggested_workers():
    assert [suggested_workers(n) for n in (1, 2, 3, 4, 16, 128)] == [1, 2, 2, 3, 8, 8]


def resource_facts(cpus=16, available=48 * GiB, free_disk=500 * GiB, soft=65536, hard=65536,
                   quota=None, cgroup_limit=None):
    return {
        "cpus": {"cpu_count": 64, "affinity": 64, "cgroup_quota": quota, "effective": cpus,
                 "suggested_num_workers": suggested_workers(cpus)},
        "memory": {"host_total": 256 * GiB, "host_available": 200 * GiB,
                   "cgroup_limit": cgroup_limit, "cgroup_usage": None,
                   "total": cgroup_limit or 256 * GiB, "available": available},
        "disk": [{"paths": ["/work", "/root/.cache"], "roles": ["cwd", "cache"],
                  "free": free_disk, "total": 1000 * GiB, "measured_at": "/work"}],
        "open_files": {"soft": soft, "hard": hard},
    }


def resources_findings(strategy="file_descriptor", **kw) -> dict:
    torch = {"ok": True, "sharing_strategy": strategy}
    report = check_env(select=["env.resources"],
                       recorded={"resources": resource_facts(**kw), "torch": torch})
    return {f.title: f for f in report.get_all("env.resources")}


def test_resources_healthy_all_pass():
    found = resources_findings()
    assert set(found) == {"CPUs", "Memory", "Disk", "Open files"}
    assert all(f.status == "pass" for f in found.values()), [f.message for f in found.values()]
    assert "suggested num_workers=8" in found["CPUs"].message


def test_few_cpus_from_a_cgroup_quota_warns_with_a_worker_count():
    f = resources_findings(cpus=2, quota=2.0)["CPUs"]
    assert f.status == "warn" and f.recipe == "resources-few-cpus"
    assert "2 usable CPUs" in f.message and "cgroup quota 2 CPUs" in f.message
    assert "num_workers=2" in f.fix


def test_low_memory_under_a_cgroup_limit_warns():
    f = resources_findings(available=2 * GiB, cgroup_limit=4 * GiB)["Memory"]
    assert f.status == "warn" and f.recipe == "resources-low-memory"
    assert "2.0 GiB available of 4.0 GiB cgroup limit" in f.message and "4.0 GiB" in f.message


def test_low_disk_warns():
    f = resources_findings(free_disk=3 * GiB)["Disk"]
    assert f.status == "warn" and f.recipe == "resources-low-disk"
    assert "3.0 GiB free for cwd, cache" in f.message and "TORCH_HOME" in f.fix


def test_low_open_files_limit_warns_with_ulimit_and_strategy_fix():
    f = resources_findings(soft=128, hard=4096)["Open files"]
    assert f.status == "warn" and f.recipe == "resources-open-files-limit"
    assert "open-files limit 128" in f.message and "file_descriptor" in f.message
    assert "ulimit -n 4096" in f.fix and "set_sharing_strategy('file_system')" in f.fix


def test_file_system_strategy_needs_fewer_descriptors():
    assert resources_findings(strategy="file_system", soft=512)["Open files"].status == "pass"
    assert resources_findings(strategy="file_descriptor", soft=512)["Open files"].status == "warn"


def test_unknown_strategy_says_it_assumed_the_linux_default():
    f = resources_findings(strategy=None, soft=128)["Open files"]
    assert f.status == "warn" and "Linux default; torch did not report" in f.message


def test_ulimit_n_128_real_run_warns_and_never_crashes():
    def low_nofile():
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, resource.getrlimit(
            resource.RLIMIT_NOFILE)[1]))

    proc = run_cli("--select", SYSTEM_CHECKS, "--json", preexec_fn=low_nofile)
    assert proc.returncode in (0, 1), proc.stderr
    report = json.loads(proc.stdout)
    assert not [f for f in report["findings"] if f["status"] == "error"], proc.stdout
    (open_files,) = [f for f in findings_of(proc, "env.resources") if f["title"] == "Open files"]
    assert open_files["status"] == "warn"
    assert open_files["evidence"]["open_files"]["soft"] == 128
    assert "Too many open files" in open_files["message"]


def test_resources_on_this_machine_measure_real_numbers():
    found = {f.title: f for f in check_env(select=["env.resources"]).get_all("env.resources")}
    assert found["CPUs"].evidence["cpus"]["effective"] == min(
        os.cpu_count(), len(os.sched_getaffinity(0)))
    assert found["Open files"].evidence["open_files"]["soft"] == \
        resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert found["Open files"].evidence["sharing_strategy_reported"] is True


# ---- env.hub ---------------------------------------------------------------------------------

def hub_findings(environ: dict):
    return check_env(select=["env.hub"],
                     recorded={"hub": gather_hub(environ)}).get_all("env.hub")


def test_hub_healthy_cache_passes_and_counts_models(tmp_path):
    (tmp_path / "hf/hub/models--timm--resnet50.a1_in1k").mkdir(parents=True)
    write(tmp_path / "torch/hub/checkpoints/resnet50-11ad3fa6.pth", "x")
    (f,) = hub_findings({"HOME": str(tmp_path), "HF_HOME": str(tmp_path / "hf"),
                         "TORCH_HOME": str(tmp_path / "torch"), "HF_HUB_OFFLINE": "1"})
    assert f.status == "pass" and "offline" in f.message
    assert "(1 models)" in f.message and "(1 checkpoints)" in f.message


def test_hub_token_is_never_stored(tmp_path):
    secret = "hf_" + "Q" * 34
    facts = gather_hub({"HOME": str(tmp_path), "HF_TOKEN": secret})
    assert facts["token"] == {"present": True, "source": "HF_TOKEN", "length": 37}
    assert secret not in json.dumps(facts)
    write(tmp_path / "hf/token", secret + "\n")
    facts = gather_hub({"HOME": str(tmp_path), "HF_HOME": str(tmp_path / "hf")})
    assert facts["token"]["length"] == 37 and secret not in json.dumps(facts)


def test_offline_with_empty_cache_warns(tmp_path):
    (f,) = hub_findings({"HOME": str(tmp_path), "TRANSFORMERS_OFFLINE": "1"})
    assert f.status == "warn" and f.recipe == "hub-offline-no-cache"
    assert "TRANSFORMERS_OFFLINE=1" in f.message and "0 models" in f.message


def test_online_with_empty_cache_does_not_warn(tmp_path):
    (f,) = hub_findings({"HOME": str(tmp_path), "HF_HUB_OFFLINE": "0"})
    assert f.status == "pass" and "online" in f.message


def test_unwritable_cache_warns(tmp_path):
    blocker = write(tmp_path / "not-a-dir")
    (f,) = hub_findings({"HOME": str(tmp_path), "HF_HOME": str(blocker / "huggingface")})
    assert f.status == "warn" and f.recipe == "hub-cache-unwritable"
    assert "is a file, not a directory" in f.message and "HF_HOME" in f.fix


def test_privacy_home_and_token_are_redacted_in_json_and_text():
    secret = "hf_" + "abcXYZ0123456789" * 2
    # The cache path carries both the home directory and a token-shaped string: both must go.
    hf_home = str(Path.home() / f"{secret}-cache")
    env = {"HF_TOKEN": secret, "HF_HOME": hf_home, "HF_HUB_OFFLINE": "1"}
    runner = CliRunner()
    as_json = runner.invoke(cli, ["env", "--select", "env.hub", "--json"], env=env)
    as_text = runner.invoke(cli, ["env", "--select", "env.hub", "-v"], env=env)
    for result in (as_json, as_text):
        assert result.exit_code in (0, 1), result.output
        assert secret not in result.stdout
        assert str(Path.home()) + "/" not in result.stdout
        assert "~/<token>-cache" in result.stdout
    report = json.loads(as_json.stdout)
    (finding,) = [f for f in report["findings"] if f["recipe"] == "hub-offline-no-cache"]
    assert finding["evidence"]["token"]["length"] == len(secret)
    assert '"source": "HF_TOKEN"' in as_text.stdout  # -v shows where the token came from


# ---- env.packages ----------------------------------------------------------------------------

def test_version_helpers():
    assert version_tuple("2.15.0+cu128") == (2, 15, 0) and version_tuple("garbage") == ()
    assert satisfies("3.11.7", ">=3.10,!=3.14.1") is True
    assert satisfies("3.14.1", ">=3.10,!=3.14.1") is False
    assert satisfies("2.8.0", "==2.8.*") is True and satisfies("2.9.0", "==2.8.*") is False
    assert satisfies("2.15.0", "~=2.14") is True and satisfies("3.0", "~=2.14") is False


def pkg(module: str, present: bool = True, version: str | None = "1.0", **over) -> dict:
    dists, install = PACKAGES[module]
    info = {"module": module, "install": install, "present": present,
            "origin": f"/venv/site-packages/{module}/__init__.py" if present else None,
            "version": version if present else None,
            "distribution": dists[0] if present else None,
            "distributions": [f"{dists[0]} {version}"] if present else [],
            "shadowed_by": None, "error": None}
    info.update(over)
    return info


def packages_facts(**over) -> dict:
    packages = {m: pkg(m) for m in PACKAGES}
    packages["torchvision"] = pkg("torchvision", version="0.29.2")
    packages.update(over)
    return {"packages": packages, "deep": False, "torch_version": "2.15.0",
            "pairing": {"torchvision": "0.29.2", "torch": "2.15.0", "requires": ">=2.14.0",
                        "satisfied": True}}


OPS_OK = {"found": True, "version": "0.29.2", "library": "/venv/torchvision/_C.so", "ok": True,
          "error": None}


def packages_findings(torch_ops=OPS_OK, torch_ok=True, **over):
    torch = {"ok": torch_ok, "version": "2.15.0", "torchvision_ops": torch_ops}
    return check_env(select=["env.packages"], recorded={
        "packages": packages_facts(**over), "torch": torch}).get_all("env.packages")


def test_all_packages_healthy_is_one_pass():
    (f,) = packages_findings()
    assert f.status == "pass"
    assert "torchvision 0.29.2: compiled ops load and nms runs" in f.message
    assert "asks for torch >=2.14.0, torch 2.15.0 is installed" in f.message


@pytest.mark.parametrize("module,recipe,command", [
    ("torchvision", "missing-torchvision", "pip install torchvision"),
    ("timm", "missing-timm", "pip install timm"),
    ("ultralytics", "missing-ultralytics", "pip install ultralytics"),
    ("segment_anything", "missing-segment-anything", "pip install segment-anything"),
    ("lap", "missing-lap", "pip install lap"),
    ("cv2", "missing-opencv", "pip install opencv-python-headless"),
])
def test_missing_optional_package_warns_with_install_command(module, recipe, command):
    found = packages_findings(**{module: pkg(module, present=False)})
    (warn,) = [f for f in found if f.status == "warn"]
    assert warn.recipe == recipe and warn.fix == command
    assert "is not installed" in warn.message


def test_metadata_without_module_is_a_broken_install():
    found = packages_findings(lap=pkg("lap", present=False, distributions=["lap 0.5.12"]))
    (warn,) = [f for f in found if f.status == "warn"]
    assert "recorded as installed" in warn.message and "--force-reinstall" in warn.fix


@pytest.mark.parametrize("error", [
    "torchvision::nms failed: RuntimeError: operator torchvision::nms does not exist",
    "loading _C.so failed: OSError: /venv/torchvision/_C.so: undefined symbol: "
    "_ZN3c1017RegisterOperatorsD1Ev",
])
def test_torchvision_ops_mismatch_fails(error):
    ops = {**OPS_OK, "ok": False, "error": error}
    found = packages_findings(torch_ops=ops)
    (fail,) = [f for f in found if f.status == "fail"]
    assert fail.recipe == "torchvision-torch-mismatch" and error in fail.message
    assert "torch torchvision" in fail.fix


def test_torch_not_importable_leaves_ops_unchecked_without_failing():
    ops = {"found": None, "version": None, "library": None, "ok": False,
           "error": "not probed: torch did not import"}
    (f,) = packages_findings(torch_ops=ops, torch_ok=False)
    assert f.status == "pass" and "compiled ops not checked" in f.message


def test_deep_import_failure_fails_with_the_real_error():
    timm = pkg("timm", version="1.0.31",
               **{"import": {"imported": False,
                             "error": "ImportError: cannot import name 'x' from 'torch'"}})
    (fail,) = [f for f in packages_findings(timm=timm) if f.status == "fail"]
    assert fail.recipe == "missing-timm" and "cannot import name 'x'" in fail.message


def test_packages_real_run_reports_missing_ones_and_torchvision_ops():
    found = check_env(select=["env.packages"]).get_all("env.packages")
    by_recipe = {f.recipe: f for f in found if f.status == "warn"}
    # ultralytics, segment_anything, lap and opencv are really absent from this venv.
    for module, recipe in (("ultralytics", "missing-ultralytics"),
                           ("segment_anything", "missing-segment-anything"),
                           ("lap", "missing-lap"), ("cv2", "missing-opencv")):
        if inspect_package(module)["present"]:
            continue
        assert by_recipe[recipe].fix == PACKAGES[module][1]
    (ok,) = [f for f in found if f.status == "pass"]
    assert "torchvision" in ok.message and "nms runs" in ok.message
    assert ok.evidence["torchvision_ops"]["ok"] is True


HIDE_TIMM = textwrap.dedent("""
    import sys

    class HideTimm:
        def find_spec(self, name, path=None, target=None):
            if name == "timm" or name.startswith("timm."):
                raise ModuleNotFoundError(f"No module named {name!r} (hidden by the test)")
            return None

    sys.meta_path.insert(0, HideTimm())
""")


def test_timm_hidden_from_the_import_system_warns_with_install_command(tmp_path):
    write(tmp_path / "sitecustomize.py", HIDE_TIMM)
    proc = run_cli("--select", "env.packages", "--json",
                   env={"PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    (timm,) = [f for f in findings_of(proc, "env.packages") if f["recipe"] == "missing-timm"]
    # find_spec consults sys.meta_path, so the hook hides timm exactly as `import timm` would;
    # its metadata is still on disk, so the doctor calls it a broken install and says why.
    assert timm["status"] == "warn" and timm["fix"] == "pip install --force-reinstall timm"
    assert "hidden by the test" in timm["message"]


STUB_TORCHVISION = 'raise RuntimeError("stub torchvision: deliberately broken for the test")\n'


def test_stub_torchvision_is_reported_never_crashes(tmp_path):
    write(tmp_path / "torchvision/__init__.py", STUB_TORCHVISION)
    proc = run_cli("--select", "env.packages", "--json", env={"PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 1, proc.stderr
    found = findings_of(proc, "env.packages")
    assert not [f for f in found if f["status"] == "error"]
    (fail,) = [f for f in found if f["status"] == "fail"]
    assert fail["recipe"] == "torchvision-torch-mismatch"
    assert "no compiled extension" in fail["message"]
    assert fail["evidence"]["packages"]["torchvision"]["shadowed_by"].startswith(str(tmp_path))


@pytest.mark.slow
def test_stub_torchvision_deep_import_reports_the_real_error(tmp_path):
    write(tmp_path / "torchvision/__init__.py", STUB_TORCHVISION)
    proc = run_cli("--select", "env.packages", "--json", "--deep",
                   env={"PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 1, proc.stderr
    fails = [f for f in findings_of(proc, "env.packages") if f["status"] == "fail"]
    tv = [f for f in fails if f["message"].startswith("torchvision")]
    assert tv and "deliberately broken" in tv[0]["message"]
    assert tv[0]["recipe"] == "torchvision-torch-mismatch"


def test_system_checks_do_not_import_torch_in_the_main_process():
    probe = ("import atexit, sys\n"
             "atexit.register(lambda: sys.stderr.write("
             "'\\nTORCH_IN_MAIN=%s\\n' % ('torch' in sys.modules)))\n" + CLI)
    proc = subprocess.run([sys.executable, "-c", probe, "env", "--select", SYSTEM_CHECKS,
                           "--json"], capture_output=True, text=True, cwd=REPO, timeout=180)
    assert proc.returncode in (0, 1), proc.stderr
    assert "TORCH_IN_MAIN=False" in proc.stderr


def test_deep_import_that_kills_the_interpreter_is_reported(tmp_path, monkeypatch):
    from cvdoctor.facts.packages import import_in_subprocess

    write(tmp_path / "lap/__init__.py", "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    result = import_in_subprocess("lap", timeout_s=60)
    assert result["imported"] is False
    assert "did not finish (signal, SIGSEGV)" in result["error"]


# ---- the error texts these checks' recipes answer (`cvdoctor explain`) -------------------------

@pytest.mark.parametrize("recipe,text", [
    ("shm-docker-ipc", "RuntimeError: unable to allocate shared memory(shm) for file "
                       "</torch_7961_644840744_1>: No space left on device (28)"),
    ("shm-docker-ipc", "ERROR: Unexpected bus error encountered in worker. This might be caused "
                       "by insufficient shared memory (shm)."),
    ("shm-docker-ipc", "RuntimeError: DataLoader worker (pid 1234) is killed by signal: Bus "
                       "error. It is possible that dataloader's workers are out of shared "
                       "memory. Please try to raise your shared memory limit."),
    ("shm-docker-ipc", "RuntimeError: unable to write to file </torch_18_1234_5678>: No space "
                       "left on device (28)"),
    ("shm-docker-ipc", "RuntimeError: error executing torch_shm_manager at \"/usr/lib/python3/"
                       "torch/bin/torch_shm_manager\": No space left on device"),
    ("torchvision-torch-mismatch", "RuntimeError: operator torchvision::nms does not exist"),
    ("torchvision-torch-mismatch", "RuntimeError: Couldn't load custom C++ ops. This can happen "
                                   "if your PyTorch and torchvision versions are incompatible, "
                                   "or if you had errors while compiling torchvision from source."),
    ("torchvision-torch-mismatch", "OSError: /usr/lib/python3.10/site-packages/torchvision/"
                                   "_C.so: undefined symbol: _ZN3c1017RegisterOperatorsD1Ev"),
    ("torchvision-torch-mismatch", "NotImplementedError: Could not run 'torchvision::nms' with "
                                   "arguments from the 'CUDA' backend."),
    ("platform-python-unsupported", "ERROR: Could not find a version that satisfies the "
                                    "requirement torch (from versions: none)"),
    ("resources-few-cpus", "UserWarning: This DataLoader will create 8 worker processes in "
                           "total. Our suggested max number of worker in current system is 2, "
                           "which is smaller than what this DataLoader is going to create."),
    ("resources-low-disk", "OSError: [Errno 28] No space left on device: '/root/.cache/torch/"
                           "hub/checkpoints/sam_vit_h_4b8939.pth'"),
    ("resources-open-files-limit", "OSError: [Errno 24] Too many open files"),
    ("resources-open-files-limit", "RuntimeError: received 0 items of ancdata"),
    ("hub-cache-unwritable", "PermissionError: [Errno 13] Permission denied: '/home/me/.cache/"
                             "huggingface/hub/models--timm--vit_base_patch16_224'"),
    ("hub-offline-no-cache", "OSError: We have no connection or you passed local_files_only=True "
                             "and we cannot find the requested files in the local cache."),
    ("hub-offline-no-cache", "huggingface_hub.errors.LocalEntryNotFoundError: Cannot find the "
                             "requested files in the disk cache and outgoing traffic has been "
                             "disabled."),
])
def test_recipe_patterns_match_real_messages(recipe, text):
    from cvdoctor.catalog import match_text

    ranked = [m.recipe for m in match_text(text)]
    assert ranked and ranked[0] == recipe, ranked


@pytest.mark.parametrize("text", [
    "OSError: [Errno 28] No space left on device: '/data/logs/run.txt'",
    "PermissionError: [Errno 13] Permission denied: '/etc/shadow'",
    "RuntimeError: DataLoader worker (pid 99) exited unexpectedly with exit code 1",
])
def test_unrelated_errors_do_not_claim_these_recipes(text):
    from cvdoctor.catalog import match_text

    mine = {"shm-docker-ipc", "resources-low-disk", "hub-cache-unwritable",
            "resources-open-files-limit", "resources-low-memory"}
    assert not {m.recipe for m in match_text(text)} & mine
