"""Reliability checks: scripts with a pass/fail line (see RELIABILITY.md)."""
