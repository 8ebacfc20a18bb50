"""SAM (segment-anything) set-ups in `cvdoctor model`."""
