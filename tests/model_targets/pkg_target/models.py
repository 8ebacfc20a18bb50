"""Importable as pkg_target.models (the package.module:attr form)."""
from torch import nn

from _shared import TinyNet, batch as make_batch

input_shape = (3, 16, 16)


def small():
    return TinyNet(4)


def big():
    return nn.Sequential(TinyNet(4), nn.Identity())


batch = make_batch(8, 4)
