"""The built wheel ships checks and recipes inside `cvdoctor` and works away from the source tree."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    dist = tmp / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(dist), str(ROOT)], check=True, timeout=300,
                   capture_output=True)
    wheel = next(dist.glob("cvdoctor-*.whl"))
    site = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(site), str(wheel)], check=True, timeout=300, capture_output=True)
    return wheel, site, tmp


def _run(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(site), NO_COLOR="1")
    return subprocess.run([sys.executable, "-m", "cvdoctor.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_wheel_layout(installed):
    wheel, _, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert "checks" not in tops and "recipes" not in tops, tops
    assert any(n.startswith("cvdoctor/checks/") and n.endswith(".py") for n in names)
    assert any(n.startswith("cvdoctor/recipes/") and n.endswith(".md") for n in names)
    assert any(n.startswith("pytest_cvdoctor/") for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "cvdoctor = cvdoctor.cli:main" in text and "pytest_cvdoctor.plugin" in text


def test_explain_and_env_run_from_the_installed_wheel(installed):
    _, site, tmp = installed
    where = _run(site, tmp, "explain", "--list")
    assert where.returncode == 0, where.stderr
    assert "shm-docker-ipc" in where.stdout
    proc = subprocess.run([sys.executable, "-c", "import cvdoctor.checks, cvdoctor.recipes;"
                           "print(cvdoctor.checks.__file__); print(cvdoctor.recipes.__file__)"],
                          cwd=tmp, env=dict(os.environ, PYTHONPATH=str(site)), capture_output=True,
                          text=True, timeout=60)
    assert all(line.startswith(str(site)) for line in proc.stdout.split()), proc.stdout
    env = _run(site, tmp, "env", "--json")
    assert env.returncode in (0, 1), env.stderr
    data = json.loads(env.stdout)
    assert data["command"] == "env" and data["findings"]
    assert not [f for f in data["findings"] if f["status"] == "error"], data["findings"]
