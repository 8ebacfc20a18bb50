"""The model.ddp* checks on real process groups: 2 ranks with gloo on this CPU, each loading the
model file (tests/ddp_targets/) or the pickled objects, wrapping the model in
DistributedDataParallel and taking steps. Broken set-ups of every kind, healthy ones over several
seeds, a busy port, a rank that raises, a rank that hangs; nothing may outlive a run."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from cvdoctor import check_model
from cvdoctor.api import make_context, run_context
from cvdoctor.cli import cli
from cvdoctor.commands import all_commands
from cvdoctor.ddp import runner
from cvdoctor.ddp.runner import Launch, Zygote, run_ranks
from pytest_cvdoctor import assert_ddp_ready

TARGETS = Path(__file__).parent / "ddp_targets"
REPO = Path(__file__).resolve().parents[1]
DDP_CHECKS = ("model.ddp_unused", "model.ddp_sync", "model.ddp_batches", "model.ddp")


def ddp_report(name: str, *, ddp: int | None = 2, timeout: float = 30.0, select=("model.ddp*",)):
    values = {"ddp": ddp, "ddp_timeout": timeout}
    ctx = make_context(all_commands()["model"], str(TARGETS / f"{name}.py"), values)
    return run_context("model", ctx, select=list(select))


def statuses(report) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in report.findings:
        out.setdefault(f.check, []).append(f.status)
    return out


def only(report, check: str):
    (finding,) = report.get_all(check)
    return finding


def no_rank_left(result: dict) -> None:
    """Every rank of the run is gone, and so is everything the ranks started."""
    for rank in result["ranks"]:
        assert rank["pid"] is None or not psutil.pid_exists(rank["pid"]) or \
            psutil.Process(rank["pid"]).status() == psutil.STATUS_ZOMBIE, rank["pid"]
    zygote = Zygote.get()
    assert zygote is None or zygote.children() == []
    ours = [c for c in psutil.Process().children(recursive=True)
            if zygote is None or c.pid != zygote.proc.pid]
    assert [c for c in ours if "cvdoctor.ddp" in " ".join(c.cmdline())] == []


# --- DDP's own error, reproduced without cvdoctor ------------------------------------------------

REPRO = """
import os, sys, datetime
import torch, torch.distributed as dist
from torch import nn
rank = int(sys.argv[1])
dist.init_process_group("gloo", rank=rank, world_size=2, timeout=datetime.timedelta(seconds=30))
sys.path.insert(0, sys.argv[2])
from unused_head import build_model, get_batch
model = nn.parallel.DistributedDataParallel(build_model())
x, y = get_batch()
try:
    for step in range(2):
        nn.functional.cross_entropy(model(x), y).backward()
    print("no error")
except RuntimeError as exc:
    print(str(exc).splitlines()[0])
