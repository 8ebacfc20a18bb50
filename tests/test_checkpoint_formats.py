"""Formats from bytes, safetensors and npy header checks, header-only inspection of a multi-GB
file, and bad input (directories, FIFOs, devices, symlink loops) that must never hang."""
from __future__ import annotations

import collections
import io
import json
import os
import pickle
import struct
import zlib

import pytest

torch = pytest.importorskip("torch")

from cvdoctor.checkpoint import inspect_file  # noqa: E402


def safetensors_bytes(header: dict, data: bytes, pad: bytes = b"") -> bytes:
    raw = json.dumps(header).encode() + pad
    return struct.pack("<Q", len(raw)) + raw + data


def sparse_checkpoint(path, nbytes: int) -> None:
    """A torch zip archive with one float32 tensor of `nbytes`, written as a hole (no data is
    written, so a 3 GB file costs nothing); its data.pkl is what torch.save would write."""
    numel = nbytes // 4
    storage = object()

    class Tensor:
        def __reduce__(self):
            return (torch._utils._rebuild_tensor_v2,
                    (storage, 0, (numel,), (1,), False, collections.OrderedDict()))

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", numel) if obj is storage else None

    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump({"huge.weight": Tensor()})
    members = [("big/data.pkl", buf.getvalue()), ("big/data/0", None), ("big/version", b"3\n"),
               ("big/byteorder", b"little")]
    central = []
    with open(path, "wb") as f:
        for name, data in members:
            offset = f.tell()
            size = nbytes if data is None else len(data)
            crc = 0 if data is None else zlib.crc32(data)
            f.write(struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 0, 0, 0, crc, size, size,
                                len(name), 0) + name.encode())
            if data is None:
                f.seek(nbytes, 1)
            else:
                f.write(data)
            central.append(struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 0, 0, 0,
                                       crc, size, size, len(name), 0, 0, 0, 0, 0, offset)
                           + name.encode())
        cd_at = f.tell()
        cd = b"".join(central)
        f.write(cd + struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(members), len(members),
                                 len(cd), cd_at, 0))


# --- formats -------------------------------------------------------------------------------------

@pytest.mark.parametrize("content,kind", [
    (b"", "empty"),
    (b"<!DOCTYPE html><html><body>404</body></html>", "html"),
    (b'<?xml version="1.0"?><Error><Code>AccessDenied</Code></Error>', "xml"),
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"a" * 64 + b"\nsize 12\n",
     "lfs-pointer"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "image"),
    (b"GGUF\x03\x00\x00\x00" + b"\x00" * 40, "gguf"),
    (b"just some notes\n", "text"),
    (bytes(range(256)), "unknown"),
])
def test_what_the_bytes_are(tmp_path, content, kind):
    (tmp_path / "f.pth").write_bytes(content)
    assert inspect_file(tmp_path / "f.pth")["kind"] == kind


def test_a_protocol_0_pickle_is_recognized_although_it_looks_like_text(tmp_path):
    (tmp_path / "p.pkl").write_bytes(pickle.dumps({"a": [1, 2]}, protocol=0))
    rec = inspect_file(tmp_path / "p.pkl")
    assert (rec["kind"], rec["format"], rec["safety"]["verdict"]) == ("pickle", "plain-pickle", "data")


# --- safetensors ---------------------------------------------------------------------------------

GOOD = {"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
        "b": {"dtype": "F16", "shape": [4], "data_offsets": [16, 24]},
        "__metadata__": {"format": "pt"}}


