"""Fixtures shared by the test modules (helpers for fixture models live in modelzoo.py)."""
from __future__ import annotations

import pytest


@pytest.fixture
def one_thread():
    """One intra-op thread: on a 2-core CPU shared with other jobs, two threads run tiny models
    many times slower (the verdicts do not depend on it, the test time does)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
