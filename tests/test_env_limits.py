"""env.limits: locked-memory and stack limits, read for real from processes started with lowered
limits (setrlimit before exec, as `docker run --ulimit` does), judged on recorded machines."""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from cvdoctor.api import check_env
from cvdoctor.facts.limits import gather_limits, rdma_devices, read_limits
from envfacts import platform_facts

REPO = Path(__file__).resolve().parents[1]
MiB = 2**20
GPU = {"present": True, "count": 1, "devices": [{"index": 0, "name": "NVIDIA H100 80GB HBM3",
                                                 "capability": [9, 0]}]}
NO_GPU = {"present": False, "count": 0, "devices": []}
DOCKER = platform_facts(container="docker", container_hints=["/.dockerenv exists"])
NGC = platform_facts(container="docker", container_hints=["/.dockerenv exists"], ngc="25.11",
                     ngc_env={"NVIDIA_PYTORCH_VERSION": "25.11"})


def limits(memlock, stack=8 * MiB, rdma=(), euid=1000, system="Linux"):
    return {"system": system, "memlock": {"soft": memlock, "hard": memlock},
            "stack": {"soft": stack, "hard": None}, "rdma_devices": list(rdma), "euid": euid}


def judge(lim, plat=DOCKER, gpu=GPU):
    return check_env(select=["env.limits"], recorded={"limits": lim, "platform": plat,
                                                      "gpu": gpu})["env.limits"]


def lowered(memlock: int, stack: int):
    def set_limits():
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (memlock, memlock))
        resource.setrlimit(resource.RLIMIT_STACK, (stack, resource.getrlimit(
            resource.RLIMIT_STACK)[1]))
    return set_limits


def test_the_fact_reads_the_limits_a_process_was_started_with():
    code = ("import json; from cvdoctor.facts.limits import read_limits; "
            "print(json.dumps(read_limits()))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          preexec_fn=lowered(65536, 4 * MiB), cwd=REPO, timeout=60)
    got = json.loads(proc.stdout)
    assert got["memlock"] == {"soft": 65536, "hard": 65536}
    assert got["stack"]["soft"] == 4 * MiB
    here = read_limits()
    soft = resource.getrlimit(resource.RLIMIT_MEMLOCK)[0]
    assert here["memlock"]["soft"] == (None if soft == resource.RLIM_INFINITY else soft)


def test_rdma_adapters_are_read_from_sysfs(tmp_path):
    assert rdma_devices(tmp_path) == []
    for name in ("mlx5_1", "mlx5_0"):
        (tmp_path / "sys/class/infiniband" / name).mkdir(parents=True)
    assert rdma_devices(tmp_path) == ["mlx5_0", "mlx5_1"]
    assert gather_limits(tmp_path)["rdma_devices"] == ["mlx5_0", "mlx5_1"]


def test_a_gpu_container_started_with_dockers_default_limits_warns(tmp_path):
    """The real limits of a process started like `docker run` without --ulimit (64 KiB locked
    memory, 8 MiB stack), in a container with a GPU (recorded: this machine has none)."""
    facts = tmp_path / "facts.json"
    facts.write_text(json.dumps({"platform": DOCKER, "gpu": GPU}))
    proc = subprocess.run(
        [sys.executable, "-c", "from cvdoctor.cli import main; main()", "env", "--select",
         "env.limits", "--json", "--facts", str(facts)], capture_output=True, text=True,
        preexec_fn=lowered(65536, 8 * MiB), cwd=REPO, timeout=120, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr  # a warning does not fail the run
    (finding,) = json.loads(proc.stdout)["findings"]
    assert (finding["status"], finding["recipe"]) == ("warn", "container-ulimits")
    assert "locked memory 64.0 KiB, stack 8.0 MiB inside a docker container" in finding["message"]
    assert "NVIDIA recommends --ulimit memlock=-1" in finding["message"]
    assert "--ulimit memlock=-1 --ulimit stack=67108864" in finding["fix"]
    assert finding["evidence"]["limits"]["memlock"]["soft"] == 65536


def test_nvidias_flags_pass_in_an_ngc_container():
    f = judge(limits(None, 67108864), plat=NGC)
    assert f.status == "pass", f.message
    assert "locked memory unlimited, stack 64.0 MiB inside a NGC PyTorch container" in f.message


def test_an_ngc_container_with_memlock_lifted_but_the_default_stack_passes_with_a_note():
    f = judge(limits(None, 8 * MiB), plat=NGC)
    assert f.status == "pass"
    assert "NVIDIA also recommends --ulimit stack=67108864" in f.message


def test_a_container_without_a_gpu_passes():
    """A CPU container (CI, this machine): NCCL is not in play."""
    f = judge(limits(8 * MiB), gpu=NO_GPU)
    assert f.status == "pass"
    assert "without a GPU" in f.message


def test_an_ngc_container_started_without_gpus_still_warns():
    f = judge(limits(8 * MiB), plat=NGC, gpu=NO_GPU)
    assert (f.status, f.recipe) == ("warn", "container-ulimits")


def test_outside_a_container_only_rdma_gpu_machines_warn():
    bare = platform_facts()
    f = judge(limits(65536, rdma=["mlx5_0", "mlx5_1"]), plat=bare)
    assert (f.status, f.recipe) == ("warn", "memlock-rdma")
    assert "mlx5_0, mlx5_1" in f.message and "limits.conf" in f.fix
    assert judge(limits(65536), plat=bare).status == "pass"  # no RDMA adapter: does not matter
    assert judge(limits(65536, rdma=["mlx5_0"]), plat=bare, gpu=NO_GPU).status == "pass"
    root = judge(limits(65536, rdma=["mlx5_0"], euid=0), plat=bare)
    assert root.status == "pass" and "CAP_IPC_LOCK" in root.message
    assert judge(limits(None, rdma=["mlx5_0"]), plat=bare).status == "pass"


@pytest.mark.parametrize("system", ["Windows", "Darwin"])
def test_other_systems_skip(system):
    f = judge(limits(None, system=system), plat=platform_facts(system=system))
    assert f.status == "skip" and system in f.message
