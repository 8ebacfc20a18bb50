"""Prints while imported and in forward: stdout must still carry only the report."""
import torch

from _shared import TinyNet, batch

print("loading my model ...")


class Chatty(TinyNet):
    def forward(self, x):
        print("forward", tuple(x.shape))
        return super().forward(x)


model = Chatty(4)
batch = batch(8, 4)
