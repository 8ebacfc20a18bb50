"""Containment of the process that runs ultralytics (`cvdoctor.yolo.probe`).

Installed before ultralytics is imported, in that process only:

- environment: `YOLO_OFFLINE=1`, `YOLO_AUTOINSTALL=False`, `YOLO_VERBOSE=False`, settings in a
  temporary `YOLO_CONFIG_DIR` (a copy of the user's settings file, with `sync` off, so datasets
  and weights resolve as they would for the user), matplotlib's cache in the same folder;
- network: every `connect`/`sendto` on an internet socket and every name lookup raises
  `NetworkBlocked` and is recorded (a loopback bind, such as urllib3's IPv6 probe, is no traffic);
  with `strict=True` even creating an internet socket raises (the tests' proof that nothing tries);
- downloads: ultralytics' download helpers raise `DownloadBlocked` naming the URL or file, so a
  missing `yolov8n.pt` is reported, never fetched, and the font check never reaches the network;
- writes: `open()` for writing and file removal outside the allowed folders (the temporary folder)
  raise `PermissionError` and are recorded, so nothing of the user's is changed (ultralytics
  deletes a corrupt cached weights file by bare name, rewrites corrupt JPEGs, writes caches).
"""
from __future__ import annotations

import builtins
import io
import json
import os
import shutil
import socket
import sys
import traceback
from pathlib import Path
from typing import Any

# How every refused write begins (checks read it to tell a refused write from other errors).
REFUSED_WRITE = "cvdoctor keeps your files unchanged"

LOOPBACK = {"127.0.0.1", "::1", "localhost", "0.0.0.0", "::"}
INTERNET_FAMILIES = {socket.AF_INET, socket.AF_INET6}
DOWNLOAD_FUNCS = ("safe_download", "download", "get_github_assets", "attempt_download_asset",
                  "is_url", "check_font", "check_requirements", "check_pip_update_available")


class NetworkBlocked(OSError):
    """A connection cvdoctor refused: the doctor never goes online."""


class DownloadBlocked(ConnectionError):
    """ultralytics wanted to download something; it is reported instead."""

    def __init__(self, what: str, via: str):
        super().__init__(f"cvdoctor blocked a download ({via}): {what}")
        self.what = what
        self.via = via


