"""Command-line entry points (scripts/*.py and the console scripts call these).

The top layer: may import anything in the package; nothing imports it (``cli/common.py`` holds
the shared CLI plumbing).
"""
