"""An nn.Module under a name cvdoctor does not look for: --model net picks it."""
import torch

from _shared import TinyNet, batch as make_batch

net = TinyNet(4)
batch = make_batch(8, 4)