class Containment:
    def __init__(self, tmp: Path, allowed_write_roots: list[Path], strict_sockets: bool = False):
        self.tmp = tmp
        self.allowed = [p.resolve() for p in allowed_write_roots]
        self.strict_sockets = strict_sockets
        self.network: list[dict[str, Any]] = []
        self.downloads: list[dict[str, Any]] = []
        self.writes: list[dict[str, Any]] = []
        self.installed = False

    # --- records ---------------------------------------------------------------------------
    def _caller(self) -> str:
        frames = traceback.extract_stack(limit=12)[:-3]
        for f in reversed(frames):
            if "cvdoctor/yolo/contain" not in f.filename.replace(os.sep, "/"):
                return f"{f.filename}:{f.lineno} in {f.name}"
        return "?"

    def record_network(self, what: str) -> None:
        self.network.append({"what": what, "caller": self._caller()})

    def summary(self) -> dict[str, Any]:
        return {"network": self.network, "downloads": self.downloads, "writes": self.writes,
                "strict_sockets": self.strict_sockets}

    # --- install ---------------------------------------------------------------------------
    def install(self, user_settings: str | None = None) -> None:
        cfg = self.tmp / "config"
        (cfg / "Ultralytics").mkdir(parents=True, exist_ok=True)
        os.environ.update(YOLO_OFFLINE="1", YOLO_AUTOINSTALL="False", YOLO_VERBOSE="False",
                          YOLO_CONFIG_DIR=str(cfg), MPLCONFIGDIR=str(self.tmp / "matplotlib"),
                          PYTHONDONTWRITEBYTECODE="1", HF_HUB_OFFLINE="1", WANDB_MODE="disabled",
                          COMET_MODE="disabled", CLEARML_OFFLINE_MODE="1")
        sys.dont_write_bytecode = True
        settings: dict[str, Any] = {}
        if user_settings:
            try:
                with io.open(user_settings, encoding="utf-8") as fh:
                    loaded = json.load(fh)
                if isinstance(loaded, dict):
                    settings = loaded
            except (OSError, ValueError):
                settings = {}
        settings.update(sync=False, hub=False, wandb=False, comet=False, clearml=False,
                        mlflow=False, neptune=False, dvc=False, tensorboard=False, raytune=False)
        if "runs_dir" in settings:
            settings["runs_dir"] = str(self.tmp / "runs")
        with io.open(cfg / "Ultralytics" / "settings.json", "w", encoding="utf-8") as fh:
            json.dump(settings, fh)
        self._guard_sockets()
        self._guard_writes()
        self.installed = True

    def _guard_sockets(self) -> None:
        guard = self
        base = socket.socket

        class GuardedSocket(base):  # type: ignore[misc, valid-type]
            def __init__(self, family=-1, type=-1, proto=-1, fileno=None):  # noqa: A002
                fam = socket.AF_INET if family == -1 else family
                if guard.strict_sockets and fileno is None and fam in INTERNET_FAMILIES:
                    guard.record_network(f"socket.socket(family={int(fam)})")
                    raise NetworkBlocked("cvdoctor runs ultralytics offline: no sockets")
                super().__init__(family, type, proto, fileno)

            def connect(self, address):
                if self.family in INTERNET_FAMILIES:
                    guard.record_network(f"connect {address!r}")
                    raise NetworkBlocked(f"cvdoctor runs ultralytics offline: connect {address!r}")
                return super().connect(address)

            def connect_ex(self, address):
                if self.family in INTERNET_FAMILIES:
                    guard.record_network(f"connect_ex {address!r}")
                    raise NetworkBlocked(f"cvdoctor runs ultralytics offline: connect {address!r}")
                return super().connect_ex(address)

            def sendto(self, *args):
                if self.family in INTERNET_FAMILIES:
                    guard.record_network(f"sendto {args[-1]!r}")
                    raise NetworkBlocked("cvdoctor runs ultralytics offline: sendto")
                return super().sendto(*args)

        def lookup(name: str):
            def blocked(host, *args, **kwargs):
                if str(host) in LOOPBACK or host is None:
                    return original[name](host, *args, **kwargs)
                guard.record_network(f"{name}({host!r})")
                raise NetworkBlocked(f"cvdoctor runs ultralytics offline: {name}({host!r})")
            return blocked

        original = {n: getattr(socket, n) for n in ("getaddrinfo", "gethostbyname",
                                                       "gethostbyname_ex", "create_connection")}
        socket.socket = GuardedSocket  # type: ignore[misc]
        for name in original:
            if name == "create_connection":
                def create_connection(address, *args, **kwargs):
                    guard.record_network(f"create_connection({address!r})")
                    raise NetworkBlocked(f"cvdoctor runs ultralytics offline: {address!r}")
                socket.create_connection = create_connection  # type: ignore[assignment]
            else:
                setattr(socket, name, lookup(name))

    def _allowed_path(self, path: Any, dir_fd: int | None = None) -> bool:
        try:
            p = Path(os.fsdecode(path)) if not isinstance(path, int) else None
        except TypeError:
            return True
        if p is None:
            return True  # a file descriptor: opened earlier, judged then
        try:
            # relative to dir_fd when given (shutil.rmtree unlinks that way), else to the cwd
            base = Path(os.readlink(f"/proc/self/fd/{dir_fd}")) if dir_fd is not None \
                else Path.cwd()
            resolved = (p if p.is_absolute() else base / p).resolve()
        except (OSError, RuntimeError):
            return False
        return any(resolved == root or root in resolved.parents for root in self.allowed) or \
            str(resolved).startswith("/dev/")

    def _guard_writes(self) -> None:
        guard = self
        real_open = io.open

        def guarded_open(file, mode="r", *args, **kwargs):
            if isinstance(mode, str) and any(c in mode for c in "wax+") and \
                    not guard._allowed_path(file):
                guard.writes.append({"path": os.fsdecode(file), "mode": mode,
                                     "caller": guard._caller()})
                raise PermissionError(f"{REFUSED_WRITE}: open({file!r}, "
                                      f"{mode!r}) refused")
            return real_open(file, mode, *args, **kwargs)

        builtins.open = guarded_open  # type: ignore[assignment]
        io.open = guarded_open  # type: ignore[assignment]

        def removal(name: str, real):
            def guarded(path, *args, **kwargs):
                if not guard._allowed_path(path, kwargs.get("dir_fd")):
                    guard.writes.append({"path": os.fsdecode(path), "mode": name,
                                         "caller": guard._caller()})
                    raise PermissionError(f"{REFUSED_WRITE}: {name}({path!r}) "
                                          "refused")
                return real(path, *args, **kwargs)
            return guarded

        for name in ("remove", "unlink", "rmdir"):
            setattr(os, name, removal(name, getattr(os, name)))
        real_mkdir = os.mkdir
        guarded_mkdir = removal("mkdir", real_mkdir)

        def mkdir(path, *args, **kwargs):
            # a folder that exists is not created (makedirs(exist_ok=True) expects the
            # FileExistsError); a new one outside the allowed roots is a change to the user's disk
            # (ultralytics makes runs/<task>/<name>/weights before it writes anything there)
            if kwargs.get("dir_fd") is None and os.path.lexists(path):
                return real_mkdir(path, *args, **kwargs)
            return guarded_mkdir(path, *args, **kwargs)

        os.mkdir = mkdir  # type: ignore[assignment]
        accessor = getattr(__import__("pathlib"), "_NormalAccessor", None)
        if accessor is not None and hasattr(accessor, "mkdir"):  # Python 3.10's pathlib
            accessor.mkdir = staticmethod(mkdir)
        real_rmtree = shutil.rmtree
        shutil.rmtree = removal("rmtree", real_rmtree)  # type: ignore[assignment]

        def two_path(name: str, real):
            def guarded(src, dst, *args, **kwargs):
                for p in (src, dst):
                    if not guard._allowed_path(p):
                        guard.writes.append({"path": os.fsdecode(p), "mode": name,
                                             "caller": guard._caller()})
                        raise PermissionError(f"{REFUSED_WRITE}: {name} "
                                              f"refused")
                return real(src, dst, *args, **kwargs)
            return guarded

        for name in ("rename", "replace"):
            setattr(os, name, two_path(name, getattr(os, name)))

    # --- ultralytics -----------------------------------------------------------------------
    def block_downloads(self) -> None:
        """Replace ultralytics' download helpers (in every loaded ultralytics module that holds
        them) before the rest of ultralytics is imported; call again after later imports."""
        import importlib

        for name in ("ultralytics.utils.downloads", "ultralytics.utils.checks"):
            importlib.import_module(name)  # the modules whose helpers everyone imports

        replacements = self._replacements()
        for mod_name, module in list(sys.modules.items()):
            if not mod_name.startswith("ultralytics") or module is None:
                continue
            for name, fake in replacements.items():
                current = getattr(module, name, None)
                if current is not None and callable(current) and \
                        getattr(current, "__module__", "").startswith("ultralytics") and \
                        not getattr(current, "_cvdoctor_blocked", False):
                    setattr(module, name, fake)

    def _replacements(self) -> dict[str, Any]:
        import ultralytics.utils.downloads as downloads

        guard = self
        real_is_url = downloads.is_url

        def blocker(via: str, *, result: Any = "raise"):
            def fake(*args, **kwargs):
                what = kwargs.get("url") or kwargs.get("file") or (args[0] if args else "")
                if via == "is_url":
                    if not (kwargs.get("check") or (len(args) > 1 and args[1])):
                        return real_is_url(*args, **kwargs)
                    guard.downloads.append({"via": via, "what": str(what)})
                    return False
                if via == "attempt_download_asset":
                    from ultralytics.utils import SETTINGS

                    p = Path(str(what).strip().replace("'", ""))
                    if p.exists():
                        return str(p)
                    in_weights = Path(SETTINGS["weights_dir"]) / p
                    if in_weights.exists():
                        return str(in_weights)
                if via in ("check_requirements", "check_pip_update_available"):
                    guard.downloads.append({"via": via, "what": str(what)})
                    return True
                guard.downloads.append({"via": via, "what": str(what)})
                if result != "raise":
                    return result
                raise DownloadBlocked(str(what), via)
            fake._cvdoctor_blocked = True  # type: ignore[attr-defined]
            return fake

        return {"safe_download": blocker("safe_download"), "download": blocker("download"),
                "get_github_assets": blocker("get_github_assets"),
                "attempt_download_asset": blocker("attempt_download_asset"),
                "is_url": blocker("is_url"), "check_font": blocker("check_font", result=None),
                "check_requirements": blocker("check_requirements"),
                "check_pip_update_available": blocker("check_pip_update_available")}
