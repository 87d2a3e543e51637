"""Rows -> CSV, run summary JSON, overlays for human review."""
