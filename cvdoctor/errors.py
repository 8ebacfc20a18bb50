"""Errors that are the user's to fix, not cvdoctor bugs: the command line prints the message as
one line on stderr and exits 2."""
from __future__ import annotations


class UsageError(Exception):
    """Bad input (an option value, a path, a target that cannot be loaded); the message is for
    the user, as is."""


class TargetError(UsageError):
    """The target cannot be loaded; the message says what to change. The command line prints
    ``cannot load TARGET: <message>`` (a message that starts with the target says it once)."""
