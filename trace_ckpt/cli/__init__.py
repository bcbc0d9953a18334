"""The ``trace-ckpt`` command line. Exit codes are one table for every command (docs/cli.md).

``app.py`` holds the app, the exit-code table and ``main``; ``options.py`` the options several commands
share; ``render.py`` what they print. Each command group is one module that registers its commands on
``app`` when imported, listed in ``_COMMAND_MODULES`` in the order ``--help`` shows them.
"""

import importlib

from trace_ckpt.cli.app import EXIT_CODES, app, main

_COMMAND_MODULES: tuple[str, ...] = ("save", "show", "keygen", "ls", "export", "resume", "run", "surgery")

for _name in _COMMAND_MODULES:
    importlib.import_module(f"trace_ckpt.cli.{_name}")

__all__ = ["EXIT_CODES", "app", "main"]
