"""The one exception a dataset inspection raises: input that cannot be inspected at all.

Everything that can be counted (a bad label row, a corrupt image) is an issue in the result, not
an exception. `DatasetError` is for the target itself: a missing path, a YAML file that does not
parse, a folder with nothing recognizable in it. Its message is one line that names the path, so
the command can print it and exit 2.
"""
from __future__ import annotations


class DatasetError(Exception):
    """The dataset target cannot be inspected; `str(exc)` is one line naming the path."""
