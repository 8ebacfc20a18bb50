"""Bad input to cvdoctor.data: one clear DatasetError line or an issue, never a hang or a crash;
and the --deep worker pool (timeouts, dying workers)."""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from cvdoctor.data import DatasetError, inspect_dataset
from cvdoctor.data.deep import decode_all
from datasets import (codes, crashing_decoder, examples, hanging_decoder, imagefolder_dataset,
                      make_image, yolo_dataset)


@pytest.fixture
def deadline():
    """A test that would hang fails after 60 s instead (a FIFO opened for reading blocks)."""
    def boom(*_):
        raise TimeoutError("the inspection hung")
    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and "Traceback" not in text
    return text


@pytest.mark.parametrize("make,needle", [
    (lambda p: p / "nope", "no such file or directory"),
    (lambda p: (p / "notes.txt").write_text("hi") and p / "notes.txt", "not a data.yaml"),
    (lambda p: (p / "d.yaml").write_text("train: [unclosed\n") and p / "d.yaml",
     "not valid YAML (line 2"),
    (lambda p: (p / "d.yaml").write_text("- a\n- b\n") and p / "d.yaml", "must be a mapping"),
    (lambda p: (p / "d.yaml").write_text("# nothing\n") and p / "d.yaml", "must be a mapping"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "nothing recognizable"),
])
def test_bad_targets_raise_one_line(tmp_path, make, needle):
    target = make(tmp_path)
    with pytest.raises(DatasetError) as exc:
        inspect_dataset(str(target))
    assert needle in one_line(exc) and str(target) in str(exc.value)


def test_fifo_as_target(tmp_path, deadline):
    os.mkfifo(tmp_path / "data.yaml")
    with pytest.raises(DatasetError, match="FIFO"):
        inspect_dataset(str(tmp_path / "data.yaml"))


def test_symlink_loop_as_target(tmp_path):
    os.symlink(tmp_path / "b", tmp_path / "a")
    os.symlink(tmp_path / "a", tmp_path / "b")
    with pytest.raises(DatasetError, match="symbolic link loop"):
        inspect_dataset(str(tmp_path / "a"))


