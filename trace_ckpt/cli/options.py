"""Every option (and argument) more than one command takes, declared once with its one help text.

A command names the type: ``def prune(ckpt: Ckpt, ..., level: Level = None)``.
"""

from __future__ import annotations

from typing import Annotated

import typer

Ckpt = Annotated[str, typer.Argument(metavar="CKPT", help="checkpoint file or URL")]
OutCkpt = Annotated[str, typer.Argument(metavar="OUT", help="checkpoint file or URL to write (written atomically)")]

AllowModule = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-module",
        "--allow-class",
        metavar="MODULE[.Class]",
        help="a module of your own classes (or one module.Class) that loads of this checkpoint may use; repeatable",
    ),
]
RequireSignature = Annotated[
    bool,
    typer.Option(
        "--require-signature",
        help="refuse a checkpoint unless your key or a trusted public key verifies its signature "
        "(or TRACE_CKPT_REQUIRE_SIGNATURE=true)",
    ),
]
Level = Annotated[
    int | None, typer.Option("--level", min=1, max=22, help="zstd level, 1-22 (default 3, or TRACE_CKPT_LEVEL)")
]
Json = Annotated[bool, typer.Option("--json", help="print the result as JSON on stdout")]
Force = Annotated[
    bool, typer.Option("--force", help="replace OUT if it exists (without it, an existing OUT is an error)")
]


def _quiet(value: bool) -> bool:
    if value:
        import logging

        from trace_ckpt.cli import render

        render.state.verbosity = 0
        logging.getLogger("trace_ckpt").setLevel(logging.WARNING)
    return value


def _verbose(value: bool) -> bool:
    if value:
        import logging

        from trace_ckpt.cli import render

        render.state.verbosity = 2
        logging.getLogger("trace_ckpt").setLevel(logging.DEBUG)
    return value


Quiet = Annotated[
    bool,
    typer.Option(
        "--quiet", "-q", callback=_quiet, help="print only errors, warnings and the data asked for (no notes, no bars)"
    ),
]
Verbose = Annotated[
    bool,
    typer.Option(
        "--verbose",
        "-v",
        callback=_verbose,
        help="also print details and debug messages, and a traceback on an unexpected error",
    ),
]
