"""cvdoctor: environment and model checks for PyTorch computer-vision work.

Importing this package is cheap (no torch): `cvdoctor explain` and the pytest plugin rely on it.
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "check_env", "check_model"]


def check_env(**kwargs):
    """Run the environment checks; see :func:`cvdoctor.api.check_env`."""
    from cvdoctor.api import check_env as _check_env

    return _check_env(**kwargs)


def check_model(model, batch=None, **kwargs):
    """Run the model checks; see :func:`cvdoctor.api.check_model`."""
    from cvdoctor.api import check_model as _check_model

    return _check_model(model, batch, **kwargs)
