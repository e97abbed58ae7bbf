"""Errors the command line reports without a traceback."""

from __future__ import annotations

__all__ = ["UsageError"]


class UsageError(Exception):
    """Bad command-line input (an option, a file, a parameter): printed as one line, exit status 2."""