"""


@pytest.mark.slow
def test_ddp_itself_stops_on_the_unused_head(tmp_path):
    """Ground truth, without cvdoctor: plain DDP on two processes raises its reduction error on
    the second iteration of the unused-head model."""
    script = tmp_path / "repro.py"
    script.write_text(REPRO)
    port = str(runner.free_port())
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(script), str(r), str(TARGETS)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for r in range(2)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    for out in outs:
        assert "Expected to have finished reduction in the prior iteration" in out, out


# --- parameters without gradient -----------------------------------------------------------------

def test_a_head_forward_never_calls_fails_with_ddps_own_error_and_a_model_fix():
    report = ddp_report("unused_head")
    f = only(report, "model.ddp_unused")
    assert (f.status, f.recipe) == ("fail", "ddp-unused-parameters")
    assert "`aux_head.weight`, `aux_head.bias` in `aux_head` (forward never calls them)" in f.message
    assert f.evidence["reduction_error"]["first_line"].startswith(
        "Expected to have finished reduction in the prior iteration")
    assert "Parameter indices which did not receive grad for rank 0: 4 5" in f.message
    assert "delete `aux_head` or freeze it" in f.fix
    assert "find_unused_parameters=True would only silence DDP" in f.fix
    run = only(report, "model.ddp")  # the run's failure is the same cause, reported once
    assert run.status == "fail" and run.caused_by == "model.ddp_unused"
    assert statuses(report)["model.ddp_sync"] == ["pass"]


def test_a_branch_taken_every_other_step_needs_find_unused_parameters():
    f = only(ddp_report("aux_every_other_step"), "model.ddp_unused")
    assert (f.status, f.recipe) == ("fail", "ddp-unused-parameters")
    assert "get a gradient on some passes and not on others: `aux.weight`, `aux.bias`" in f.message
    assert f.fix.startswith("DistributedDataParallel(model, find_unused_parameters=True)")


# --- replicas in sync ----------------------------------------------------------------------------

def test_rank_dependent_control_flow_fails_and_explains_the_reduction_error():
    report = ddp_report("rank_branch")
    sync = only(report, "model.ddp_sync")
    assert (sync.status, sync.recipe) == ("fail", "ddp-replicas-diverge")
    assert "the same input gives different outputs on rank 0 and rank 1" in sync.message
    assert "rank-dependent control flow: `extra` ran on rank 1 only" in sync.message
    unused = only(report, "model.ddp_unused")
    assert unused.status == "fail" and unused.caused_by == "model.ddp_sync"
    assert "on some ranks only" in unused.message


def test_a_plain_tensor_attribute_with_per_rank_seeds_fails():
    f = only(ddp_report("outside_state"), "model.ddp_sync")
    assert (f.status, f.recipe) == ("fail", "ddp-replicas-diverge")
    assert "state outside parameters and buffers differs" in f.message
    assert "(`pos`)" in f.message
    assert "different random states" in f.message  # the per-rank seed before build_model()
    assert "register_buffer" in f.fix


def test_a_buffer_updated_from_the_rank_warns():
    report = ddp_report("rank_buffer")
    f = only(report, "model.ddp_sync")
    assert (f.status, f.recipe) == ("warn", "ddp-replicas-diverge")
    assert "1 buffer differs between rank 0 and rank 1 after a step on the same batch (`seen`)" \
        in f.message
    assert statuses(report)["model.ddp"] == ["pass"]


# --- per-rank batches ----------------------------------------------------------------------------

def test_batchnorm_with_two_samples_per_rank_warns_with_the_conversion_line():
    report = ddp_report("batchnorm_two_per_rank")
    f = only(report, "model.ddp_batches")
    assert (f.status, f.recipe) == ("warn", "ddp-syncbatchnorm")
    assert "2 BatchNorm layers (`1`, `4`) normalize over 2 samples per rank" in f.message
    assert "nn.SyncBatchNorm.convert_sync_batchnorm(model)" in f.fix
    sync = only(report, "model.ddp_sync")  # running stats after the per-rank step: expected
    assert sync.status == "pass" and "BatchNorm running statistics differ" in sync.message


def test_a_seeded_loader_without_distributed_sampler_fails_and_saving_the_wrapper_warns(
        monkeypatch):
    monkeypatch.setenv("CVDOCTOR_TEST_SEEDED", "1")
    report = ddp_report("loader_no_sampler")
    data = only(report, "model.ddp_batches")
    assert (data.status, data.recipe) == ("fail", "ddp-distributed-sampler")
    assert "every rank drew the same first batch from train_loader" in data.message
    assert "RandomSampler, not a DistributedSampler" in data.message
    assert "set_epoch" in data.fix
    run = only(report, "model.ddp")
    assert (run.status, run.recipe) == ("warn", "checkpoint-key-prefix")
    assert "saved 4 of 4 keys with DDP's `module.` prefix" in run.message
    assert "Missing key(s) in state_dict" in run.message  # the real load_state_dict error
    assert "getattr(model, 'module', model)" in run.fix


def test_an_unseeded_loader_without_distributed_sampler_warns(monkeypatch):
    monkeypatch.delenv("CVDOCTOR_TEST_SEEDED", raising=False)
    f = only(ddp_report("loader_no_sampler", select=("model.ddp_batches",)), "model.ddp_batches")
    assert (f.status, f.recipe) == ("warn", "ddp-distributed-sampler")
    assert "the ranks drew different first batches" in f.message


# --- healthy set-ups -------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", ["healthy_cnn", "healthy_mlp"])
def test_healthy_models_pass_every_ddp_check(name, seed, monkeypatch):
    monkeypatch.setenv("CVDOCTOR_TEST_SEED", str(seed))
    report = ddp_report(name)
    assert statuses(report) == {c: ["pass"] for c in DDP_CHECKS}, [
        (f.check, f.message) for f in report.findings if f.status != "pass"]


def test_the_healthy_cnn_reports_its_sampler_and_checkpoint():
    report = ddp_report("healthy_cnn")
    assert "get_dataloader() splits the data with DistributedSampler (2 replicas)" in \
        only(report, "model.ddp_batches").message
    run = only(report, "model.ddp")
    assert "2 ranks, gloo on CPU: every rank joined the process group" in run.message
    assert "save_checkpoint() writes a state_dict that loads into the bare model" in run.message


# --- ranks that fail ----------------------------------------------------------------------------

def test_a_rank_that_raises_is_the_finding_and_the_others_are_told_apart():
    report = ddp_report("raises_on_rank1")
    f = only(report, "model.ddp")
    assert (f.status, f.recipe) == ("fail", "ddp-rank-failed")
    assert f.message.startswith("Data-parallel run") is False
    assert "rank 1 raised FileNotFoundError" in f.message
    assert "shards/calibration-rank1.pt" in f.message
    assert "rank 0 then failed" in f.message  # how it reached the other rank
    assert f.evidence["root"]["rank"] == 1
    assert statuses(report)["model.ddp_unused"] == ["skip"]


def test_a_rank_that_hangs_is_stopped_named_and_leaves_nothing_behind(tmp_path, monkeypatch):
    pidfile = tmp_path / "helper.pid"
    monkeypatch.setenv("CVDOCTOR_TEST_PIDFILE", str(pidfile))
    ctx = make_context(all_commands()["model"], str(TARGETS / "hangs_on_rank1.py"),
                       {"ddp": 2, "ddp_timeout": 2.0})
    report = run_context("model", ctx, select=["model.ddp"])
    f = only(report, "model.ddp")
    assert (f.status, f.recipe) == ("fail", "ddp-rank-hang")
    assert "rank 1 made no progress" in f.message
    assert "hangs_on_rank1.py:" in f.message and "in forward" in f.message  # from its stack
    no_rank_left(ctx.fact("ddp")["run"])
    helper = int(pidfile.read_text())  # started by rank 1: killed with its process group
    deadline = time.monotonic() + 5
    while psutil.pid_exists(helper) and time.monotonic() < deadline:
        if psutil.Process(helper).status() == psutil.STATUS_ZOMBIE:
            break
        time.sleep(0.05)
    assert not psutil.pid_exists(helper) or \
        psutil.Process(helper).status() == psutil.STATUS_ZOMBIE


# --- ports ---------------------------------------------------------------------------------------

def _healthy_launch(**kw) -> Launch:
    return Launch(world_size=2, source={"kind": "target", "target": str(TARGETS / "healthy_mlp.py"),
                                        "options": {}}, timeout_s=30, **kw)


def test_a_busy_port_is_chosen_around():
    with socket.socket() as busy:
        busy.bind(("", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_ranks(_healthy_launch(port=port))
    assert result["outcome"] == "completed"
    assert result["port"] != port
    assert result["port_note"].startswith(f"port {port} was already in use")
    no_rank_left(result)


def test_a_port_taken_before_rank_0_listens_is_retried(monkeypatch):
    """The race: the port was free when chosen, taken when rank 0 binds (EADDRINUSE)."""
    with socket.socket() as busy:
        busy.bind(("", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        ports = iter([taken])
        real = runner.free_port
        monkeypatch.setattr(runner, "free_port", lambda: next(ports, None) or real())
        result = run_ranks(_healthy_launch())
    assert result["outcome"] == "completed" and result["attempts"] == 2
    assert result["port_note"] == (f"port {taken} was taken before rank 0 could listen on it: "
                                   f"used {result['port']}")
    no_rank_left(result)


@pytest.mark.slow
def test_without_the_fork_server_ranks_are_plain_processes(monkeypatch):
    monkeypatch.setenv("CVDOCTOR_DDP_ZYGOTE", "0")
    launch = _healthy_launch()
    launch.world_size = 1  # one fresh interpreter is enough to cover the path
    result = run_ranks(launch)
    assert result["outcome"] == "completed"
    assert all(r["done"] for r in result["ranks"])
    assert [c for c in psutil.Process().children(recursive=True)
            if "cvdoctor.ddp.worker" in " ".join(c.cmdline())] == []


# --- how it is asked for -------------------------------------------------------------------------

def test_without_ddp_the_ddp_checks_stay_out_and_say_how_to_ask_when_named():
    ctx = make_context(all_commands()["model"], str(REPO / "examples/cifar10_cnn.py"), {})
    plain = run_context("model", ctx)
    assert not set(plain.check_ids()) & set(DDP_CHECKS)  # opt-in: not in ordinary reports
    report = run_context("model", ctx, select=["model.ddp*"])
    assert statuses(report) == {c: ["skip"] for c in DDP_CHECKS}
    message = only(report, "model.ddp").message
    assert "give --ddp" in message and "`ddp = ...` in the model file" in message


def test_the_files_ddp_hint_turns_the_run_on():
    report = ddp_report("healthy_mlp", ddp=None, select=("model.ddp",))
    assert only(report, "model.ddp").status == "pass"


def test_one_rank_runs_ddp_but_has_nothing_to_compare():
    report = ddp_report("unused_head", ddp=1)
    assert only(report, "model.ddp_unused").status == "fail"  # DDP's error needs no second rank
    sync = only(report, "model.ddp_sync")
    assert sync.status == "skip" and "one rank" in sync.message


def test_more_ranks_than_cvdoctor_starts_skip():
    report = ddp_report("healthy_mlp", ddp=64, select=("model.ddp",))
    f = only(report, "model.ddp")
    assert f.status == "skip" and "at most 16 ranks" in f.message


def test_a_forward_that_fails_in_one_process_is_not_run_again_in_n(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\nfrom torch import nn\nddp = 2\n"
                   "def build_model():\n    return nn.Linear(5, 2)\n"
                   "def get_batch():\n    return torch.randn(4, 3), torch.tensor([0, 1, 0, 1])\n")
    ctx = make_context(all_commands()["model"], str(bad), {})
    f = only(run_context("model", ctx, select=["model.ddp"]), "model.ddp")
    assert f.status == "skip" and "model.forward" in f.message


def test_the_command_line_reports_and_exits_by_the_findings():
    runner_ = CliRunner()
    ok = runner_.invoke(cli, ["model", str(TARGETS / "healthy_mlp.py"), "--ddp", "2",
                              "--select", "model.ddp*", "--json"])
    assert ok.exit_code == 0, ok.output
    report = json.loads(ok.stdout)
    assert {f["check"]: f["status"] for f in report["findings"]} == {c: "pass" for c in DDP_CHECKS}
    bad = runner_.invoke(cli, ["model", str(TARGETS / "unused_head.py"), "--select", "model.ddp*"])
    assert bad.exit_code == 1
    assert "cvdoctor explain ddp-unused-parameters" in bad.stdout
    usage = runner_.invoke(cli, ["model", str(TARGETS / "healthy_mlp.py"), "--ddp", "0"])
    assert usage.exit_code == 2


# --- the Python API and the pytest helper ----------------------------------------------------------

class UnusedHeadNet(nn.Module):
    """Module level, so the ranks can unpickle it."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(12, 6)
        self.head = nn.Linear(6, 3)
        self.aux = nn.Linear(6, 3)

    def forward(self, x):
        return self.head(torch.relu(self.body(x)))


