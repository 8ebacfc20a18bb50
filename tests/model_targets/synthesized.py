"""No batch: input_shape and num_classes let cvdoctor synthesize one; the factory takes
num_classes (--num-classes reaches it)."""
from _shared import TinyNet

input_shape = (3, 16, 16)
num_classes = 4


def create_model(num_classes=num_classes):
    return TinyNet(num_classes)
