"""pytest plugin entry point (pytest11). At import time: pytest and the standard library only."""