def _batch():
    return torch.randn(8, 12), torch.arange(8) % 3


def test_objects_given_to_the_api_reach_the_ranks_pickled():
    model = UnusedHeadNet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = check_model(model, _batch(), ddp=2, ddp_timeout=30, select=["model.ddp*"])
    f = only(report, "model.ddp_unused")
    assert f.status == "fail" and "`aux.weight`, `aux.bias` in `aux`" in f.message
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_model_class_defined_in_a_function_cannot_be_sent_and_says_so():
    class Local(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(12, 3)

        def forward(self, x):
            return self.fc(x)

    f = only(check_model(Local(), _batch(), ddp=2, select=["model.ddp"]), "model.ddp")
    assert f.status == "skip" and "cannot be sent to the rank processes" in f.message
    assert "give the model file instead" in f.message


def test_assert_ddp_ready_passes_a_healthy_file_and_fails_a_broken_model():
    report = assert_ddp_ready(TARGETS / "healthy_mlp.py", timeout=30)
    assert report.get_all("model.ddp")[0].status == "pass"
    with pytest.raises(AssertionError) as info:
        assert_ddp_ready(UnusedHeadNet(), _batch(), world_size=2, timeout=30)
    assert "model.ddp_unused" in str(info.value)
    assert "cvdoctor explain ddp-unused-parameters" in str(info.value)
