"""Raises while being imported (a missing data file, say)."""
open("/nonexistent/cvdoctor/labels.csv")
