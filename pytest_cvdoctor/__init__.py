"""pytest plugin for cvdoctor (registered through the pytest11 entry point)."""