def test_several_yaml_files(tmp_path):
    yolo_dataset(tmp_path)
    (tmp_path / "data.yaml").rename(tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text("x: 1\n")
    with pytest.raises(DatasetError, match="2 YAML files"):
        inspect_dataset(str(tmp_path))


def test_images_and_labels_without_yaml(tmp_path):
    yolo_dataset(tmp_path)
    (tmp_path / "data.yaml").unlink()
    with pytest.raises(DatasetError, match="no data.yaml"):
        inspect_dataset(str(tmp_path))


def test_bad_options(tmp_path):
    root = yolo_dataset(tmp_path)
    with pytest.raises(DatasetError, match="unknown task"):
        inspect_dataset(str(root), task="classification")
    with pytest.raises(DatasetError, match="1 or more"):
        inspect_dataset(str(root), num_classes=0)
    with pytest.raises(DatasetError, match="ImageFolder"):
        inspect_dataset(str(root / "data.yaml"), task="classify")


def test_special_files_inside_a_dataset_are_reported_not_opened(tmp_path, deadline):
    root = yolo_dataset(tmp_path)
    os.mkfifo(root / "images" / "train" / "pipe.jpg")
    os.mkfifo(root / "labels" / "train" / "im000.txt.fifo")
    os.symlink(root / "nowhere.jpg", root / "images" / "train" / "dangling.jpg")
    os.symlink(root / "images", root / "images" / "train" / "loop")
    result = inspect_dataset(str(root))
    assert examples(result, "fs.special")[0]["file"].endswith("pipe.jpg")
    assert examples(result, "fs.broken_link")[0]["file"].endswith("dangling.jpg")
    assert "fs.symlink_loop" in codes(result)
    # the link is walked once: images/train/loop/val adds val's 2 images, loop/train is the loop
    assert result["splits"]["train"]["images"] == 8


def test_fifo_label_file(tmp_path, deadline):
    root = yolo_dataset(tmp_path)
    label = root / "labels" / "train" / "im000.txt"
    label.unlink()
    os.mkfifo(label)
    result = inspect_dataset(str(root))
    assert examples(result, "label.unreadable")[0]["file"] == str(label)


def test_unreadable_label_file(tmp_path, monkeypatch):
    # root reads every file, so the permission error is injected where the library reads
    from cvdoctor.data import walk
    root = yolo_dataset(tmp_path)
    real = walk.read_text
    victim = str(root / "labels" / "train" / "im003.txt")

    def read_text(path, *a, **kw):
        if path == victim:
            raise PermissionError(13, "Permission denied", path)
        return real(path, *a, **kw)

    monkeypatch.setattr(walk, "read_text", read_text)
    ex = examples(inspect_dataset(str(root)), "label.unreadable")[0]
    assert ex == {"file": victim, "detail": "Permission denied", "split": "train"}


def test_huge_label_file_is_not_read(tmp_path, monkeypatch):
    from cvdoctor.data import walk
    monkeypatch.setattr(walk, "TEXT_LIMIT", 64)
    root = yolo_dataset(tmp_path)
    (root / "labels" / "train" / "im000.txt").write_text("0 0.5 0.5 0.1 0.1\n" * 10)
    ex = examples(inspect_dataset(str(root)), "label.unreadable")[0]
    assert "limit" in ex["detail"]


# --- --deep ------------------------------------------------------------------------------------

def png_with_garbage_pixels(path: Path) -> None:
    """A PNG whose compressed pixel data is garbage under a correct CRC: its header and
    verify() pass, only decoding finds it."""
    import struct
    import zlib
    data = bytearray(path.read_bytes())
    at = data.index(b"IDAT") - 4
    length = struct.unpack(">I", data[at:at + 4])[0]
    body = bytes(data[at + 8:at + 8 + 2]) + os.urandom(length - 2)  # keep the zlib header
    crc = struct.pack(">I", zlib.crc32(b"IDAT" + body) & 0xFFFFFFFF)
    data[at + 8:at + 12 + length] = body + crc
    path.write_bytes(bytes(data))


@pytest.mark.slow
def test_deep_decodes_what_headers_cannot_see(tmp_path):
    root = imagefolder_dataset(tmp_path)
    bad = make_image(root / "train" / "dog" / "dog9.png", 77)
    png_with_garbage_pixels(bad)
    cheap = inspect_dataset(str(root))
    assert {"image.truncated", "image.corrupt"} & codes(cheap) == set()
    deep = inspect_dataset(str(root), deep=True, workers=2)
    ex = examples(deep, "image.corrupt")[0]
    assert ex["file"] == str(bad) and ex["deep"] is True and deep["decoded"] == 19


@pytest.mark.slow
def test_deep_pool_survives_a_hanging_and_a_crashing_file(tmp_path):
    paths = [str(tmp_path / n) for n in ("a.jpg", "hang.jpg", "b.jpg", "c.jpg")]
    out = dict(decode_all(paths, workers=2, timeout_s=3, decoder=hanging_decoder))
    assert out[paths[1]][0][0] == "image.decode_timeout"
    assert all(out[p] == [] for p in paths if "hang" not in p)
    paths = [str(tmp_path / n) for n in ("a.jpg", "b.jpg", "crash.jpg", "c.jpg", "d.jpg")]
    out = dict(decode_all(paths, workers=2, timeout_s=20, decoder=crashing_decoder))
    assert out[paths[2]] == [("image.decoder_crashed", "the decoding worker process died on it")]
    assert all(out[p] == [] for p in paths if "crash" not in p)


def test_split_through_a_symlink_loop_is_missing_not_a_crash(tmp_path):
    os.symlink(tmp_path / "a", tmp_path / "b")
    os.symlink(tmp_path / "b", tmp_path / "a")
    (tmp_path / "data.yaml").write_text("train: a\nval: b\nnames: [x]\n")
    result = inspect_dataset(str(tmp_path / "data.yaml"))
    assert result["issues"]["yaml.split_missing"]["count"] == 2


@pytest.mark.parametrize("seed", range(12))
def test_garbage_never_raises_anything_but_dataset_error(tmp_path, seed):
    """Random bytes in labels, images and yaml values: issues or one DatasetError, no traceback."""
    import random
    rng = random.Random(seed)
    root = yolo_dataset(tmp_path, rng.choice(["detect", "segment", "pose", "obb"]))
    for path in rng.sample(sorted(root.rglob("*.*")), 5):
        if path.name != "data.yaml":
            path.write_bytes(rng.randbytes(rng.randint(0, 300)))
    odd = rng.choice(["names: 5", "train: [1, 2]", "path: 123", "nc: [1]", "kpt_shape: x",
                      "val: {a: 1}", "names: {x: a}", "train: ''"])
    (root / "data.yaml").write_text((root / "data.yaml").read_text() + odd + "\n")
    task = rng.choice([None, "detect", "segment", "pose", "obb"])
    try:
        result = inspect_dataset(str(root / "data.yaml"), task=task)
    except DatasetError as exc:
        assert "\n" not in str(exc)
    else:
        import json
        json.dumps(result)  # plain data all the way down


def test_places_names_the_first_few_and_counts_the_rest():
    from cvdoctor.data.issues import Issues, places
    issues = Issues()
    for n in range(9):
        issues.add("row.x", f"/d/labels/a{n}.txt", n + 1)
    assert places(issues.to_dict()["row.x"], relative_to="/d") == \
        "labels/a0.txt:1, labels/a1.txt:2, labels/a2.txt:3 and 6 more"
    assert places({"count": 1, "examples": [{"file": "/d/x.jpg"}]}) == "/d/x.jpg"


@pytest.mark.slow
def test_deep_does_not_count_a_file_the_header_already_reported(tmp_path):
    root = yolo_dataset(tmp_path)
    img = root / "images" / "train" / "im000.jpg"
    img.write_bytes(img.read_bytes()[:-200])
    result = inspect_dataset(str(root), deep=True, workers=2)
    assert result["issues"]["image.truncated"]["count"] == 1
    assert result["decoded"] == 7  # the other seven images


def test_a_process_wide_image_open_patch_is_bypassed(tmp_path, monkeypatch):
    """Importing ultralytics replaces PIL.Image.open with a wrapper that, on a file Pillow cannot
    identify, runs a requirement check (pip) and raises what that raises. The checks use
    Pillow's own open: no install attempt, no crash. The wrapper is modelled on
    ultralytics.utils.patches (the original kept as a module global), imported after cvdoctor
    and stacked on whatever Image.open already is."""
    import types

    from PIL import Image

    from cvdoctor.data import images
    fake = types.ModuleType("fake_image_patches")
    fake.calls = []
    exec(  # noqa: S102 - the module's source, as a library would ship it
        "from PIL import Image\n"
        "_image_open = Image.open\n"
        "def image_open(filename, *args, **kwargs):\n"
        "    calls.append(filename)\n"
        "    try:\n"
        "        return _image_open(filename, *args, **kwargs)\n"
        "    except Image.UnidentifiedImageError:\n"
        "        raise ModuleNotFoundError(\"No module named 'pi_heif'\") from None\n",
        fake.__dict__)
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    monkeypatch.setattr(Image, "open", fake.image_open)
    root = imagefolder_dataset(tmp_path)
    (root / "train" / "cat" / "junk.jpg").write_bytes(os.urandom(200))
    for captured in (images._PILLOW_OPEN, None):  # imported before the patch, or after it
        monkeypatch.setattr(images, "_PILLOW_OPEN", captured)
        result = inspect_dataset(str(root))
        assert examples(result, "image.unreadable")[0]["file"].endswith("junk.jpg")
        assert result["stats"]["images"] > 0 and fake.calls == []


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{a}: &{a} [{', '.join([f'*{p}'] * 9)}]\n" for p, a in zip("abcdefgh", "bcdefghi"))


def bomb_yaml(levels_in_names: str) -> str:
    """A YAML alias bomb (9 levels of 9 aliases: 387 million 'x' once expanded) with `names:`
    pointing at one of its levels."""
    return BOMB + f"train: images/train\nval: images/val\nnames: *{levels_in_names}\n"


def test_alias_bomb_is_one_line_in_bounded_time(tmp_path, deadline):
    (tmp_path / "data.yaml").write_text(bomb_yaml("i"))
    with pytest.raises(DatasetError) as exc:
        inspect_dataset(str(tmp_path / "data.yaml"))
    assert "alias bomb" in one_line(exc)


def test_alias_bomb_small_enough_to_read_is_a_names_problem(tmp_path, deadline):
    """Aliases that expand to less than the limit: names whose entries are lists, said in one
    short line; nothing stringifies the nested lists."""
    root = yolo_dataset(tmp_path)
    text = "".join(ln + "\n" for ln in BOMB.splitlines()[:5])  # a..e: 9**5 'x' under names
    (root / "data.yaml").write_text(text + "train: images/train\nval: images/val\nnames: *e\n")
    result = inspect_dataset(str(root / "data.yaml"))
    detail = examples(result, "yaml.names_not_scalar")[0]["detail"]
    assert detail.startswith("names[0] is a list") and "(9 such entries)" in detail
    assert len(detail) < 200


@pytest.mark.parametrize("text,needle", [
    ("train: a\nval: b\nnames: &n [x, *n]\n", "contain itself"),
    ("train: a\nval: b\nnames: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    ("train: a\nval: b\nnc: " + "1" * 5000 + "\n", "digits"),
    ("train: a\nval: b\nnames: [" + ", ".join(["*s"] * 400) + "]\ns: &s " + "x" * 50000 + "\n",
     "not valid YAML"),  # an alias used before its anchor
    ("s: &s " + "x" * 50000 + "\ntrain: a\nval: b\nnames: [" + ", ".join(["*s"] * 400) + "]\n",
     "alias bomb"),  # 400 x 50,000 characters
])
def test_yaml_that_would_hang_or_crash_is_one_line(tmp_path, deadline, text, needle):
    (tmp_path / "data.yaml").write_text(text)
    with pytest.raises(DatasetError) as exc:
        inspect_dataset(str(tmp_path / "data.yaml"))
    assert needle in one_line(exc)


def test_alias_bomb_through_the_command_line_in_bounded_memory(tmp_path):
    """The whole command, in a process limited to 1 GiB of address space and 60 s: exit 2 and
    one line (it used to take over a minute and 1.9 GB)."""
    import resource
    import subprocess
    (tmp_path / "data.yaml").write_text(bomb_yaml("i"))

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    cli = "from cvdoctor.cli import main; main()"
    proc = subprocess.run([sys.executable, "-c", cli, "data", str(tmp_path / "data.yaml")],
                          capture_output=True, text=True, timeout=60, preexec_fn=limit)
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "alias bomb" in lines[0]


def test_special_files_of_two_kinds_are_each_named(tmp_path, deadline):
    """A FIFO is called a FIFO even when a device link comes first."""
    from cvdoctor.data import wording
    root = yolo_dataset(tmp_path)
    os.symlink("/dev/null", root / "images" / "train" / "a_null.jpg")
    os.mkfifo(root / "images" / "train" / "b_pipe.jpg")
    result = inspect_dataset(str(root))
    assert result["issues"]["fs.special"]["tally"] == {"a character device": 1,
                                                       "a FIFO (named pipe)": 1}
    text = wording.special_files(result)
    assert "a_null.jpg (a character device)" in text and "b_pipe.jpg (a FIFO" in text
    os.unlink(root / "images" / "train" / "a_null.jpg")
    text = wording.special_files(inspect_dataset(str(root)))
    assert text == "1 FIFO (named pipe): images/train/b_pipe.jpg"


class _DiesWhileSubmitting:
    """Stands in for a ProcessPoolExecutor whose worker just died: its own thread has closed the
    queues, so submit fails the way CPython's does in that window (the race CI once hit)."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self._processes: dict = {}

    def submit(self, fn, path):
        raise self.error

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


@pytest.mark.parametrize("error", [OSError("handle is closed"),
                                   RuntimeError("cannot schedule new futures after shutdown")])
def test_a_pool_that_dies_while_submitting_is_restarted_not_raised(tmp_path, monkeypatch, error):
    from concurrent.futures import Future

    from cvdoctor.data import deep
    made = []

    def new(self):
        made.append(1)
        if len(made) == 1:  # the first pool dies under the first submit; the rest are healthy
            return _DiesWhileSubmitting(error)
        return _Inline(self.fn)

    class _Inline(_DiesWhileSubmitting):
        def __init__(self, fn):
            super().__init__(error)
            self.fn = fn

        def submit(self, fn, path):
            done: Future = Future()
            done.set_result(fn(path))
            return done

    monkeypatch.setattr(deep._Pool, "_new", new)
    paths = [str(tmp_path / n) for n in ("a.jpg", "b.jpg", "c.jpg")]
    out = dict(decode_all(paths, workers=1, timeout_s=5, decoder=lambda p: []))
    assert out == {p: [] for p in paths} and len(made) >= 2
