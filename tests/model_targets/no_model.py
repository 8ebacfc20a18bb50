"""Defines data but no model under any looked-up name."""
import torch

net_config = {"depth": 18}
batch = (torch.randn(2, 3, 8, 8), torch.tensor([0, 1]))
