"""A task whose loss is not loss_fn(model(x), y): training_step gives the loss."""
import torch
import torch.nn.functional as F

from _shared import TinyNet, batch

model = TinyNet(4)
batch = batch(8, 4)


def training_step(model, batch):
    x, y = batch
    logits = model(x)
    return F.cross_entropy(logits, y) + 1e-4 * logits.pow(2).mean()
