"""The CUDA arch and driver rules as tables (cvdoctor/archcompat.py)."""
from __future__ import annotations

import pytest

from cvdoctor.archcompat import (NATIVE, NONE, PTX, UNKNOWN, check_arch, check_driver,
                                 cuda_int_to_str, cudnn_version_str, parse_entry,
                                 pick_wheel_index, ptx_jit_possible, torch_install_command)

OLD_WHEEL = ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90", "compute_90"]
CU130_WHEEL = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]
NGC_2511 = ["sm_80", "sm_86", "sm_90", "sm_100", "sm_110", "sm_120", "compute_120"]


@pytest.mark.parametrize("text, kind, cap, suffix", [
    ("sm_90", "sm", (9, 0), ""),
    ("sm_86", "sm", (8, 6), ""),
    ("sm_120", "sm", (12, 0), ""),
    ("sm_121", "sm", (12, 1), ""),
    ("compute_90", "compute", (9, 0), ""),
    ("sm_90a", "sm", (9, 0), "a"),
    ("sm_100f", "sm", (10, 0), "f"),
    ("compute_120f", "compute", (12, 0), "f"),
])
def test_parse_entry(text, kind, cap, suffix):
    e = parse_entry(text)
    assert (e.kind, e.capability, e.suffix) == (kind, cap, suffix)


@pytest.mark.parametrize("text", ["sm_", "gfx90a", "sm_9", "compute_x", ""])
def test_parse_entry_rejects_unknown(text):
    assert parse_entry(text) is None


@pytest.mark.parametrize("device, arch_list, status, matched", [
    # The table.
    ((12, 1), ["sm_120"], NATIVE, ("sm_120",)),          # DGX Spark GB10: torch warns, CUDA runs
    ((12, 0), OLD_WHEEL, PTX, ("compute_90",)),          # RTX 5090 on an old wheel
    ((7, 0), CU130_WHEEL, NONE, ()),                     # V100 on a CUDA 13 wheel
    ((9, 0), ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120", "compute_120"], NATIVE,
     ("sm_90",)),                                        # H100 on cu128
    ((12, 1), NGC_2511, NATIVE, ("sm_120",)),            # GB10 in the NGC container
    # Cubins: same major, minor >= entry's minor.
    ((8, 6), ["sm_80"], NATIVE, ("sm_80",)),
    ((8, 9), ["sm_80", "sm_86"], NATIVE, ("sm_80", "sm_86")),
    ((8, 0), ["sm_86"], NONE, ()),                       # a newer minor does not run on older
    ((9, 0), ["sm_80", "sm_86"], NONE, ()),              # no cubin crosses a major
    ((10, 0), ["sm_90"], NONE, ()),
    ((12, 0), ["sm_100"], NONE, ()),
    # PTX: any device at or above the entry.
    ((9, 0), ["compute_90"], PTX, ("compute_90",)),
    ((8, 6), ["compute_90"], NONE, ()),
    ((12, 0), ["sm_90", "compute_80"], PTX, ("compute_80",)),
    ((9, 0), ["sm_90", "compute_90"], NATIVE, ("sm_90",)),   # a cubin beats PTX
    # Arch-specific "a": exactly that capability.
    ((9, 0), ["sm_90a"], NATIVE, ("sm_90a",)),
    ((10, 0), ["sm_100a"], NATIVE, ("sm_100a",)),
    ((10, 3), ["sm_100a"], NONE, ()),
    ((12, 1), ["sm_120a"], NONE, ()),
    ((10, 0), ["sm_90a"], NONE, ()),
    ((10, 0), ["compute_90a"], NONE, ()),
    # Family-specific "f": its own major family from that minor up, never another major.
    ((10, 3), ["sm_100f"], NATIVE, ("sm_100f",)),
    ((11, 0), ["sm_100f"], NONE, ()),
    ((12, 1), ["sm_120f"], NATIVE, ("sm_120f",)),
    ((12, 0), ["sm_121f"], NONE, ()),
    ((12, 1), ["compute_120f"], PTX, ("compute_120f",)),
    ((13, 0), ["compute_120f"], NONE, ()),
    # Nothing parsable: cannot say.
    ((9, 0), [], UNKNOWN, ()),
])
def test_check_arch_table(device, arch_list, status, matched):
    verdict = check_arch(device, arch_list)
    assert verdict.status == status
    assert verdict.matched == matched


