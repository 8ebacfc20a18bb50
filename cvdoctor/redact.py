"""Privacy: strip home directory, user and host names, tokens and GPU UUIDs from a report."""
from __future__ import annotations

import getpass
import os
import re
import socket
from pathlib import Path
from typing import Any

_TOKEN = re.compile(r"\b(hf_[A-Za-z0-9]{10,}|ghp_[A-Za-z0-9]{10,}|sk-[A-Za-z0-9_-]{16,})")
_GPU_UUID = re.compile(r"\b(GPU|MIG)-[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}\b")


def _identity() -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    home = str(Path.home())
    if home not in ("/", ""):
        pairs.append((home, "~"))
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user database entry in some containers
        user = ""
    host = socket.gethostname()
    # Short or generic names would shred ordinary words ("root" in "/root" is handled by home).
    if user and len(user) >= 3 and user not in ("root", "user", "admin"):
        pairs.append((user, "<user>"))
    if host and len(host) >= 3 and host not in ("localhost",):
        pairs.append((host, "<host>"))
    return pairs


def redact_text(text: str, pairs: list[tuple[str, str]] | None = None) -> str:
    pairs = _identity() if pairs is None else pairs
    text = _TOKEN.sub("<token>", text)
    text = _GPU_UUID.sub("GPU-<uuid>", text)
    for secret, stand_in in pairs:
        text = re.sub(rf"(?<![\w.-]){re.escape(secret)}(?![\w-])", stand_in, text) \
            if stand_in != "~" else text.replace(secret, stand_in)
    return text


def redact(value: Any, pairs: list[tuple[str, str]] | None = None) -> Any:
    pairs = _identity() if pairs is None else pairs
    if isinstance(value, str):
        return redact_text(value, pairs)
    if isinstance(value, dict):
        return {k: redact(v, pairs) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v, pairs) for v in value]
    return value


def redact_env_token(name: str) -> str | None:
    """Report whether a token variable is set without ever returning its value."""
    value = os.environ.get(name)
    return None if value is None else f"set ({len(value)} characters)"
