"""The ``trace-ckpt`` command line. Exit codes are one table for every command (docs/cli.md)."""

from trace_ckpt.cli.app import EXIT_CODES, app, main

__all__ = ["EXIT_CODES", "app", "main"]