def test_describe_names_the_error_users_see():
    assert "no kernel image is available" in check_arch((7, 0), CU130_WHEEL).describe()
    assert "JIT" in check_arch((12, 0), OLD_WHEEL).describe()


@pytest.mark.parametrize("torch_cuda, driver, ok, minimum", [
    ("13.0", "535.183.01", False, "580.65.06"),   # CUDA 13 wheel on R535
    ("13.0", "580.95.05", True, "580.65.06"),     # DGX Spark
    ("13.2", "575.57.08", False, "580.65.06"),
    ("12.8", "525.60.13", True, "525.60.13"),     # minor-version compatibility
    ("12.8", "520.61.05", False, "525.60.13"),
    ("12.4", "570.124.06", True, "525.60.13"),
    ("11.8", "450.80.02", True, "450.80.02"),
    ("11.8", "440.33.01", False, "450.80.02"),
])
def test_driver_rule_table(torch_cuda, driver, ok, minimum):
    verdict = check_driver(torch_cuda, driver)
    assert (verdict.ok, verdict.minimum) == (ok, minimum)
    assert f"R{minimum.split('.')[0]}" in verdict.reason


@pytest.mark.parametrize("torch_cuda, driver", [(None, "570.1"), ("12.8", None), ("10.2", "440.1")])
def test_driver_rule_without_enough_facts_says_nothing(torch_cuda, driver):
    assert check_driver(torch_cuda, driver).ok is None


@pytest.mark.parametrize("torch_cuda, driver_cuda, expected", [
    ("12.4", "12.8", True), ("12.8", "12.8", True), ("12.8", "12.4", False),
    ("13.0", "12.9", False), (None, "12.8", None),
])
def test_ptx_jit_needs_a_driver_as_new_as_the_toolkit(torch_cuda, driver_cuda, expected):
    assert ptx_jit_possible(torch_cuda, driver_cuda) is expected


@pytest.mark.parametrize("driver_cuda, caps, tag", [
    ("13.0", [(9, 0)], "cu130"),
    ("12.2", [(8, 0)], "cu128"),      # any 12.x wheel runs on a 12.x driver
    ("12.8", [(12, 0)], "cu128"),     # Blackwell needs cu128+
    ("13.0", [(7, 0)], "cu126"),      # Volta is gone from cu128 and cu130
    ("11.4", [(7, 5)], "cu118"),
    (None, [], "cu128"),
])
def test_wheel_index_table(driver_cuda, caps, tag):
    assert pick_wheel_index(driver_cuda, caps) == tag


@pytest.mark.parametrize("platform, expected", [
    ({"machine": "x86_64", "system": "Linux"}, "download.pytorch.org/whl/cu128"),
    ({"machine": "aarch64", "system": "Linux"}, "nvcr.io/nvidia/pytorch"),
    ({"machine": "aarch64", "system": "Linux", "jetson": "R36.4.0"}, "JetPack"),
])
def test_install_command_follows_the_platform(platform, expected):
    assert expected in torch_install_command(platform, "12.8", [(9, 0)])


@pytest.mark.parametrize("value, text", [(91002, "9.10.2"), (90100, "9.1.0"), (8907, "8.9.7"),
                                         (None, None)])
def test_cudnn_version_text(value, text):
    assert cudnn_version_str(value) == text


def test_cuda_int_to_str():
    assert cuda_int_to_str(12040) == "12.4"
    assert cuda_int_to_str(13000) == "13.0"
    assert cuda_int_to_str(None) is None
