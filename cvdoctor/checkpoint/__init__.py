"""The checkpoint library: what a checkpoint file is, whether loading it would run code, whether
it is whole, what it holds and whether it fits a model, all from its bytes.

Nothing here unpickles, imports torch or executes anything from a file; results are plain data
(dicts and dataclasses) that can be recorded as JSON and replayed.

- ``discovery``: where checkpoints live (cwd, given folders, torch.hub cache, ultralytics).
- ``known``: what a file name promises (SAM sizes and MD5 prefixes, YOLOv8, torch-hub hashes).
- ``formats``: the container from the first bytes; safetensors and npy header checks.
- ``zipreader``: zip archives read the way torch's miniz reader does.
- ``pickle_vm``: a symbolic pickle machine that records what a pickle would call.
- ``safety``: the allowlist that judges those calls.
- ``structure``: tensors (key, shape, dtype, device) from the rebuild calls' arguments.
- ``fit``: does a state dict fit a model; prefixes, heads, variants, the exact loading code.
- ``hashes``: digests with a cache; ``loading``: the weights_only load probe.
- ``scan.inspect_file(path)``: all of the above for one file.
"""
from __future__ import annotations


def inspect_file(path, *, deep: bool = False, structure: bool = True):
    """Everything cvdoctor can say about one file without running it (see ``scan``)."""
    from cvdoctor.checkpoint.scan import inspect_file as _inspect

    return _inspect(path, deep=deep, structure_wanted=structure)
