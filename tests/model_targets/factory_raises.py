"""build_model() raises inside the user's own helper."""
from torch import nn


def make_backbone(depth):
    if depth not in (18, 34):
        raise ValueError(f"unsupported depth {depth}")
    return nn.Identity()


def build_model():
    return nn.Sequential(make_backbone(depth=20), nn.Linear(8, 2))
