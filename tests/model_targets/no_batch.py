from _shared import TinyNet


def build_model():
    return TinyNet(4)
