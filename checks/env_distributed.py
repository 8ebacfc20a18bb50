"""env.distributed: the launcher's environment, NCCL/Gloo settings and GPUs per node."""
from __future__ import annotations

from collections import Counter

from cvdoctor.finding import FAIL, WARN, Problem, report_problems
from cvdoctor.registry import register

TITLE = "Distributed launch"
LAUNCHER = "dist-launcher-env"
RENDEZVOUS = "dist-rendezvous-timeout"
PORT = "dist-port-in-use"
IFNAME = "dist-socket-ifname"
TRANSPORT = "nccl-transport-disabled"
GPUS = "dist-ranks-exceed-gpus"
ENV_INIT = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE")
TRUE = ("1", "true", "yes", "on")


def _int(launcher: dict, name: str, problems: list[Problem]) -> int | None:
    text = launcher.get(name)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        problems.append(Problem(FAIL, LAUNCHER, f"{name}={text!r} is not a whole number",
                                f"export {name} as an integer (torchrun sets it for you)",
                                {"launcher": launcher}))
        return None


def launcher_problems(launcher: dict) -> list[Problem]:
    problems: list[Problem] = []
    rank, world = _int(launcher, "RANK", problems), _int(launcher, "WORLD_SIZE", problems)
    local, local_world = (_int(launcher, "LOCAL_RANK", problems),
                          _int(launcher, "LOCAL_WORLD_SIZE", problems))
    ev = {"launcher": launcher}
    if world is not None and world < 1:
        problems.append(Problem(FAIL, LAUNCHER, f"WORLD_SIZE={world}: a group needs at least one "
                                "process", "set WORLD_SIZE to the number of processes", ev))
    if rank is not None and world is not None and not 0 <= rank < world:
        problems.append(Problem(FAIL, LAUNCHER, f"RANK={rank} with WORLD_SIZE={world}: ranks run "
                                f"from 0 to {world - 1}, so this process never joins a group of "
                                f"{world}", "give every process a distinct RANK below WORLD_SIZE "
                                "(torchrun does)", ev))
    if local is not None and local_world is not None and not 0 <= local < local_world:
        problems.append(Problem(FAIL, LAUNCHER, f"LOCAL_RANK={local} with "
                                f"LOCAL_WORLD_SIZE={local_world}", "LOCAL_RANK runs from 0 to "
                                "LOCAL_WORLD_SIZE - 1 on each node", ev))
    if local_world is not None and world is not None and local_world > world:
        problems.append(Problem(FAIL, LAUNCHER, f"LOCAL_WORLD_SIZE={local_world} is larger than "
                                f"WORLD_SIZE={world}", "WORLD_SIZE counts every process on every "
                                "node", ev))
    port = launcher.get("MASTER_PORT")
    if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
        problems.append(Problem(FAIL, LAUNCHER, f"MASTER_PORT={port!r} is not a TCP port",
                                "export MASTER_PORT=29500 (any free port from 1024 to 65535)", ev))
    present = [v for v in ENV_INIT if v in launcher]
    missing = [v for v in ENV_INIT if v not in launcher]
    if {"RANK", "WORLD_SIZE"} & set(present) and {"MASTER_ADDR", "MASTER_PORT"} & set(missing):
        gone = " and ".join(v for v in missing if v.startswith("MASTER"))
        problems.append(Problem(
            WARN, LAUNCHER, f"{', '.join(present)} set but not {gone}: init_process_group with "
            f"the default env:// fails (\"environment variable {missing[0]} expected, but not "
            "set\") unless the script passes init_method='tcp://HOST:PORT'",
            "launch with torchrun (it sets all four), or export MASTER_ADDR and MASTER_PORT on "
            "every node", ev))
    return problems


