"""env.distributed: the launcher's environment (read and probed for real where this machine can:
its interfaces, a port held by a real socket, a name that cannot resolve), NCCL/Gloo settings,
and GPUs per node against recorded GPU machines and real `nvidia-smi topo -m` outputs."""
from __future__ import annotations

import copy
import json
import socket
from pathlib import Path

import pytest

from cvdoctor.api import check_env
from cvdoctor.facts.distributed import (LAUNCHER_VARS, COMM_VARS, gather_distributed,
                                        parse_topology)

FACTS = Path(__file__).parent / "facts"
H100_TOPO = (FACTS / "nvidia_smi_topo_8xh100.txt").read_text()
PCIE_TOPO = (FACTS / "nvidia_smi_topo_2gpu_pcie.txt").read_text()
NO_GPU = {"present": False, "count": 0, "devices": []}
NO_TOPO = {"ran": False, "reason": "fewer than 2 GPUs"}
NO_RDMA = {"system": "Linux", "memlock": {"soft": None, "hard": None},
           "stack": {"soft": 8388608, "hard": None}, "rdma_devices": [], "euid": 0}
IFACES = {"lo": {"up": True, "addresses": ["127.0.0.1", "::1"]},
          "enp71s0": {"up": True, "addresses": ["10.0.0.7"]},
          "ens35f0np0": {"up": True, "addresses": []},
          "docker0": {"up": False, "addresses": ["172.17.0.1"]}}


MASTER = {"MASTER_ADDR": "node0", "MASTER_PORT": "29500"}  # not probed: master facts not recorded


def gpus(n: int) -> dict:
    gpu = copy.deepcopy(json.loads((FACTS / "h100_healthy.json").read_text())["gpu"])
    device = gpu["devices"][0]
    gpu["devices"] = [dict(device, index=i) for i in range(n)]
    gpu["count"] = n
    return gpu


def topo(text: str) -> dict:
    return {"ran": True, "text": text, **parse_topology(text)}


@pytest.fixture
def clean_env(monkeypatch):
    for name in LAUNCHER_VARS + COMM_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def judge(distributed=None, gpu=NO_GPU, topology=NO_TOPO, limits=NO_RDMA):
    recorded = {"gpu": gpu, "gpu_topology": topology, "limits": limits}
    if distributed is not None:
        recorded["distributed"] = distributed
    return check_env(select=["env.distributed"], recorded=recorded).get_all("env.distributed")


def recorded(launcher=None, comm=None, master=None, interfaces=IFACES) -> dict:
    return {"launcher": launcher or {}, "comm": comm or {}, "interfaces": interfaces,
            "master": master}


def one(findings):
    (f,) = findings
    return f


# --- nothing set ---------------------------------------------------------------------------------

def test_nothing_set_passes_in_one_line(clean_env):
    f = one(judge())
    assert f.status == "pass"
    assert f.message == ("no launcher variables (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT): "
                         "not a distributed run")


def test_a_multi_gpu_machine_names_its_links_when_nothing_is_set(clean_env):
    f = one(judge(gpu=gpus(8), topology=topo(H100_TOPO)))
    assert f.status == "pass" and f.message.endswith("8 GPUs, NVLink between every pair (NV18)")
    f = one(judge(gpu=gpus(2), topology=topo(PCIE_TOPO)))
    assert f.message.endswith("2 GPUs over PCIe (PHB), no NVLink")


def test_real_nvidia_smi_topology_outputs_parse():
    h100 = parse_topology(H100_TOPO)
    assert h100["gpus"] == [f"GPU{i}" for i in range(8)]
    assert len(h100["links"]) == 28 and set(h100["links"].values()) == {"NV18"}
    assert h100["nics"] == {"NIC0": "mlx5_0"}
    assert parse_topology(PCIE_TOPO)["links"] == {"GPU0-GPU1": "PHB"}
    assert parse_topology("No devices were found\n") == {"gpus": [], "links": {}, "nics": {}}


# --- the launcher's variables, read from the environment ------------------------------------------

def test_a_rank_outside_the_world_fails(clean_env):
    clean_env.setenv("RANK", "2")
    clean_env.setenv("WORLD_SIZE", "2")
    clean_env.setenv("MASTER_ADDR", "127.0.0.1")
    clean_env.setenv("MASTER_PORT", "29999")
    f = one(judge())
    assert (f.status, f.recipe) == ("fail", "dist-launcher-env")
    assert "RANK=2 with WORLD_SIZE=2: ranks run from 0 to 1" in f.message


