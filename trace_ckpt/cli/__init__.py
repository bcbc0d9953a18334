"""The ``trace-ckpt`` command line. Exit codes are one table for every command (docs/cli.md).

Commands live in ``app.py`` and in one module per group of commands; each such module registers its
commands on ``app`` when imported, and is listed in ``_COMMAND_MODULES``.
"""

import importlib

from trace_ckpt.cli.app import EXIT_CODES, app, main

_COMMAND_MODULES: tuple[str, ...] = ("ls", "run", "surgery")

for _name in _COMMAND_MODULES:
    importlib.import_module(f"trace_ckpt.cli.{_name}")

__all__ = ["EXIT_CODES", "app", "main"]
