"""Broken for DDP: rank 1 blocks in its forward (waiting on something that never comes). It also
starts a helper process of its own (as DataLoader workers are), whose pid goes to the file named
by CVDOCTOR_TEST_PIDFILE: nothing the rank started may outlive the run."""
import os
import subprocess
import sys
import time

import torch
from torch import nn

ddp = 2


class Blocks(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))

    def forward(self, x):
        if os.environ.get("RANK") == "1":
            time.sleep(3600)  # stands for a stalled read or a lock
        return self.net(x)


def build_model():
    pidfile = os.environ.get("CVDOCTOR_TEST_PIDFILE")
    if pidfile and os.environ.get("RANK") == "1":
        helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        with open(pidfile, "w") as fh:
            fh.write(str(helper.pid))
    return Blocks()


def get_batch():
    return torch.randn(8, 3, 8, 8), torch.arange(8) % 4
