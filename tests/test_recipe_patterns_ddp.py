"""Error-text patterns of the recipes behind env.limits, env.distributed and the model.ddp checks:
the messages NCCL, gloo, libibverbs and torch.distributed print (real wordings, different hosts,
pids and paths) rank their recipe first; unrelated errors match none of them."""
from __future__ import annotations

import re

import pytest

from cvdoctor.catalog import load_catalog, match_text

MINE = ("memlock-rdma",)

FIRST = [
    ("memlock-rdma", "gpu-node-07:21431:21580 [3] misc/ibvwrap.cc:153 NCCL WARN Call to "
                     "ibv_reg_mr failed with error Bad address"),
    ("memlock-rdma", "dgx1:2891:2950 [0] NCCL INFO NET/IB : Using [0]mlx5_0:1/IB ; OOB ib0:10.0.0.1<0>\n"
                     "dgx1:2891:2950 [0] misc/ibvwrap.cc:106 NCCL WARN Call to ibv_create_qp failed\n"
                     "dgx1:2891:2950 [0] NCCL INFO transport/net_ib.cc:421 -> 2"),
    ("memlock-rdma", "libibverbs: Warning: RLIMIT_MEMLOCK is 32768 bytes.\n"
                     "    This will severely limit memory registrations."),
    ("memlock-rdma", "libibverbs: Warning: RLIMIT_MEMLOCK is 65536 bytes.\n"
                     "    This will severely limit memory registrations.\n"
                     "[rank1]: torch.distributed.DistBackendError: NCCL error in: "
                     "/opt/pytorch/pytorch/torch/csrc/distributed/c10d/NCCLUtils.cpp:77, unhandled "
                     "system error (run with NCCL_DEBUG=INFO for details), NCCL version 2.27.7\n"
                     "[rank1]: Last error:\n[rank1]: Call to ibv_reg_mr failed\n"
                     "node2:911:1024 [1] NCCL WARN Call to ibv_reg_mr failed"),
]

UNRELATED = [
    "KeyError: 'lr'",
    "RuntimeError: CUDA error: out of memory",
    "OSError: [Errno 12] Cannot allocate memory",
    "ulimit: max locked memory: cannot modify limit: Operation not permitted",
]


def _ids(cases):
    return [f"{rid}-{n}" for n, (rid, _) in enumerate(cases)]


def test_every_recipe_here_exists():
    assert [rid for rid in MINE if rid not in load_catalog()] == []


@pytest.mark.parametrize("recipe_id,text", FIRST, ids=_ids(FIRST))
def test_realistic_message_ranks_its_recipe_first(recipe_id, text):
    matches = match_text(text)
    assert matches and matches[0].recipe == recipe_id, [(m.recipe, m.score) for m in matches]


@pytest.mark.parametrize("text", UNRELATED)
def test_unrelated_error_matches_none_of_these(text):
    assert [m.recipe for m in match_text(text) if m.recipe in MINE] == []


def test_every_recipe_here_has_several_wordings():
    counts = {rid: sum(1 for r, _ in FIRST if r == rid) for rid in MINE}
    assert {rid: n for rid, n in counts.items() if n < 3} == {}


def test_every_pattern_is_exercised_by_a_message():
    unused = [(rid, p.pattern) for rid in MINE for p in load_catalog()[rid].compiled
              if not any(p.search(t) for r, t in FIRST if r == rid)]
    assert unused == []


def test_patterns_stay_linear():
    nested = re.compile(r"\((?:[^()\\]|\\.)*[+*]\)[+*{]")
    assert [(rid, p) for rid in MINE for p in load_catalog()[rid].patterns if nested.search(p)] == []
