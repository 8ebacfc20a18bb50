"""One image, from its header: what it is and what is wrong with it, without decoding pixels.

Pillow reads the header (format, size, mode, EXIF orientation); `verify()` walks PNG chunks and
their CRCs; a JPEG's last two bytes must be the end-of-image marker FF D9 (a file cut short by a
failed copy or download lacks it, and ultralytics *rewrites* any JPEG that lacks it). `decode`
loads the pixels too, for `--deep`.
"""
from __future__ import annotations

import io
import os
import types
import warnings
from typing import Any

from PIL import Image, UnidentifiedImageError

# ultralytics.data.utils.IMG_FORMATS: the suffixes its loaders list (lower-cased suffix, no dot)
YOLO_SUFFIXES = frozenset({"avif", "bmp", "dng", "heic", "heif", "jp2", "jpeg", "jpg", "mpo",
                           "png", "tif", "tiff", "webp"})
# ...and the Pillow formats its check_image accepts
YOLO_PIL_FORMATS = frozenset({"avif", "bmp", "dng", "heic", "heif", "jp2", "jpeg", "jpg", "mpo",
                              "png", "tif", "tiff", "webp", "jpeg2000"})
# torchvision.datasets.folder.IMG_EXTENSIONS (matched with str.lower().endswith)
TORCHVISION_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff",
                          ".webp")
# Image formats by suffix, loadable or not: a file with one of these that the loader skips is an
# image left out of the dataset (a .gif, .jfif, .heic): worth a warning.
ANY_IMAGE_SUFFIXES = frozenset({
    "apng", "arw", "avif", "bmp", "cr2", "cr3", "dib", "dng", "exr", "gif", "hdr", "heic", "heif",
    "ico", "j2k", "jfif", "jp2", "jpe", "jpeg", "jpg", "jpx", "jxl", "mpo", "nef", "orf", "pbm",
    "pcx", "pgm", "pjp", "pjpeg", "png", "pnm", "ppm", "psd", "raf", "raw", "rw2", "svg", "tga",
    "tif", "tiff", "webp"})
# Files that operating systems and file managers leave in folders: nobody put them there as data
# and every loader skips them, so they are never reported.
OS_METADATA = frozenset({".ds_store", "thumbs.db", "ehthumbs.db", "ehthumbs_vista.db",
                         "desktop.ini", ".directory", ".localized", "icon\r"})
# Side files that are plainly not images: their content is not sniffed.
TEXT_SUFFIXES = frozenset({"txt", "csv", "tsv", "json", "jsonl", "xml", "yaml", "yml", "md", "log",
                           "cache", "npy", "npz", "zip", "tar", "gz", "pdf", "html", "py",
                           "ipynb", "db", "ini"})
