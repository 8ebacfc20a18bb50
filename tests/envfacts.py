"""Recorded env facts for tests: what the "platform" provider returns on an ordinary x86_64
Linux machine, with keyword overrides for the machines this one is not."""
from __future__ import annotations


def platform_facts(**over) -> dict:
    facts = {"system": "Linux", "release": "6.8.0", "machine": "x86_64", "python": "3.11.7",
             "python_implementation": "CPython", "libc": "glibc 2.36", "container": None,
             "container_hints": [], "ngc": None, "ngc_env": {}, "jetson": None, "dgx": None,
             "wsl": False, "torch_version": "2.15.0", "torch_requires_python": ">=3.11"}
    facts.update(over)
    return facts