@pytest.mark.parametrize("header,data,problem", [
    (GOOD, bytes(24), None),
    (GOOD, bytes(20), "tensor data ends at byte 24 but only 20 bytes follow the header"),
    ({"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}}, bytes(12),
     "a: F32 x [2, 2] needs 16 bytes, its offsets span 12"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
      "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12), "overlaps"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, bytes(16), "8-byte hole"),
    ({"a": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 1]}}, bytes(1), "unknown dtype"),
    ({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, bytes(4), "not a list of sizes"),
])
def test_safetensors_headers(tmp_path, header, data, problem):
    (tmp_path / "m.safetensors").write_bytes(safetensors_bytes(header, data))
    st = inspect_file(tmp_path / "m.safetensors")["safetensors"]
    if problem is None:
        assert st["complete"] and st["tensors"] == 2 and "trailing_bytes" not in st
    else:
        assert not st["complete"] and problem in st["problem"]


def test_safetensors_trailing_bytes_header_length_and_json(tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes(safetensors_bytes(GOOD, bytes(24) + b"junk"))
    assert inspect_file(path)["safetensors"]["trailing_bytes"] == 4
    path.write_bytes(struct.pack("<Q", 200 * 1024 ** 2) + b"{" + bytes(100))
    assert "100 MB limit" in inspect_file(path)["safetensors"]["problem"]
    raw = b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "a": 1}'
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(4))
    assert "duplicate tensor names" in inspect_file(path)["safetensors"]["problem"]
    path.write_bytes(struct.pack("<Q", 5) + b"{nope" + bytes(4))
    assert inspect_file(path)["safetensors"]["malformed"]


def test_safetensors_structure_comes_from_the_header(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(3, 4, dtype=torch.bfloat16)}, tmp_path / "m.safetensors")
    st = inspect_file(tmp_path / "m.safetensors")["structure"]
    assert st["tensors"]["w"]["shape"] == [3, 4] and st["tensors"]["w"]["dtype"] == "bfloat16"


# --- npy -----------------------------------------------------------------------------------------

def test_npy_numeric_and_truncated(tmp_path):
    np = pytest.importorskip("numpy")
    np.save(tmp_path / "a.npy", np.ones((10, 10), dtype=np.float64))
    rec = inspect_file(tmp_path / "a.npy")
    assert rec["npy"][0]["shape"] == [10, 10] and not rec["npy"][0]["object"]
    data = (tmp_path / "a.npy").read_bytes()
    (tmp_path / "a.npy").write_bytes(data[:-100])
    assert "needs 800 bytes, 700 present" in inspect_file(tmp_path / "a.npy")["npy_problem"]


# --- big files: the header is enough ---------------------------------------------------------------

def test_a_multi_gb_checkpoint_is_described_from_its_header(tmp_path):
    path = tmp_path / "big.pt"
    sparse_checkpoint(path, 3 * 1024 ** 3)
    assert path.stat().st_size > 3 * 1024 ** 3
    assert path.stat().st_blocks * 512 < 1024 ** 2  # nothing was written: a hole
    rec = inspect_file(path)
    assert rec["zip"]["complete"] and rec["safety"]["verdict"] == "data"
    assert rec["structure"]["tensors"]["huge.weight"]["shape"] == [3 * 1024 ** 3 // 4]
    assert path.stat().st_blocks * 512 < 1024 ** 2


# --- bad input never hangs ---------------------------------------------------------------------------

def test_directories_fifos_devices_and_links(tmp_path):
    assert inspect_file(tmp_path)["kind"] == "directory"
    fifo = tmp_path / "pipe.pt"
    os.mkfifo(fifo)
    rec = inspect_file(fifo)  # opening a FIFO for reading would block until a writer comes
    assert rec["kind"] == "special" and "FIFO" in rec["error"]
    rec = inspect_file("/dev/zero")
    assert rec["kind"] == "special" and "character device" in rec["error"]
    loop = tmp_path / "loop.pt"
    os.symlink(loop, loop)
    assert inspect_file(loop)["kind"] == "unreadable"
    dangling = tmp_path / "dangling.pt"
    os.symlink(tmp_path / "nowhere.pt", dangling)
    assert inspect_file(dangling)["kind"] == "missing"
    assert inspect_file(tmp_path / "absent.pt")["kind"] == "missing"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(tmp_path):
    path = tmp_path / "secret.pt"
    torch.save({"w": torch.zeros(1)}, path)
    path.chmod(0)
    assert inspect_file(path)["kind"] == "unreadable"
