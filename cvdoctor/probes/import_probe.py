"""Probe: import one module in a fresh interpreter and report the real error, if any.

``python -m cvdoctor.probes.import_probe MODULE`` prints
``{"module", "imported", "error", "version", "file"}``. A segfault or a hang in the module's
native code is seen by the caller (``run_probe``) as a signal or a timeout.
"""
from __future__ import annotations

import importlib
import sys
import traceback

from cvdoctor.probes import emit


def main(argv: list[str]) -> int:
    module = argv[0]
    try:
        mod = importlib.import_module(module)
    except BaseException as exc:  # noqa: BLE001 - any failure, SystemExit included, is the answer
        lines = traceback.format_exception_only(type(exc), exc)
        emit({"module": module, "imported": False, "error": "".join(lines).strip(),
              "traceback": traceback.format_exc(limit=-6)})
        return 0
    emit({"module": module, "imported": True, "error": None,
          "version": str(getattr(mod, "__version__", "")) or None,
          "file": getattr(mod, "__file__", None)})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
