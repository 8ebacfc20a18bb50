"""env.shm: /dev/shm against what DataLoader workers need; a real 64 MiB tmpfs under unshare."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cvdoctor.api import check_env
from cvdoctor.facts.platform_info import gather_platform
from cvdoctor.facts.shm import BATCH_BYTES, shm_need
from envfacts import platform_facts

MiB, GiB = 2**20, 2**30
REPO = Path(__file__).resolve().parents[1]
CLI = "from cvdoctor.cli import main; main()"


def shm_facts(size: int | None = 64 * MiB, free: int | None = None, exists: bool = True,
              workers: int = 4, probe: dict | None = None, system: str = "Linux") -> dict:
    return {"system": system, "path": "/dev/shm", "exists": exists, "mounted": exists,
            "fstype": "tmpfs" if exists else None, "size_bytes": size if exists else None,
            "free_bytes": (size if free is None else free) if exists else None,
            "used_bytes": 0, "estimate": shm_need(workers), "probe": probe}


def run_shm(shm: dict, platform: dict):
    report = check_env(select=["env.shm"], recorded={"shm": shm, "platform": platform})
    findings = report.get_all("env.shm")
    assert len(findings) == 1
    return findings[0]


def test_need_estimate_is_workers_times_prefetch_times_batch_with_headroom():
    est = shm_need(4)
    assert BATCH_BYTES == 64 * 3 * 224 * 224 * 4
    assert est["need_bytes"] == 4 * 2 * BATCH_BYTES * 2
    assert "4 workers" in est["assumption"] and "224x224" in est["assumption"]


def test_docker_default_64mib_fails_with_ipc_host_fix():
    f = run_shm(shm_facts(64 * MiB), platform_facts(container="docker"))
    assert f.status == "fail" and f.recipe == "shm-docker-ipc"
    assert "64.0 MiB (64.0 MiB free) inside a docker container" in f.message
    assert "4 DataLoader workers" in f.message and "588.0 MiB" in f.message
    assert "--ipc=host" in f.fix and "--shm-size=1g" in f.fix


def test_ngc_container_counts_as_a_container():
    f = run_shm(shm_facts(64 * MiB), platform_facts(container=None, ngc="25.11"))
    assert f.status == "fail" and "NGC PyTorch container" in f.message


def test_small_shm_outside_a_container_is_only_a_warning():
    f = run_shm(shm_facts(64 * MiB), platform_facts(container=None))
    assert f.status == "warn" and f.recipe == "shm-docker-ipc"
    assert "inside" not in f.message and "remount" in f.fix


def test_large_shm_mostly_used_by_others_still_counts_free_space():
    f = run_shm(shm_facts(8 * GiB, free=100 * MiB), platform_facts(container="docker"))
    assert f.status == "fail" and "8.0 GiB (100.0 MiB free)" in f.message


def test_healthy_container_with_ipc_host_passes():
    f = run_shm(shm_facts(16 * GiB), platform_facts(container="docker"))
    assert f.status == "pass" and "16.0 GiB" in f.message


def test_missing_dev_shm_fails_in_container_and_warns_outside():
    assert run_shm(shm_facts(exists=False), platform_facts(container="podman")).status == "fail"
    f = run_shm(shm_facts(exists=False), platform_facts())
    assert f.status == "warn" and "does not exist" in f.message


def test_macos_is_skipped_with_a_reason():
    f = run_shm(shm_facts(system="Darwin"), platform_facts(system="Darwin", machine="arm64"))
    assert f.status == "skip" and "Darwin" in f.message


def _probe(**over) -> dict:
    probe = {"ok": True, "error": None, "error_line": None, "workers": 2, "prefetch_factor": 2,
             "batches_requested": 13, "batch_bytes": 24 * MiB, "batches_received": 13,
             "held_bytes": 13 * 24 * MiB, "torch": True, "sharing_strategy": "file_descriptor",
             "_probe": {"ok": True, "returncode": 0, "duration_s": 3.0, "stderr": ""}}
    probe.update(over)
    return probe


def test_deep_probe_success_is_reported():
    f = run_shm(shm_facts(16 * GiB, probe=_probe()), platform_facts(container="docker"))
    assert f.status == "pass" and "held 312.0 MiB" in f.message


def test_deep_probe_allocation_failure_fails_with_the_real_text():
    line = ("unable to allocate shared memory(shm) for file </torch_7961_644840744_1>: "
            "No space left on device (28)")
    probe = _probe(ok=False, error="RuntimeError: DataLoader timed out after 10.0 seconds",
                   error_line=line, batches_received=2, held_bytes=48 * MiB)
    # Even where the static estimate is satisfied, a real failure is a failure.
    f = run_shm(shm_facts(16 * GiB, probe=probe), platform_facts())
    assert f.status == "fail" and line in f.message and "2 of 13 batches" in f.message
    assert f.evidence["probe"]["error_line"] == line


def test_deep_probe_killed_by_sigbus_fails():
    probe = {"_probe": {"ok": False, "reason": "signal", "signal": "SIGBUS", "returncode": -7,
                        "stderr": "Bus error (core dumped)"}}
    f = run_shm(shm_facts(16 * GiB, probe=probe), platform_facts())
    assert f.status == "fail" and "SIGBUS" in f.message and "Bus error" in f.message


def test_deep_probe_hang_fails():
    probe = {"_probe": {"ok": False, "reason": "timeout", "timeout_s": 60.0, "stderr": ""}}
    f = run_shm(shm_facts(16 * GiB, probe=probe), platform_facts(container="docker"))
    assert f.status == "fail" and "hung" in f.message and "--ipc=host" in f.fix


def test_deep_probe_without_torch_keeps_the_static_answer():
    probe = _probe(ok=False, torch=False, error="torch not importable: ModuleNotFoundError")
    assert run_shm(shm_facts(16 * GiB, probe=probe), platform_facts()).status == "pass"


# ---- the real machine and a real 64 MiB /dev/shm ---------------------------------------------

def test_this_machine_shm_passes():
    f = check_env(select=["env.shm"])["env.shm"]
    assert f.status == "pass", f.message
    assert f.evidence["size_bytes"] > 0 and f.evidence["need_bytes"] > 0


@pytest.mark.slow
def test_this_machine_deep_probe_passes():
    f = check_env(select=["env.shm"], deep=True)["env.shm"]
    assert f.status == "pass", f.message
    assert "--deep" in f.message and f.evidence["probe"]["ok"] is True


needs_unshare = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="needs root and unshare(1) to mount a private 64 MiB tmpfs on /dev/shm")


def _env_in_small_shm(tmp_path: Path, container: str | None, *extra: str) -> dict:
    """`cvdoctor env --select env.shm --json` in a mount namespace whose /dev/shm is 64 MiB."""
    facts = tmp_path / "facts.json"
    facts.write_text(json.dumps({"platform": {**gather_platform(), "container": container,
                                              "ngc": None}}))
    cli = " ".join([sys.executable, "-c", f"'{CLI}'", "env", "--select", "env.shm", "--json",
                    "--facts", str(facts), *extra])
    proc = subprocess.run(
        ["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=64m tmpfs /dev/shm && {cli}"],
        capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode in (0, 1), proc.stderr
    report = json.loads(proc.stdout)
    (finding,) = [f for f in report["findings"] if f["check"] == "env.shm"]
    return {"rc": proc.returncode, **finding}


@pytest.mark.needs_root
@needs_unshare
def test_real_64mib_shm_in_a_container_fails(tmp_path):
    f = _env_in_small_shm(tmp_path, "docker")
    assert f["rc"] == 1 and f["status"] == "fail" and f["recipe"] == "shm-docker-ipc"
    assert "/dev/shm is 64.0 MiB" in f["message"] and "docker container" in f["message"]
    assert f["evidence"]["size_bytes"] == 64 * MiB


@pytest.mark.needs_root
@needs_unshare
def test_real_64mib_shm_outside_a_container_warns(tmp_path):
    f = _env_in_small_shm(tmp_path, None)
    assert f["rc"] == 0 and f["status"] == "warn" and "64.0 MiB" in f["message"]


@pytest.mark.needs_root
@needs_unshare
@pytest.mark.slow
def test_real_64mib_shm_deep_probe_catches_the_allocation_failure(tmp_path):
    f = _env_in_small_shm(tmp_path, "docker", "--deep")
    assert f["status"] == "fail"
    probe = f["evidence"]["probe"]
    assert probe["ok"] is False and probe["batches_received"] < probe["batches_requested"]
    # The real error from torch, whichever way this kernel and torch report it.
    real = ("unable to allocate shared memory", "No space left on device", "Bus error", "SIGBUS")
    assert any(text in f["message"] for text in real), f["message"]
