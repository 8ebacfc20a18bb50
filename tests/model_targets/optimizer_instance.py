"""An optimizer instance with two param groups, bound to the module-level model."""
import torch

from _shared import TinyNet, batch

model = TinyNet(4)
optimizer = torch.optim.SGD(
    [{"params": [p for n, p in model.named_parameters() if not n.startswith("fc")], "lr": 0.01},
     {"params": model.fc.parameters(), "lr": 0.1}],
    momentum=0.9, weight_decay=5e-4)
batch = batch(8, 4)
