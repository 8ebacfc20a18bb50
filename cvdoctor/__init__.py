"""cvdoctor: environment and model checks for PyTorch computer-vision work.

Importing this package is cheap (no torch): `cvdoctor explain` and the pytest plugin rely on it.
The Python API, one function per command (``check_env``, ``check_model``, ...), is loaded on
first use (PEP 562); each has a real signature: ``help(cvdoctor.check_model)``.
"""
from __future__ import annotations

__version__ = "0.1.0"


def _api_names() -> list[str]:
    from cvdoctor.commands import all_commands

    return [f"check_{c.name}" for c in all_commands().values() if c.click_command is None]


def __getattr__(name: str):
    if name.startswith("check_") and name in _api_names():
        from cvdoctor import api

        return getattr(api, name)
    raise AttributeError(f"module 'cvdoctor' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_api_names()])


__all__ = ["__version__", *_api_names()]
