"""Providers "distributed" and "gpu_topology": what a torchrun-style launch would meet here.

- ``distributed``: the launcher's variables (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
  MASTER_ADDR, MASTER_PORT, torchelastic's), the NCCL/Gloo settings that commonly break a run,
  this machine's network interfaces and their addresses, and, when MASTER_ADDR is set, whether it
  resolves, whether it is this machine, and whether its port can be bound (rank 0 hosts the
  store) or reached (the other ranks connect to it). Every network probe has a short timeout.
- ``gpu_topology``: ``nvidia-smi topo -m`` parsed (how each pair of GPUs is connected: NVLink,
  PCIe switch, host bridge, across NUMA nodes), on machines with an NVIDIA GPU.

Standard library and psutil only; nothing here imports torch.
"""
from __future__ import annotations

import ipaddress
import os
import re
import shutil
import socket
import subprocess
import threading
from typing import Any, Mapping

from cvdoctor.factgraph import fact

LAUNCHER_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK",
                 "NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID",
                 "TORCHELASTIC_RESTART_COUNT")
COMM_VARS = ("NCCL_P2P_DISABLE", "NCCL_IB_DISABLE", "NCCL_SHM_DISABLE", "NCCL_SOCKET_IFNAME",
             "NCCL_IB_HCA", "NCCL_DEBUG", "GLOO_SOCKET_IFNAME", "TP_SOCKET_IFNAME",
             "CUDA_VISIBLE_DEVICES")
RESOLVE_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 1.0


def interfaces() -> dict[str, dict[str, Any]]:
    """{name: {"up": bool|None, "addresses": [ip, ...]}} for every network interface."""
    try:
        import psutil

        addrs = psutil.net_if_addrs()
        stats = psutil.net_if_stats()
    except Exception:  # noqa: BLE001 - a container without /sys/class/net still has a name list
        return {name: {"up": None, "addresses": []} for _, name in _if_nameindex()}
    out = {}
    for name, entries in addrs.items():
        ips = [a.address.split("%")[0] for a in entries
               if a.family in (socket.AF_INET, socket.AF_INET6)]
        out[name] = {"up": stats[name].isup if name in stats else None, "addresses": ips}
    for _, name in _if_nameindex():
        out.setdefault(name, {"up": None, "addresses": []})
    return out


def _if_nameindex() -> list[tuple[int, str]]:
    try:
        return socket.if_nameindex()
    except OSError:
        return []


def resolve(host: str, timeout_s: float = RESOLVE_TIMEOUT_S) -> dict[str, Any]:
    """{"addresses": [...]} or {"error": ...}; getaddrinfo has no timeout of its own, so it runs
    in a daemon thread that is abandoned after `timeout_s`."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
            box["addresses"] = sorted({i[4][0] for i in infos})
        except (OSError, UnicodeError) as exc:
            box["error"] = f"{type(exc).__name__}: {exc}"

    worker = threading.Thread(target=run, daemon=True, name="cvdoctor-resolve")
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        return {"error": f"no answer from the resolver within {timeout_s:g} s"}
    return box


def is_local(addresses: list[str], local: dict[str, dict[str, Any]]) -> bool:
    mine = {a for info in local.values() for a in info.get("addresses", [])}
    for a in addresses:
        try:
            if ipaddress.ip_address(a).is_loopback or a in mine:
                return True
        except ValueError:
            continue
    return False


def can_bind(port: int) -> dict[str, Any]:
    """Whether rank 0's store could listen on `port` now (all interfaces, SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("", port))
        except OSError as exc:
            return {"ok": False, "error": f"{exc.strerror or exc} (errno {exc.errno})",
                    "errno": exc.errno}
    return {"ok": True}


