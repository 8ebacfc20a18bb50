"""The zip reader reads archives the way torch.load does (miniz), not the way Python's zipfile
does, and says where they disagree. Every claim about torch is checked against the real
torch.load with harmless pickles."""
from __future__ import annotations

import io
import pickle
import random
import struct
import warnings
import zipfile

import pytest

torch = pytest.importorskip("torch")

from cvdoctor.checkpoint import inspect_file  # noqa: E402
from cvdoctor.checkpoint.zipreader import ZipError, read_archive  # noqa: E402


def torch_members():
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as z:
        return [(i.filename, z.read(i)) for i in z.infolist()]


def build(members, deflate=()):
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names
        with zipfile.ZipFile(buf, "w") as z:
            for name, data in members:
                z.writestr(zipfile.ZipInfo(name), data,
                           compress_type=zipfile.ZIP_DEFLATED if name in deflate else zipfile.ZIP_STORED)
    return buf.getvalue()


def torch_reads(blob):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(io.BytesIO(blob), weights_only=True)["which"]


def we_read(blob):
    arc = read_archive(io.BytesIO(blob), len(blob))
    e = arc.locate("data.pkl")
    return pickle.loads(blob[e.data_offset:e.data_offset + e.size])["which"]


def test_the_member_torch_reads_matches_torch_for_duplicates_and_case_variants():
    others = [m for m in torch_members() if not m[0].endswith("data.pkl")]
    rng = random.Random(7)
    for _ in range(25):
        k = rng.randint(2, 4)
        dups = [("archive/" + rng.choice(["data.pkl", "DATA.pkl", "Data.PKL"]),
                 pickle.dumps({"which": i}, protocol=2)) for i in range(k)]
        members = others + dups
        rng.shuffle(members)
        blob = build(members)
        assert we_read(blob) == torch_reads(blob)


def test_duplicates_are_reported_with_both_readers_choices(tmp_path):
    others = [m for m in torch_members() if not m[0].endswith("data.pkl")]
    first = pickle.dumps({"which": "first"}, protocol=2)
    last = pickle.dumps({"which": "last"}, protocol=2)
    blob = build([("archive/data.pkl", first)] + others[:4] + [("archive/data.pkl", last)]
                 + others[4:])
    assert torch_reads(blob) == "first"
    with zipfile.ZipFile(io.BytesIO(blob)) as z, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert pickle.loads(z.read("archive/data.pkl"))["which"] == "last"
    (tmp_path / "dup.pt").write_bytes(blob)
    rec = inspect_file(tmp_path / "dup.pt")
    dup = rec["zip"]["duplicate_data_pkl"]
    assert (dup["torch_reads_index"], dup["zipfile_reads_index"]) == (0, 5)
    assert any("2 members named archive/data.pkl" in a for a in rec["zip"]["anomalies"])
    assert len(rec["safety"]["pickles"]) == 2  # both copies are scanned


def test_local_header_name_is_ignored_like_miniz_does(tmp_path):
    data = bytearray(build(torch_members()))
    lh = data.find(b"PK\x03\x04")
    n = struct.unpack("<H", data[lh + 26:lh + 28])[0]
    data[lh + 30:lh + 30 + n] = b"archive/xata.pkl"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert list(torch.load(io.BytesIO(bytes(data)), weights_only=True)) == ["w"]
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(bytes(data))).read("archive/data.pkl")
    (tmp_path / "m.pt").write_bytes(bytes(data))
    rec = inspect_file(tmp_path / "m.pt")
    assert rec["safety"]["verdict"] == "data"
    assert any("local header says 'archive/xata.pkl'" in a for a in rec["zip"]["anomalies"])


def test_torch_does_not_check_crcs_so_deep_does(tmp_path):
    blob = bytearray(build(torch_members()))
    data_start = blob.find(b"archive/data/0") + len("archive/data/0")
    i = blob.find(b"\x00\x00\x00\x00", data_start)
    blob[i] = 0x3F  # one flipped float: silent corruption
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.load(io.BytesIO(bytes(blob)), weights_only=True)  # loads without complaint
    (tmp_path / "rot.pt").write_bytes(bytes(blob))
    assert "crc_mismatch" not in inspect_file(tmp_path / "rot.pt")["zip"]
    deep = inspect_file(tmp_path / "rot.pt", deep=True)["zip"]
    assert deep["crc_mismatch"] and deep["crc_checked"] == 7


@pytest.mark.parametrize("flag,refused", [(0x0001, True), (0x0020, True), (0x0040, True),
                                          (0x0008, False)])
def test_central_flags_that_miniz_refuses(tmp_path, flag, refused):
    data = bytearray(build(torch_members()))
    cd = data.find(b"PK\x01\x02")
    v = struct.unpack("<H", data[cd + 8:cd + 10])[0] | flag
    data[cd + 8:cd + 10] = struct.pack("<H", v)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.load(io.BytesIO(bytes(data)), weights_only=True)
            torch_ok = True
        except RuntimeError:
            torch_ok = False
    assert torch_ok is not refused
    (tmp_path / "f.pt").write_bytes(bytes(data))
    rec = inspect_file(tmp_path / "f.pt")
    assert bool(rec["zip"].get("torch_refuses")) is refused
    assert rec["safety"]["verdict"] == "data"  # still scanned


def test_deflated_members_are_streamed(tmp_path):
    blob = build(torch_members(), deflate={"archive/data.pkl"})
    (tmp_path / "d.pt").write_bytes(blob)
    rec = inspect_file(tmp_path / "d.pt")
    assert rec["zip"]["complete"] and rec["structure"]["tensors"]["w"]["shape"] == [2]


def test_members_outside_the_archive_folder_stop_torch(tmp_path):
    blob = build(torch_members() + [("other/data.pkl", pickle.dumps({"which": 1}))])
    with warnings.catch_warnings(), pytest.raises(RuntimeError, match="not in a subdirectory"):
        warnings.simplefilter("ignore")
        torch.load(io.BytesIO(blob), weights_only=True)
    (tmp_path / "o.pt").write_bytes(blob)
    rec = inspect_file(tmp_path / "o.pt")
    assert "outside the folder archive/" in rec["zip"]["torch_refuses"]
    assert rec["zip"]["hidden_pickles"] == ["other/data.pkl"]


def test_truncated_and_cut_storage(tmp_path):
    blob = build(torch_members())
    with pytest.raises(ZipError, match="end-of-central-directory"):
        read_archive(io.BytesIO(blob[:-30]), len(blob) - 30)
    members = [(n, d[:4] if n.endswith("data/0") else d) for n, d in torch_members()]
    (tmp_path / "cut.pt").write_bytes(build(members))
    rec = inspect_file(tmp_path / "cut.pt")
    assert not rec["zip"]["complete"]
    assert rec["zip"]["problem"] == "storage data/0 has 4 bytes, its tensor needs 8"


def test_a_zip64_archive_from_torch_parses(tmp_path):
    path = tmp_path / "big.pt"
    torch.save({"w": torch.zeros(3)}, path)  # torch always writes zip64 end records
    arc = read_archive(open(path, "rb"), path.stat().st_size)
    assert arc.zip64 and arc.prefix == b"big" and arc.gap_before_directory == 0
