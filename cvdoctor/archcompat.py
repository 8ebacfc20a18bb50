"""Which CUDA code in a torch build can run on which GPU, and which driver a CUDA build needs.

The rules are data plus pure functions, so they can be tested as tables and read by people:

* a cubin ``sm_XY`` runs on a device ``X.Z`` with ``Z >= Y`` (binary compatibility stays within
  one major version): ``sm_120`` runs on GB10 (12.1) even though torch's own warning says not;
* PTX ``compute_XY`` is compiled by the driver on first use for any device ``>= X.Y``, which works
  but makes the first run slow, and needs a driver at least as new as the CUDA that wrote the PTX;
* ``sm_XYa`` (arch-specific) runs on exactly ``X.Y``; ``sm_XYf`` (family-specific) runs on the
  ``X`` family from ``X.Y`` up, never on another major;
* nothing compatible means "no kernel image is available for execution on the device".

Imports nothing heavy (no torch): checks and tests call it on recorded facts.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

NATIVE, PTX, NONE, UNKNOWN = "native", "ptx", "none", "unknown"

# Oldest Linux driver each CUDA major runs on (minor-version compatibility, CUDA 11+).
# Source: NVIDIA's CUDA compatibility table (R450 for 11.x, R525 for 12.x, R580 for 13.x).
DRIVER_MIN_FOR_CUDA_MAJOR: dict[int, tuple[int, ...]] = {
    11: (450, 80, 2),
    12: (525, 60, 13),
    13: (580, 65, 6),
}

# How entry suffixes restrict the devices an entry can run on.
#   "":  same major, device minor >= entry minor (cubin); PTX: any device >= entry
#   "a": exactly the entry's capability
#   "f": same major, device minor >= entry minor (also for PTX)
SUFFIX_RULES = {"": "forward", "a": "exact", "f": "family"}

_ENTRY = re.compile(r"^(sm|compute)_(\d+)([af]?)$")


@dataclass(frozen=True)
class ArchEntry:
    """One entry of ``torch.cuda.get_arch_list()``: ``sm_90``, ``compute_90``, ``sm_100a``."""

    text: str
    kind: str  # "sm" (cubin) or "compute" (PTX)
    major: int
    minor: int
    suffix: str  # "", "a" or "f"

    @property
    def capability(self) -> tuple[int, int]:
        return (self.major, self.minor)


def parse_entry(text: str) -> ArchEntry | None:
    """``"sm_120"`` -> sm 12.0; ``"compute_90"`` -> PTX 9.0; ``"sm_100f"`` -> sm 10.0 family.
    The last digit is the minor version (``sm_86`` = 8.6, ``sm_121`` = 12.1). None if unknown."""
    m = _ENTRY.match(text.strip().lower())
    if not m:
        return None
    kind, digits, suffix = m.groups()
    if len(digits) < 2:
        return None
    return ArchEntry(text.strip(), kind, int(digits[:-1]), int(digits[-1]), suffix)


def entry_runs_on(entry: ArchEntry, capability: tuple[int, int]) -> str:
    """How `entry` runs on a device of `capability`: NATIVE, PTX (JIT) or NONE."""
    major, minor = int(capability[0]), int(capability[1])
    rule = SUFFIX_RULES[entry.suffix]
    if rule == "exact":
        fits = (major, minor) == entry.capability
    elif rule == "family" or entry.kind == "sm":
        fits = major == entry.major and minor >= entry.minor
    else:  # plain PTX: forward-compatible across majors
        fits = (major, minor) >= entry.capability
    if not fits:
        return NONE
    return NATIVE if entry.kind == "sm" else PTX


@dataclass(frozen=True)
class ArchVerdict:
    status: str  # NATIVE | PTX | NONE | UNKNOWN
    capability: tuple[int, int]
    matched: tuple[str, ...]  # entries that run on the device, best kind only
    arch_list: tuple[str, ...]

    @property
    def device_arch(self) -> str:
        return f"sm_{self.capability[0]}{self.capability[1]}"

    def describe(self) -> str:
        cap = f"{self.capability[0]}.{self.capability[1]}"
        if self.status == NATIVE:
            return f"capability {cap} runs the {', '.join(self.matched)} cubin natively"
        if self.status == PTX:
            return (f"capability {cap} has no cubin; the driver JIT-compiles "
                    f"{', '.join(self.matched)} PTX on first use")
        if self.status == NONE:
            return (f"capability {cap} matches none of {' '.join(self.arch_list)} "
                    "(\"no kernel image is available for execution on the device\")")
        return f"capability {cap}: torch reported no arch list, so compatibility is unknown"


def check_arch(capability: tuple[int, int] | list[int], arch_list: list[str]) -> ArchVerdict:
    """The best way `arch_list` (``torch.cuda.get_arch_list()``) can run on `capability`."""
    cap = (int(capability[0]), int(capability[1]))
    entries = [e for e in (parse_entry(a) for a in arch_list) if e is not None]
    if not entries:
        return ArchVerdict(UNKNOWN, cap, (), tuple(arch_list))
    by_status: dict[str, list[str]] = {NATIVE: [], PTX: []}
    for e in entries:
        how = entry_runs_on(e, cap)
        if how != NONE:
            by_status[how].append(e.text)
    for status in (NATIVE, PTX):
        if by_status[status]:
            return ArchVerdict(status, cap, tuple(by_status[status]), tuple(arch_list))
    return ArchVerdict(NONE, cap, (), tuple(arch_list))


def parse_version(text: str | None) -> tuple[int, ...] | None:
    """``"580.95.05"`` -> (580, 95, 5); ``"13.0"`` -> (13, 0); None when unparsable."""
    if not text:
        return None
    m = re.match(r"^\s*(\d+(?:\.\d+)*)", str(text))
    return tuple(int(p) for p in m.group(1).split(".")) if m else None


def cuda_int_to_str(value: int | None) -> str | None:
    """CUDA's integer versions (12040, from cuDriverGetVersion or NVML) -> ``"12.4"``."""
    if not value:
        return None
    return f"{value // 1000}.{(value % 1000) // 10}"