@pytest.mark.parametrize("env,expected", [
    ({"RANK": "one", "WORLD_SIZE": "2"}, "RANK='one' is not a whole number"),
    ({"LOCAL_RANK": "3", "LOCAL_WORLD_SIZE": "2"}, "LOCAL_RANK=3 with LOCAL_WORLD_SIZE=2"),
    ({"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "4"}, "LOCAL_WORLD_SIZE=4 is larger than"),
    ({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "70000"}, "MASTER_PORT='70000' is not a TCP port"),
])
def test_launcher_values_that_cannot_work_fail(env, expected):
    f = one(judge(recorded(launcher=env)))
    assert (f.status, f.recipe) == ("fail", "dist-launcher-env")
    assert expected in f.message


def test_rank_and_world_size_without_a_master_warn():
    f = one(judge(recorded(launcher={"RANK": "0", "WORLD_SIZE": "2"})))
    assert (f.status, f.recipe) == ("warn", "dist-launcher-env")
    assert "environment variable MASTER_ADDR expected, but not set" in f.message
    assert "init_method='tcp://HOST:PORT'" in f.message


def test_master_address_and_port_alone_are_fine_for_mp_spawn():
    """MASTER_ADDR/MASTER_PORT exported, rank and world size passed by the script."""
    master = {"addr": "127.0.0.1", "port": "29999", "resolve": {"addresses": ["127.0.0.1"]},
              "local": True, "bind": {"ok": True}}
    f = one(judge(recorded(launcher={"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29999"},
                           master=master)))
    assert f.status == "pass"
    assert "port 29999 is free for rank 0" in f.message


# --- MASTER_ADDR and MASTER_PORT, probed for real -------------------------------------------------

def test_a_master_port_held_by_another_process_fails_on_rank_0(clean_env):
    with socket.socket() as held:
        held.bind(("", 0))
        held.listen()
        port = held.getsockname()[1]
        for name, value in {"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                            "MASTER_PORT": str(port)}.items():
            clean_env.setenv(name, value)
        f = one(judge())
        assert (f.status, f.recipe) == ("fail", "dist-port-in-use")
        assert f"MASTER_PORT {port} is already taken on this machine" in f.message
        assert f"--master_port {port + 1}" in f.fix
        clean_env.setenv("RANK", "1")  # the same listener is rank 0's store for rank 1
        f = one(judge())
        assert f.status == "pass" and "rank 0's store listens on" in f.message
        clean_env.setenv("RANK", "0")  # under torchrun the agent holds the port: expected
        clean_env.setenv("TORCHELASTIC_RUN_ID", "none")
        f = one(judge())
        assert f.status == "pass" and "torchrun's store listens on" in f.message


def test_a_free_master_port_on_rank_0_passes(clean_env):
    with socket.socket() as probe:
        probe.bind(("", 0))
        port = probe.getsockname()[1]
    for name, value in {"RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "localhost",
                        "MASTER_PORT": str(port)}.items():
        clean_env.setenv(name, value)
    f = one(judge())
    assert f.status == "pass"
    assert f"launched as RANK=0 WORLD_SIZE=1 MASTER_ADDR=localhost MASTER_PORT={port}" in f.message


def test_a_master_name_that_cannot_resolve_fails(clean_env):
    for name, value in {"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "rank0.cvdoctor.invalid",
                        "MASTER_PORT": "29500"}.items():
        clean_env.setenv(name, value)
    f = one(judge())
    assert (f.status, f.recipe) == ("fail", "dist-rendezvous-timeout")
    assert "MASTER_ADDR=rank0.cvdoctor.invalid does not resolve" in f.message


def test_the_probe_answers_from_this_machine():
    facts = gather_distributed({"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                                "MASTER_PORT": "1", "NCCL_DEBUG": "INFO"})
    assert facts["launcher"]["RANK"] == "1" and facts["comm"] == {"NCCL_DEBUG": "INFO"}
    assert "lo" in facts["interfaces"]
    assert facts["master"]["local"] is True and "bind" in facts["master"]
    assert gather_distributed({})["master"] is None


def test_rank_0_away_from_master_addr_and_a_silent_master_warn():
    master = {"addr": "10.0.0.5", "port": "29500", "resolve": {"addresses": ["10.0.0.5"]},
              "local": False, "connect": {"result": "timeout", "timeout_s": 1.0}}
    findings = judge(recorded(launcher={"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "10.0.0.5",
                                        "MASTER_PORT": "29500"}, master=master))
    f = one(findings)  # two warnings of one cause fold into one finding
    assert (f.status, f.recipe) == ("warn", "dist-rendezvous-timeout")
    assert "RANK=0 runs here but MASTER_ADDR=10.0.0.5" in f.message
    assert "no answer from 10.0.0.5:29500" in f.message


def test_a_master_that_refuses_for_now_passes_with_a_note():
    master = {"addr": "node0", "port": "29500", "resolve": {"addresses": ["10.0.0.5"]},
              "local": False, "connect": {"result": "refused"}}
    f = one(judge(recorded(launcher={"RANK": "3", "WORLD_SIZE": "4", "MASTER_ADDR": "node0",
                                     "MASTER_PORT": "29500"}, master=master)))
    assert f.status == "pass" and "nothing listens on port 29500 yet" in f.message


# --- NCCL and Gloo settings ----------------------------------------------------------------------

def test_interface_names_this_machine_lacks_fail_with_its_real_interfaces(clean_env):
    clean_env.setenv("NCCL_SOCKET_IFNAME", "cvdoctor-missing0")
    f = one(judge())
    assert (f.status, f.recipe) == ("fail", "dist-socket-ifname")
    assert "NCCL_SOCKET_IFNAME=cvdoctor-missing0 matches no network interface here" in f.message
    assert "Bootstrap : no socket interface found" in f.message
    assert "lo" in f.evidence["interfaces"]


@pytest.mark.parametrize("comm,expected", [
    ({"GLOO_SOCKET_IFNAME": "^lo,docker"}, "Gloo takes interface names literally"),
    ({"GLOO_SOCKET_IFNAME": "eth0"}, "eth0 (no such interface)"),
    ({"GLOO_SOCKET_IFNAME": "ens35f0np0"}, "ens35f0np0 (has no IP address)"),
    ({"TP_SOCKET_IFNAME": "ib0"}, "ib0 (no such interface)"),
    ({"NCCL_SOCKET_IFNAME": "=enp71"}, "matches no network interface"),
    ({"NCCL_SOCKET_IFNAME": "^lo,enp,ens,docker"}, "matches no network interface"),
])
def test_socket_interface_settings_that_break_a_launch(comm, expected):
    f = one(judge(recorded(comm=comm)))
    assert (f.status, f.recipe) == ("fail", "dist-socket-ifname")
    assert expected in f.message
    assert "enp71s0" in f.fix  # a real interface with an address, suggested


@pytest.mark.parametrize("comm", [
    {"NCCL_SOCKET_IFNAME": "enp"}, {"NCCL_SOCKET_IFNAME": "=enp71s0"},
    {"NCCL_SOCKET_IFNAME": "^lo,docker"}, {"GLOO_SOCKET_IFNAME": "enp71s0"},
])
def test_socket_interface_settings_that_match_pass(comm):
    f = one(judge(recorded(comm=comm)))
    assert f.status == "pass"
    assert "set for later runs" in f.message


def test_p2p_disabled_on_nvlinked_gpus_warns_and_on_pcie_passes():
    comm = {"NCCL_P2P_DISABLE": "1"}
    f = one(judge(recorded(comm=comm), gpu=gpus(8), topology=topo(H100_TOPO)))
    assert (f.status, f.recipe) == ("warn", "nccl-transport-disabled")
    assert "GPUs linked by NVLink (NV18)" in f.message
    f = one(judge(recorded(comm=comm), gpu=gpus(2), topology=topo(PCIE_TOPO)))
    assert f.status == "pass" and "fine on PCIe-only GPUs" in f.message


def test_infiniband_disabled_on_a_multi_node_run_with_adapters_warns():
    rdma = dict(NO_RDMA, rdma_devices=["mlx5_0", "mlx5_1"])
    launcher = {"RANK": "9", "WORLD_SIZE": "16", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "8",
                **MASTER}
    f = one(judge(recorded(launcher=launcher, comm={"NCCL_IB_DISABLE": "1"}), gpu=gpus(8),
                  topology=topo(H100_TOPO), limits=rdma))
    assert (f.status, f.recipe) == ("warn", "nccl-transport-disabled")
    assert "falls back to TCP sockets" in f.message
    single = dict(launcher, WORLD_SIZE="8", RANK="1")
    f = one(judge(recorded(launcher=single, comm={"NCCL_IB_DISABLE": "1"}), gpu=gpus(8),
                  topology=topo(H100_TOPO), limits=rdma))
    assert f.status == "pass"


# --- GPUs per node -------------------------------------------------------------------------------

def test_more_local_ranks_than_visible_gpus_fails():
    launcher = {"RANK": "0", "WORLD_SIZE": "8", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "8",
                **MASTER}
    f = one(judge(recorded(launcher=launcher, comm={"CUDA_VISIBLE_DEVICES": "0,1,2,3"}),
                  gpu=gpus(8), topology=topo(H100_TOPO)))
    assert (f.status, f.recipe) == ("fail", "dist-ranks-exceed-gpus")
    assert "LOCAL_WORLD_SIZE=8 ranks on this node but 4 GPUs visible (CUDA_VISIBLE_DEVICES=0,1,2,3)" \
        in f.message
    assert "--nproc_per_node 4" in f.fix


def test_a_local_rank_beyond_the_gpus_fails_and_a_fitting_launch_passes():
    f = one(judge(recorded(launcher={"RANK": "2", "WORLD_SIZE": "3", "LOCAL_RANK": "2", **MASTER}),
                  gpu=gpus(2), topology=topo(PCIE_TOPO)))
    assert (f.status, f.recipe) == ("fail", "dist-ranks-exceed-gpus")
    assert "torch.cuda.set_device(2) fails" in f.message
    fits = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
            "TORCHELASTIC_RUN_ID": "none", **MASTER}
    f = one(judge(recorded(launcher=fits), gpu=gpus(2), topology=topo(PCIE_TOPO)))
    assert f.status == "pass"
    assert "(torchrun)" in f.message and "2 ranks per node on 2 GPUs" in f.message
    cpu = one(judge(recorded(launcher=fits)))  # gloo on CPUs: no GPU count to meet
    assert cpu.status == "pass"