def can_connect(host: str, port: int, timeout_s: float = CONNECT_TIMEOUT_S) -> dict[str, Any]:
    """"connected", "refused" (nothing listens yet) or "timeout" (no answer: a firewall drops
    it, or the host is down)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return {"result": "connected"}
    except socket.timeout:
        return {"result": "timeout", "timeout_s": timeout_s}
    except ConnectionRefusedError:
        return {"result": "refused"}
    except OSError as exc:
        return {"result": "error", "error": f"{exc.strerror or exc} (errno {exc.errno})"}


def gather_distributed(environ: Mapping[str, str] = os.environ, *,
                       probe_network: bool = True) -> dict[str, Any]:
    launcher = {k: environ[k] for k in LAUNCHER_VARS if k in environ}
    comm = {k: environ[k] for k in COMM_VARS if k in environ}
    out: dict[str, Any] = {"launcher": launcher, "comm": comm, "interfaces": interfaces(),
                           "master": None}
    addr, port = launcher.get("MASTER_ADDR"), launcher.get("MASTER_PORT")
    if addr and probe_network:
        master: dict[str, Any] = {"addr": addr, "port": port}
        found = resolve(addr)
        master["resolve"] = found
        if "addresses" in found:
            master["local"] = is_local(found["addresses"], out["interfaces"])
            if port and port.isdigit() and 0 < int(port) < 65536:
                p = int(port)
                if master["local"]:
                    master["bind"] = can_bind(p)
                    if not master["bind"]["ok"]:
                        master["connect"] = can_connect("127.0.0.1", p)
                else:
                    master["connect"] = can_connect(found["addresses"][0], p)
        out["master"] = master
    return out


@fact("distributed")
def gather(ctx) -> dict[str, Any]:
    return gather_distributed()


# --- nvidia-smi topo -m ---------------------------------------------------------------------------

LINK_WORDS = {
    "NV": "NVLink", "PIX": "at most one PCIe bridge", "PXB": "several PCIe bridges",
    "PHB": "a PCIe host bridge (the CPU)", "NODE": "PCIe host bridges within a NUMA node",
    "SYS": "PCIe and the link between NUMA nodes", "SOC": "PCIe and the CPU socket link",
}


def parse_topology(text: str) -> dict[str, Any]:
    """`nvidia-smi topo -m` -> {"gpus": ["GPU0", ...], "links": {"GPU0-GPU1": "NV18", ...},
    "nics": {"NIC0": "mlx5_0"}}. Rows are tab-separated; the header starts with a tab."""
    lines = [ln.rstrip("\n") for ln in text.splitlines()]
    header = next((ln for ln in lines if re.match(r"^\s*GPU0\b", ln.strip("\t ")) and
                   ln.startswith(("\t", " "))), None)
    if header is None:
        return {"gpus": [], "links": {}, "nics": {}}
    columns = [c.strip() for c in header.strip("\t ").split("\t")]
    gpus = [c for c in columns if re.fullmatch(r"GPU\d+", c)]
    links: dict[str, str] = {}
    for ln in lines:
        cells = [c.strip() for c in ln.split("\t")]
        if not cells or cells[0] not in gpus:
            continue
        for other, value in zip(columns, cells[1:]):
            if other in gpus and other != cells[0] and value and value != "X":
                pair = "-".join(sorted((cells[0], other), key=lambda g: int(g[3:])))
                links[pair] = value
    nics = dict(re.findall(r"^\s*(NIC\d+):\s*(\S+)\s*$", text, re.M))
    return {"gpus": gpus, "links": links, "nics": nics}


def link_kind(value: str) -> str:
    return "NV" if value.startswith("NV") else value


@fact("gpu_topology", needs=["gpu"])
def topology(ctx) -> dict[str, Any]:
    gpu = ctx.optional_fact("gpu")
    if not gpu.get("present") or (gpu.get("count") or 0) < 2:
        return {"ran": False, "reason": "fewer than 2 GPUs"}
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return {"ran": False, "reason": "nvidia-smi not found"}
    try:
        proc = subprocess.run([exe, "topo", "-m"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"ran": False, "reason": f"nvidia-smi topo -m: {exc}"}
    if proc.returncode != 0:
        return {"ran": False, "reason": f"nvidia-smi topo -m exited {proc.returncode}"}
    return {"ran": True, "text": proc.stdout, **parse_topology(proc.stdout)}