@dataclass(frozen=True)
class DriverVerdict:
    ok: bool | None  # None: not enough facts to say
    cuda: str | None
    driver: str | None
    minimum: str | None  # oldest driver for the CUDA major, "525.60.13"
    reason: str


def check_driver(torch_cuda: str | None, driver_version: str | None) -> DriverVerdict:
    """Can a driver of `driver_version` run a torch built with CUDA `torch_cuda`?"""
    cuda_v, drv_v = parse_version(torch_cuda), parse_version(driver_version)
    if cuda_v is None:
        return DriverVerdict(None, torch_cuda, driver_version, None, "torch is not a CUDA build")
    need = DRIVER_MIN_FOR_CUDA_MAJOR.get(cuda_v[0])
    minimum = ".".join(f"{p:02d}" if i else str(p) for i, p in enumerate(need)) if need else None
    if need is None:
        return DriverVerdict(None, torch_cuda, driver_version, None,
                             f"no driver rule for CUDA {cuda_v[0]}.x")
    if drv_v is None:
        return DriverVerdict(None, torch_cuda, driver_version, minimum,
                             "driver version unknown")
    ok = drv_v >= need
    word = "meets" if ok else "is older than"
    return DriverVerdict(ok, torch_cuda, driver_version, minimum,
                         f"driver {driver_version} {word} the R{need[0]} minimum "
                         f"({minimum}) for CUDA {cuda_v[0]}.x")


def ptx_jit_possible(torch_cuda: str | None, driver_cuda: str | None) -> bool | None:
    """PTX written by CUDA X.Y can only be JIT-compiled by a driver that supports CUDA >= X.Y
    (otherwise: "the provided PTX was compiled with an unsupported toolchain")."""
    t, d = parse_version(torch_cuda), parse_version(driver_cuda)
    if t is None or d is None:
        return None
    return d[:2] >= t[:2]


# PyTorch's CUDA wheel indexes, newest first: (CUDA version of the wheel, tag).
WHEEL_INDEXES: list[tuple[tuple[int, int], str]] = [
    ((13, 0), "cu130"), ((12, 8), "cu128"), ((12, 6), "cu126"), ((11, 8), "cu118"),
]
WHEEL_INDEX_URL = "https://download.pytorch.org/whl/{tag}"
NGC_IMAGE = "nvcr.io/nvidia/pytorch:25.11-py3"
NGC_RUN = f"docker run --gpus all --ipc=host -it --rm {NGC_IMAGE}"
JETSON_WHEEL = ("pip install the torch wheel NVIDIA builds for your JetPack release "
                "(docs.nvidia.com/deeplearning/frameworks/install-pytorch-jetson-platform)")


def pick_wheel_index(driver_cuda: str | None,
                     capabilities: list[tuple[int, int]] | None = None) -> str:
    """The PyTorch CUDA wheel tag for this driver and these GPUs: the newest index whose CUDA
    major the driver supports, but at least cu128 for Blackwell (10.x/12.x) and cu126 or older
    for GPUs below 7.5 (torch's cu128 and cu130 wheels dropped Maxwell, Pascal and Volta)."""
    d = parse_version(driver_cuda)
    caps = [tuple(c) for c in (capabilities or [])]
    # Minor-version compatibility: any 12.x wheel runs on a driver that supports 12.0 or later.
    candidates = [tag for need, tag in WHEEL_INDEXES if d is None or d[0] >= need[0]]
    if d is None:
        candidates = [tag for _, tag in WHEEL_INDEXES if tag != "cu130"]
    if any(c < (7, 5) for c in caps):  # torch's cu128+ wheels dropped Maxwell, Pascal, Volta
        candidates = [t for t in candidates if t not in ("cu130", "cu128")]
    if any(c >= (10, 0) for c in caps):
        candidates = [t for t in candidates if t in ("cu130", "cu128")]
    return candidates[0] if candidates else "cu128"


def torch_install_command(platform: dict, driver_cuda: str | None = None,
                          capabilities: list[tuple[int, int]] | None = None) -> str:
    """One line that installs a torch able to use the GPU on this kind of machine."""
    if platform.get("jetson"):
        return JETSON_WHEEL
    if str(platform.get("machine") or "").lower() in ("aarch64", "arm64") \
            and str(platform.get("system") or "Linux") == "Linux":
        return f"use NVIDIA's NGC PyTorch container: {NGC_RUN}"
    tag = pick_wheel_index(driver_cuda, capabilities)
    return f"pip install --force-reinstall torch torchvision --index-url {WHEEL_INDEX_URL.format(tag=tag)}"


def cudnn_version_str(value: int | None) -> str | None:
    """torch.backends.cudnn.version() -> text: 91002 -> "9.10.2", 8907 -> "8.9.7"."""
    if not value:
        return None
    v = int(value)
    if v >= 90000:
        return f"{v // 10000}.{v % 10000 // 100}.{v % 100}"
    return f"{v // 1000}.{v % 1000 // 100}.{v % 100}"