def master_problems(launcher: dict, master: dict | None, notes: list[str]) -> list[Problem]:
    if not master:
        return []
    addr, port = master.get("addr"), master.get("port")
    found = master.get("resolve") or {}
    ev = {"master": master}
    if "error" in found:
        return [Problem(FAIL, RENDEZVOUS, f"MASTER_ADDR={addr} does not resolve ({found['error']})"
                        ": init_process_group cannot find rank 0's store and fails after retrying "
                        "until its timeout",
                        "set MASTER_ADDR to rank 0's host name or IP address as the other nodes "
                        "reach it", ev)]
    rank0 = launcher.get("RANK") == "0" or (launcher.get("RANK") is None and
                                            launcher.get("LOCAL_RANK") in (None, "0"))
    elastic = "TORCHELASTIC_RUN_ID" in launcher
    where = f"{addr}:{port}" if port else addr
    if master.get("local"):
        bind = master.get("bind")
        if bind and not bind["ok"]:
            listening = (master.get("connect") or {}).get("result") == "connected"
            if elastic and listening:
                notes.append(f"torchrun's store listens on {where}")
            elif rank0:
                return [Problem(FAIL, PORT, f"MASTER_PORT {port} is already taken on this machine "
                                f"({bind['error']}): rank 0's store cannot listen there "
                                "(\"EADDRINUSE\")", f"pick a free port (torchrun --master_port "
                                f"{int(port) + 1}), or stop the process that holds {port} "
                                f"(ss -ltnp | grep {port})", ev)]
            else:
                notes.append(f"rank 0's store listens on {where}")
        elif bind:
            notes.append(f"MASTER_ADDR {addr} is this machine and port {port} is free for rank 0")
        return []
    addresses = ", ".join(found.get("addresses", [])[:3])
    problems = []
    if launcher.get("RANK") == "0" and not elastic:
        problems.append(Problem(WARN, RENDEZVOUS, f"RANK=0 runs here but MASTER_ADDR={addr} "
                                f"({addresses}) is not an address of this machine: the other ranks "
                                "will look for rank 0's store there", "set MASTER_ADDR to this "
                                "machine's address (or run rank 0 on that host)", ev))
    result = (master.get("connect") or {}).get("result")
    if result == "timeout":
        problems.append(Problem(WARN, RENDEZVOUS, f"no answer from {where} ({addresses}) within "
                                f"{master['connect'].get('timeout_s', 1):g} s: a firewall may drop "
                                "the connection, or the host is down", f"open port {port} on "
                                "rank 0's host to the other nodes; check the address", ev))
    elif result == "connected":
        notes.append(f"{where} accepts connections")
    elif result == "refused":
        notes.append(f"{addr} resolves ({addresses}); nothing listens on port {port} yet (rank 0 "
                     "starts the store)")
    return problems


def _matches_nccl(spec: str, names: list[str]) -> tuple[bool, list[str]]:
    """NCCL_SOCKET_IFNAME: comma-separated prefixes; '=' for exact names; '^' excludes."""
    exclude = spec.startswith("^")
    body = spec[1:] if exclude else spec
    exact = body.startswith("=")
    body = body[1:] if exact else body
    wanted = [w.strip() for w in body.split(",") if w.strip()]
    hits = [n for n in names if any(n == w if exact else n.startswith(w) for w in wanted)]
    if exclude:
        left = [n for n in names if n not in hits and n != "lo"]
        return bool(left), left
    return bool(hits), hits


