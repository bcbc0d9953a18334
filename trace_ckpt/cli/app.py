"""The ``trace-ckpt`` app: the typer object every command module registers on, the exit-code table, and
``main``, which turns every failure into one line on stderr (``trace-ckpt: error: ...``) and its exit code.

Commands are thin layers over the Python API, one module per group (``cli/__init__.py`` lists them).
"""

from __future__ import annotations

import contextvars
import logging
import sys
from typing import Annotated

import typer

from trace_ckpt.cli import render
from trace_ckpt.cli.render import bars, err, out
from trace_ckpt.errors import (
    CheckpointError,
    CheckpointNotFoundError,
    CorruptCheckpointError,
    MissingClassError,
    MissingExtraError,
    NothingToExportError,
    NotReadyError,
    RestoreError,
    ResumeError,
    SaveError,
    StorageAccessError,
    UnsupportedVersionError,
    UntrustedContentError,
    WorkspaceConflictError,
)
from trace_ckpt.settings import setting

EXIT_CODES: dict[int, str] = {
    0: "ok",
    1: "other error",
    2: "usage: a bad command, option or value",
    CheckpointNotFoundError.exit_code: "not found: the input path does not exist, or holds no session dump",
    CorruptCheckpointError.exit_code: "corrupt: not a checkpoint, truncated, or a checksum does not hold",
    UnsupportedVersionError.exit_code: "unsupported version: written by a newer trace-ckpt",
    UntrustedContentError.exit_code: "untrusted: a class off the class list, a bad signature, an unsigned legacy dump, a result.h5 that could run code, resume of a checkpoint neither signed with your key nor trusted (--trust)",
    SaveError.exit_code: "save failed: the output could not be written, or it exists and replacing it was not asked for (the previous file is untouched)",
    WorkspaceConflictError.exit_code: "conflict: restoring would overwrite a different existing file",
    MissingClassError.exit_code: "missing class: a module the file needs is not importable here",
    NothingToExportError.exit_code: "nothing to export: the checkpoint holds no such data, or factor values that cannot be combined",
    ResumeError.exit_code: "cannot resume: the new run cannot be set up as asked (e.g. a bad --base-features folder)",
    MissingExtraError.exit_code: "missing extra: an optional dependency is not installed (e.g. pip install 'trace-ckpt[plot]' for --plot, 'trace-ckpt[s3]' for s3:// URLs)",
    StorageAccessError.exit_code: "storage: the store behind a URL refused access (credentials) or could not be reached",
    RestoreError.exit_code: "restore failed: a workspace file could not be written (disk full, no permission)",
    NotReadyError.exit_code: "not ready: this machine lacks what the resumed phase needs (Docker or RD-Agent's conda env, the factor data folder, LLM settings); found before RD-Agent starts, nothing written",
    130: "interrupted (Ctrl-C)",
}

app = typer.Typer(
    name="trace-ckpt",
    help="Checkpoint and restore RD-Agent's Trace: save a factor run, inspect it, resume a model phase on it.",
    add_completion=True,  # --install-completion / --show-completion, as rdagent's own typer app has
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from trace_ckpt import __version__

        out.print(f"trace-ckpt {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    storage_option: Annotated[
        list[str] | None,
        typer.Option(
            "--storage-option",
            metavar="KEY=VALUE",
            help="an fsspec option for checkpoint URLs (e.g. endpoint_url=http://127.0.0.1:9000); repeatable; goes before the command",
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """Checkpoint and restore RD-Agent's Trace: save a factor run, inspect it, resume a model phase on it."""
    if err.is_terminal:
        from trace_ckpt.storage import set_transfer_progress

        set_transfer_progress(lambda label, total: bars.bar(label, total, count_files=False))
    if storage_option:
        from trace_ckpt.storage import options_from_pairs, set_default_options

        try:
            set_default_options(options_from_pairs(storage_option))
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--storage-option") from None
    if setting("use_rdagent_key", False):  # RD-Agent's key is read by trace_ckpt.rdagent, which hands it to signing
        import trace_ckpt.rdagent.keys  # noqa: F401


class _OneLine(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        err.print(f"trace-ckpt: {record.levelname.lower()}: {record.getMessage()}")


def _interrupted() -> str:
    done = render.state.written
    if done:
        return f"trace-ckpt: interrupted (after {', '.join(done)} was completely written)"
    return "trace-ckpt: interrupted"


def main(argv: list[str] | None = None) -> None:
    """Entry point: run a command, turn every failure into one line and its exit code."""
    logger = logging.getLogger("trace_ckpt")
    if not logger.handlers:
        logger.addHandler(_OneLine())
        logger.propagate = False
    logger.setLevel(logging.INFO)
    render.reset_state()
    code = 0
    try:
        # a fresh context per call: --storage-option never leaks into the next call in one process
        rv = contextvars.copy_context().run(app, args=argv, prog_name="trace-ckpt", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
        if code == 130:  # typer turns Ctrl-C into a silent Exit(130); no command returns 130 itself
            err.print(_interrupted())
    except typer.Exit as e:
        code = e.exit_code
    except (typer.Abort, KeyboardInterrupt):
        err.print(_interrupted())
        code = 130
    except typer.TyperException as e:  # usage errors of the command line parser
        ctx = getattr(e, "ctx", None)
        if type(e).__name__ == "NoArgsIsHelpError" and ctx is not None:
            out.print(ctx.get_help())
        else:
            where = f"trace-ckpt {ctx.info_name}" if ctx is not None and ctx.parent is not None else "trace-ckpt"
            hint = f"see '{where} --help'"
            if "--storage-option" in e.format_message():
                hint = "--storage-option goes before the command: trace-ckpt --storage-option KEY=VALUE inspect URL"
            err.print(f"trace-ckpt: usage error: {e.format_message()} ({hint})")
        code = getattr(e, "exit_code", 2)
    except CheckpointError as e:
        err.print(f"trace-ckpt: error: {e}")
        code = e.exit_code
    except Exception as e:  # never a traceback for users; --verbose or TRACE_CKPT_DEBUG=1 shows it
        if setting("debug", False):
            raise
        if render.state.verbosity > 1:
            import traceback

            traceback.print_exc()
        err.print(
            f"trace-ckpt: error: unexpected {type(e).__name__}: {e} (rerun with --verbose or TRACE_CKPT_DEBUG=1 for details)"
        )
        code = 1
    sys.exit(code)
