"""Command-line entry points (scripts/*.py call these)."""