def comm_problems(comm: dict, ifaces: dict, topo: dict, rdma: list[str], launcher: dict,
                  notes: list[str]) -> list[Problem]:
    problems = []
    names = sorted(ifaces)
    shown = ", ".join(names[:8]) + (" ..." if len(names) > 8 else "")
    ev = {"comm": comm, "interfaces": {n: ifaces[n].get("addresses") for n in names}}
    spec = comm.get("NCCL_SOCKET_IFNAME")
    if spec:
        ok, hits = _matches_nccl(spec, names)
        if not ok:
            problems.append(Problem(FAIL, IFNAME, f"NCCL_SOCKET_IFNAME={spec} matches no network "
                                    f"interface here ({shown}): NCCL stops with \"Bootstrap : no "
                                    "socket interface found\"", "name an interface this machine "
                                    f"has (ip -brief address): export NCCL_SOCKET_IFNAME="
                                    f"{_suggest(ifaces)}, or unset it", ev))
    for var in ("GLOO_SOCKET_IFNAME", "TP_SOCKET_IFNAME"):
        spec = comm.get(var)
        if not spec:
            continue
        bad = []
        for name in (n.strip() for n in spec.split(",") if n.strip()):
            if name.startswith(("^", "=")):
                bad.append(f"{name} (Gloo takes interface names literally, no ^ or =)")
            elif name not in ifaces:
                bad.append(f"{name} (no such interface)")
            elif not ifaces[name].get("addresses"):
                bad.append(f"{name} (has no IP address)")
        if bad:
            problems.append(Problem(FAIL, IFNAME, f"{var}={spec}: {'; '.join(bad)}; Gloo stops "
                                    f"with \"Unable to find address for: {spec.split(',')[0]}\" "
                                    f"(interfaces here: {shown})", "name an interface that has "
                                    f"an address: export {var}={_suggest(ifaces)}, or unset it",
                                    ev))
    nv = [v for v in (topo.get("links") or {}).values() if v.startswith("NV")]
    if (comm.get("NCCL_P2P_DISABLE") or "").lower() in TRUE:
        if nv:
            problems.append(Problem(WARN, TRANSPORT, f"NCCL_P2P_DISABLE={comm['NCCL_P2P_DISABLE']}"
                                    f" on GPUs linked by NVLink ({Counter(nv).most_common(1)[0][0]}"
                                    "): NCCL stops using NVLink and copies through host memory, "
                                    "several times slower", "unset NCCL_P2P_DISABLE (it is a "
                                    "workaround for PCIe systems whose peer-to-peer is broken)",
                                    {**ev, "topology": topo.get("links")}))
        else:
            notes.append("NCCL_P2P_DISABLE=1 (fine on PCIe-only GPUs)")
    world, local_world = launcher.get("WORLD_SIZE"), launcher.get("LOCAL_WORLD_SIZE")
    multi_node = bool(world and local_world and world.isdigit() and local_world.isdigit()
                      and int(world) > int(local_world))
    if (comm.get("NCCL_IB_DISABLE") or "").lower() in TRUE and rdma:
        if multi_node:
            problems.append(Problem(WARN, TRANSPORT, f"NCCL_IB_DISABLE={comm['NCCL_IB_DISABLE']} "
                                    f"on a multi-node run with RDMA adapters ({', '.join(rdma[:4])})"
                                    ": NCCL falls back to TCP sockets between nodes", "unset "
                                    "NCCL_IB_DISABLE, or fix what it was set to work around "
                                    "(NCCL_DEBUG=INFO shows the IB error)", {**ev, "rdma": rdma}))
        else:
            notes.append("NCCL_IB_DISABLE=1 (InfiniBand unused within one node)")
    return problems


def _suggest(ifaces: dict) -> str:
    for name in sorted(ifaces):
        if name != "lo" and not name.startswith(("docker", "veth", "br-", "virbr")) and \
                any("." in a for a in ifaces[name].get("addresses", [])):
            return name
    return "eth0"


def visible_gpus(gpu: dict, comm: dict) -> int:
    count = int(gpu.get("count") or 0) if gpu.get("present") else 0
    cvd = comm.get("CUDA_VISIBLE_DEVICES")
    if cvd is None:
        return count
    entries = []
    for e in cvd.split(","):
        e = e.strip()
        if not e or e.startswith("-"):
            break  # CUDA stops at the first invalid entry
        entries.append(e)
    return min(count, len(entries))


def gpu_problems(launcher: dict, gpu: dict, comm: dict, notes: list[str]) -> list[Problem]:
    if not gpu.get("present") or not launcher:
        return []
    visible = visible_gpus(gpu, comm)
    local_world, local_rank = launcher.get("LOCAL_WORLD_SIZE"), launcher.get("LOCAL_RANK")
    ev = {"visible_gpus": visible, "cuda_visible_devices": comm.get("CUDA_VISIBLE_DEVICES")}
    cvd = (f" (CUDA_VISIBLE_DEVICES={comm['CUDA_VISIBLE_DEVICES']})"
           if "CUDA_VISIBLE_DEVICES" in comm else "")
    if local_world and local_world.isdigit() and int(local_world) > visible:
        return [Problem(FAIL, GPUS, f"LOCAL_WORLD_SIZE={local_world} ranks on this node but "
                        f"{visible} GPU{'s' if visible != 1 else ''} visible{cvd}: ranks would "
                        "share a GPU, which NCCL refuses (\"Duplicate GPU detected\"), or ask for "
                        "one that does not exist (\"invalid device ordinal\")",
                        f"torchrun --nproc_per_node {visible} (one rank per GPU)", ev)]
    if local_rank and local_rank.isdigit() and int(local_rank) >= visible:
        return [Problem(FAIL, GPUS, f"LOCAL_RANK={local_rank} but {visible} GPU"
                        f"{'s' if visible != 1 else ''} visible{cvd}: torch.cuda.set_device("
                        f"{local_rank}) fails with \"invalid device ordinal\"",
                        f"start at most {visible} ranks per node", ev)]
    if local_world and local_world.isdigit():
        notes.append(f"{local_world} ranks per node on {visible} GPUs")
    return []


