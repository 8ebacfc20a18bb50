"""Off-by-one labels: 1..4 for a 4-way head (the real IndexError comes from the loss)."""
from _shared import TinyNet, batch as make_batch

model = TinyNet(4)
_x, _y = make_batch(8, 4)
batch = (_x, _y + 1)
