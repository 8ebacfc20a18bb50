"""Exit codes of the `cvdoctor` command — the one place they are defined (README mirrors it)."""
OK = 0  # nothing failed (warnings allowed unless --strict)
CHECK_FAILED = 1  # a check failed (with --strict: or warned); explain: text matched no recipe
USAGE = 2  # bad options, unknown recipe id, or a target that cannot be loaded
CRASHED = 3  # cvdoctor itself crashed