def topology_summary(topo: dict) -> str | None:
    links = topo.get("links") or {}
    gpus = topo.get("gpus") or []
    if len(gpus) < 2 or not links:
        return None
    kinds = Counter(v if not v.startswith("NV") else "NV" for v in links.values())
    nv = [v for v in links.values() if v.startswith("NV")]
    if kinds.get("NV") == len(links):
        return f"{len(gpus)} GPUs, NVLink between every pair ({Counter(nv).most_common(1)[0][0]})"
    if nv:
        rest = ", ".join(sorted(k for k in kinds if k != "NV"))
        return f"{len(gpus)} GPUs, NVLink between {len(nv)} of {len(links)} pairs, the rest {rest}"
    return f"{len(gpus)} GPUs over PCIe ({', '.join(sorted(kinds))}), no NVLink"


@register("env.distributed", order=88, title=TITLE,
          recipes=[LAUNCHER, RENDEZVOUS, PORT, IFNAME, TRANSPORT, GPUS],
          needs=["distributed", "gpu", "gpu_topology", "limits"])
def check(ctx):
    """Reads what a torchrun-style launch would meet: the launcher's variables (RANK,
    WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), whether MASTER_ADDR
    resolves and is this machine, whether MASTER_PORT can be bound here (rank 0) or reached
    (other ranks) within a second, NCCL/Gloo settings (NCCL_SOCKET_IFNAME, GLOO_SOCKET_IFNAME,
    NCCL_P2P_DISABLE, NCCL_IB_DISABLE), the GPUs visible against the ranks per node, and
    `nvidia-smi topo -m`. Fails on values that stop a launch: ranks out of range, an unresolvable
    MASTER_ADDR, a MASTER_PORT already taken on rank 0's machine, interface names that do not
    exist (or lack an address, for Gloo), more ranks per node than GPUs. Warns on settings that
    cost speed or may be wrong: peer-to-peer disabled on NVLinked GPUs, InfiniBand disabled on a
    multi-node run, rank 0 away from MASTER_ADDR, a master that does not answer, env:// without
    MASTER_ADDR/MASTER_PORT. Passes in one line when nothing is set."""
    d = ctx.fact("distributed")
    gpu = ctx.optional_fact("gpu")
    topo = ctx.optional_fact("gpu_topology")
    rdma = ctx.optional_fact("limits").get("rdma_devices") or []
    launcher, comm = d.get("launcher") or {}, d.get("comm") or {}
    notes: list[str] = []
    problems = launcher_problems(launcher)
    problems += master_problems(launcher, d.get("master"), notes)
    problems += comm_problems(comm, d.get("interfaces") or {}, topo, rdma, launcher, notes)
    problems += gpu_problems(launcher, gpu, comm, notes)
    summary = topology_summary(topo)
    if summary:
        notes.append(summary)
    if launcher:
        shown = " ".join(f"{k}={v}" for k, v in launcher.items()
                         if not k.startswith("TORCHELASTIC"))
        head = f"launched as {shown}" + (" (torchrun)" if "TORCHELASTIC_RUN_ID" in launcher
                                         else "")
    else:
        head = "no launcher variables (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT): not a " \
               "distributed run"
    settings = [f"{k}={v}" for k, v in comm.items() if k != "CUDA_VISIBLE_DEVICES"]
    if settings and not launcher:
        head += f"; {', '.join(settings)} set for later runs"
    return report_problems(TITLE, problems, "; ".join([head, *notes]),
                           launcher=launcher, comm=comm, master=d.get("master"),
                           topology=topo.get("links"))
