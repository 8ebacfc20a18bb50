"""env.limits: the locked-memory and stack limits a GPU container got (--ulimit memlock/stack)."""
from __future__ import annotations

from cvdoctor.finding import passed, skipped, warned
from cvdoctor.registry import register
from cvdoctor.text import human_bytes

TITLE = "Locked-memory and stack limits"
NVIDIA_STACK = 67108864  # --ulimit stack=67108864, NVIDIA's recommendation for its containers
FLAGS = "--ulimit memlock=-1 --ulimit stack=67108864"
CONTAINER_FIX = (f"restart the container with {FLAGS} (Compose: ulimits: memlock: -1, "
                 "stack: 67108864, as in docker/compose.yaml)")
RDMA_FIX = ("raise the locked-memory limit: '* soft memlock unlimited' and '* hard memlock "
            "unlimited' in /etc/security/limits.conf (LimitMEMLOCK=infinity for systemd services "
            "and Slurm), then log in again")


def _size(value) -> str:
    return "unlimited" if value is None else human_bytes(value)


def _measured(lim: dict) -> str:
    mem, stack = lim.get("memlock", {}), lim.get("stack", {})
    text = f"locked memory {_size(mem.get('soft'))}"
    if mem.get("hard") != mem.get("soft"):
        text += f" (hard {_size(mem.get('hard'))})"
    return text + f", stack {_size(stack.get('soft'))}"


@register("env.limits", order=85, title=TITLE, recipes=["container-ulimits", "memlock-rdma"],
          needs=["limits", "platform", "gpu"])
def check(ctx):
    """Reads RLIMIT_MEMLOCK and RLIMIT_STACK as this process got them, and whether the machine
    has a GPU and InfiniBand/RoCE adapters. NCCL pins (page-locks) host memory and its
    InfiniBand/RoCE transport registers buffers against the locked-memory limit; NVIDIA
    recommends `--ulimit memlock=-1 --ulimit stack=67108864` for its PyTorch containers.

    Inside a container with a GPU (or an NGC image), a limited locked-memory size warns, with the
    `docker run` and Compose fix; the stack size is reported next to it (the 8 MiB default alone
    is not a warning: it rarely matters). Outside containers it warns only where the limit bites:
    a GPU machine with RDMA adapters (multi-node NCCL), a limited locked-memory size and a user
    other than root (root outside a container holds CAP_IPC_LOCK, which lifts it). Passes
    otherwise; skips on systems without these limits."""
    lim = ctx.fact("limits")
    plat = ctx.optional_fact("platform")
    gpu = ctx.optional_fact("gpu")
    system = lim.get("system") or plat.get("system")
    if system and system != "Linux" or lim.get("memlock", {}).get("unknown"):
        return skipped(TITLE, f"{system or 'this system'} has no Linux resource limits to read",
                       limits=lim)
    measured = _measured(lim)
    memlock = lim["memlock"].get("soft")
    stack = lim.get("stack", {}).get("soft")
    ngc = plat.get("ngc")
    container = ngc and "NGC PyTorch" or plat.get("container")
    has_gpu = bool(gpu.get("present"))
    rdma = lim.get("rdma_devices") or []
    evidence = {"limits": lim, "container": container, "gpu": has_gpu}
    stack_low = stack is not None and stack < NVIDIA_STACK
    if container:
        where = f"inside a {container} container"
        if memlock is not None and (has_gpu or ngc):
            return warned(
                TITLE, f"{measured} {where}: NCCL page-locks host memory for its transfers, and "
                "its InfiniBand/RoCE transport registers buffers against this limit (\"NCCL WARN "
                f"Call to ibv_reg_mr failed\"); NVIDIA recommends {FLAGS} for its "
                "PyTorch containers", CONTAINER_FIX, "container-ulimits", **evidence)
        if memlock is not None:
            return passed(TITLE, f"{measured} {where} without a GPU: NCCL is not in play (a GPU "
                          f"container wants {FLAGS})", **evidence)
        note = "" if not stack_low else \
            f" (NVIDIA also recommends --ulimit stack=67108864; {_size(stack)} is enough for most)"
        return passed(TITLE, f"{measured} {where}{note}", **evidence)
    if memlock is not None and rdma and has_gpu and lim.get("euid") != 0:
        return warned(
            TITLE, f"{measured}; this GPU machine has RDMA adapters ({', '.join(rdma[:4])}): "
            "NCCL's InfiniBand/RoCE transport registers its buffers against the locked-memory "
            "limit and fails or falls back to sockets beyond it (\"NCCL WARN Call to ibv_reg_mr "
            "failed\", \"RLIMIT_MEMLOCK is ... bytes. This will severely limit memory "
            "registrations\")", RDMA_FIX, "memlock-rdma", **evidence)
    why = ("no RDMA adapter here" if not rdma else "no GPU here" if not has_gpu else
           "root's CAP_IPC_LOCK lifts the limit")
    return passed(TITLE, f"{measured}; outside a container these matter for NCCL over "
                  f"InfiniBand/RoCE only ({why})" if memlock is not None else measured,
                  **evidence)