# First bytes of image files (for a name without an image suffix).
_IMAGE_MAGIC = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF87a", "GIF"),
                (b"GIF89a", "GIF"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"))
MIN_SIDE = 10  # ultralytics: "image size (h, w) <10 pixels"
ORIENTATION = 0x0112  # EXIF tag 274
JPEG_EOI = b"\xff\xd9"
# Header problems that leave nothing for --deep to decode (the file is already reported).
UNREADABLE_CODES = frozenset({"image.empty", "image.not_image", "image.unreadable", "image.corrupt",
                              "image.truncated", "image.too_large"})
_TAIL_WINDOW = 4096

# First bytes of files that often sit in image folders under an image name.
_NOT_IMAGE = (
    (b"version https://git-lfs", "a Git LFS pointer (the image was never pulled: git lfs pull)"),
    (b"<!doctype html", "an HTML page (a download that saved an error or login page)"),
    (b"<html", "an HTML page (a download that saved an error or login page)"),
    (b"<?xml", "an XML document"),
    (b"%pdf", "a PDF document"),
    (b"pk\x03\x04", "a zip archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"{", "a JSON document"),
    (b"\x00\x05\x16\x07", "a macOS resource fork ('._' file), not an image"),
)


def _is_pillows(func: Any) -> bool:
    return getattr(func, "__module__", None) == Image.__name__ and \
        getattr(func, "__name__", None) == "open"


# Pillow's own open, when nothing had replaced it yet at import (the usual case).
_PILLOW_OPEN = Image.open if _is_pillows(Image.open) else None


def _unwrap_open(opener: Any) -> Any:
    """Follow wrappers of Image.open back to Pillow's function: through `__wrapped__`, closure
    cells, or the wrapper module's globals (where ultralytics keeps the original as
    `_image_open`), several layers deep. None when it cannot be found."""
    for _ in range(8):
        if _is_pillows(opener):
            return opener
        inner = getattr(opener, "__wrapped__", None)
        if inner is None:
            refs = [c.cell_contents for c in (getattr(opener, "__closure__", None) or ())
                    if c.cell_contents is not opener]
            refs += [v for v in (getattr(opener, "__globals__", None) or {}).values()
                     if v is not opener]
            found = next((r for r in refs if _is_pillows(r)), None)
            if found is not None:
                return found
            inner = next((r for r in refs if isinstance(r, types.FunctionType) and
                          r.__module__ != getattr(opener, "__module__", None) and
                          "open" in r.__name__), None)
        if inner is None:
            return None
        opener = inner
    return None


def pil_open(fp: Any) -> Image.Image:
    """Pillow's own `Image.open`, even when another library replaced it in this process.

    Importing ultralytics swaps `PIL.Image.open` for a wrapper that, on a file Pillow cannot
    identify, runs its requirement check (which may try to pip-install a HEIF plugin) and raises
    whatever that raises. A user's test session or notebook may have imported it before cvdoctor
    runs; the dataset checks must neither install anything nor crash on a bad file."""
    opener = Image.open
    if not _is_pillows(opener):
        opener = _PILLOW_OPEN or _unwrap_open(opener) or opener
    return opener(fp)


def suffix(path: str) -> str:
    return path.rpartition(".")[2].lower() if "." in os.path.basename(path) else ""


def skipped_kind(path: str) -> tuple[str, str]:
    """What a file that the loader skips for its name is: ('metadata', '') for OS and hidden
    files (never worth a word), ('image', '') for an image suffix the loader does not list,
    ('image', 'a PNG image without an extension') for image content under another name, and
    ('other', '') for anything else (a README, a CSV: skipping it is harmless)."""
    name = os.path.basename(path)
    if name.startswith(".") or name.lower() in OS_METADATA:
        return "metadata", ""
    suf = suffix(path)
    if suf in ANY_IMAGE_SUFFIXES:
        return "image", ""
    if suf in TEXT_SUFFIXES:
        return "other", ""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return "other", ""
    fmt = next((f for magic, f in _IMAGE_MAGIC if head.startswith(magic)), None)
    if fmt is None and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        fmt = "WebP"
    if fmt:
        named = f"named .{suf}" if suf else "without an extension"
        return "image", f"a {fmt} image {named}"
    return "other", ""


def _sniff(head: bytes) -> str | None:
    low = head.lstrip()[:32].lower()
    for magic, what in _NOT_IMAGE:
        if low.startswith(magic):
            return what
    if head[4:8] == b"ftyp" and head[8:12] not in (b"avif", b"avis", b"heic", b"heix", b"mif1",
                                                   b"msf1", b"heim", b"heis"):
        return "a video (MP4/MOV container)"
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head[:64]):
        return "a text file"
    return None


def inspect(path: str, allowed_formats: frozenset[str] | None = None) -> dict[str, Any]:
    """Header facts and problems of one image file. Never raises for a bad file; problems are
    (code, detail) pairs: image.empty, image.not_image, image.unreadable, image.corrupt,
    image.truncated, image.jpeg_trailing_bytes, image.too_small, image.exif_rotated,
    image.unsupported_format, image.too_large."""
    info: dict[str, Any] = {"format": None, "width": None, "height": None, "mode": None,
                            "orientation": None, "problems": []}
    problems: list[tuple[str, str]] = info["problems"]
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
            if not head:
                problems.append(("image.empty", "0 bytes"))
                return info
            fh.seek(0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    im = pil_open(fh)
                except Image.DecompressionBombError as exc:
                    problems.append(("image.too_large", str(exc).split(". ")[0]))
                    return info
                except Exception as exc:  # noqa: BLE001 - Pillow (or a wrapper) refused it
                    what = _sniff(head)
                    if what:
                        problems.append(("image.not_image", f"the file is {what}"))
                    elif isinstance(exc, (UnidentifiedImageError, OSError)):
                        problems.append(("image.unreadable", "cannot identify image file"))
                    else:
                        problems.append(("image.unreadable", _short(exc)))
                    return info
                fmt = (im.format or "").upper()
                info.update(format=fmt, width=im.size[0], height=im.size[1], mode=im.mode)
                try:
                    info["orientation"] = int(im.getexif().get(ORIENTATION) or 1)
                except Exception:  # noqa: BLE001 - a broken EXIF block is not a broken image
                    info["orientation"] = None
                if fmt == "PNG":  # the one Pillow format whose verify() checks anything (CRCs)
                    fh.seek(0)
                    try:
                        pil_open(fh).verify()
                    except Exception as exc:  # noqa: BLE001 - any verify failure: a bad file
                        problems.append(("image.corrupt", _short(exc)))
                if fmt in ("JPEG", "MPO"):
                    _check_jpeg_tail(fh, problems)
    except OSError as exc:
        problems.append(("image.unreadable", exc.strerror or _short(exc)))
        return info
    w, h = info["width"], info["height"]
    if min(w, h) < MIN_SIDE:
        problems.append(("image.too_small", f"{w}x{h} px"))
    if info["orientation"] not in (None, 1):
        problems.append(("image.exif_rotated", f"EXIF orientation {info['orientation']}"))
    if allowed_formats is not None and info["format"].lower() not in allowed_formats:
        problems.append(("image.unsupported_format", f"{info['format']} content"))
    return info


def _check_jpeg_tail(fh: io.BufferedReader, problems: list[tuple[str, str]]) -> None:
    size = fh.seek(0, os.SEEK_END)
    fh.seek(max(0, size - _TAIL_WINDOW))
    tail = fh.read()
    if tail.endswith(JPEG_EOI):
        return
    at = tail.rfind(JPEG_EOI)
    if at >= 0:
        extra = len(tail) - at - 2
        problems.append(("image.jpeg_trailing_bytes",
                         f"{extra:,} bytes after the JPEG end marker"))
    else:
        problems.append(("image.truncated",
                         "JPEG end marker (FF D9) missing: the file is cut short"))


def unreadable(info: dict[str, Any]) -> bool:
    return any(code in UNREADABLE_CODES for code, _ in info["problems"])


def decode(path: str) -> list[tuple[str, str]]:
    """Decode every pixel (for --deep). Problems as in `inspect`, from the decoder's own error."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pil_open(path) as im:
                im.load()
    except Image.DecompressionBombError as exc:
        return [("image.too_large", str(exc).split(". ")[0])]
    except UnidentifiedImageError:
        return [("image.unreadable", "cannot identify image file")]
    except OSError as exc:
        text = _short(exc)
        if "truncated" in text:
            return [("image.truncated", text)]
        return [("image.corrupt", text)]
    except Exception as exc:  # noqa: BLE001 - a decoder bug on this file is this file's problem
        return [("image.corrupt", _short(exc))]
    return []


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
