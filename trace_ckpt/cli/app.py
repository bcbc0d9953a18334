"""Commands of ``trace-ckpt``. Each is a thin layer over the Python API.

Errors end in one line on stderr (``trace-ckpt: error: ...``) and the exit code of EXIT_CODES;
``inspect`` and ``verify`` never unpickle and never import rdagent.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer

from trace_ckpt.errors import (
    CheckpointError,
    CheckpointNotFoundError,
    CorruptCheckpointError,
    MissingClassError,
    MissingExtraError,
    NothingToExportError,
    RestoreError,
    ResumeError,
    SaveError,
    StorageAccessError,
    UnsupportedVersionError,
    UntrustedContentError,
    WorkspaceConflictError,
)
from trace_ckpt.format.manifest import Manifest

EXIT_CODES: dict[int, str] = {
    0: "ok",
    1: "other error",
    2: "usage: a bad command, option or value",
    CheckpointNotFoundError.exit_code: "not found: the input path does not exist, or holds no session dump",
    CorruptCheckpointError.exit_code: "corrupt: not a checkpoint, truncated, or a checksum does not hold",
    UnsupportedVersionError.exit_code: "unsupported version: written by a newer trace-ckpt",
    UntrustedContentError.exit_code: "untrusted: a class off the class list, a bad signature, an unsigned legacy dump, a result.h5 that could run code, resume of a checkpoint neither signed with your key nor trusted (--trust)",
    SaveError.exit_code: "save failed: the output could not be written (the previous file is untouched)",
    WorkspaceConflictError.exit_code: "conflict: restoring would overwrite a different existing file",
    MissingClassError.exit_code: "missing class: a module the file needs is not importable here",
    NothingToExportError.exit_code: "nothing to export: the checkpoint holds no such data, or factor values that cannot be combined",
    ResumeError.exit_code: "cannot resume: the new run cannot be set up as asked (e.g. a bad --base-features folder)",
    MissingExtraError.exit_code: "missing extra: an optional dependency is not installed (e.g. pip install 'trace-ckpt[plot]' for --plot, 'trace-ckpt[s3]' for s3:// URLs)",
    StorageAccessError.exit_code: "storage: the store behind a URL refused access (credentials) or could not be reached",
    RestoreError.exit_code: "restore failed: a workspace file could not be written (disk full, no permission)",
    130: "interrupted (Ctrl-C)",
}

app = typer.Typer(
    name="trace-ckpt",
    help="Checkpoint and restore RD-Agent's Trace: save a factor run, inspect it, resume a model phase on it.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class _Stream:
    """Plain text to stdout or stderr, looked up at each call (so redirection and test capture work).

    Not rich's Console: importing rich costs ~0.1 s of every command, and `inspect` must start fast;
    rich is imported only for the progress bar of `save`."""

    def __init__(self, stderr: bool = False) -> None:
        self._stderr = stderr

    @property
    def file(self) -> TextIO:
        return sys.stderr if self._stderr else sys.stdout

    @property
    def is_terminal(self) -> bool:
        return self.file.isatty()

    def print(self, text: object = "") -> None:
        self.file.write(f"{text}\n")


out = _Stream()
err = _Stream(stderr=True)


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
) -> None:
    """Checkpoint and restore RD-Agent's Trace: save a factor run, inspect it, resume a model phase on it."""
    if err.is_terminal:
        from trace_ckpt.storage import set_transfer_progress

        set_transfer_progress(lambda label, total: _bars.bar(label, total, count_files=False))
    if storage_option:
        from trace_ckpt.storage import options_from_pairs, set_default_options

        try:
            set_default_options(options_from_pairs(storage_option))
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--storage-option") from None


KEY_IC = "IC"
KEY_ARR = "1day.excess_return_with_cost.annualized_return"


class _Bars:
    """The command's progress bars on stderr, on a terminal only: one rich Progress, started when a bar first
    moves and stopped when every bar is done, so a download, the files of a restore and the upload of a
    save share it, and RD-Agent's logs after a restore never run through it."""

    def __init__(self) -> None:
        self._progress: Any = None
        self._live = 0

    @contextlib.contextmanager
    def bar(
        self, label: str, total_bytes: int | None = None, total_files: int | None = None, count_files: bool = True
    ) -> Iterator[Callable[..., None]]:
        """Yield ``advance(n_bytes, n_files=0)``; the bar goes when the block ends or ``total_files`` are done."""
        if not err.is_terminal or total_files == 0:
            yield lambda n_bytes, n_files=0: None
            return
        task: Any = None
        done, finished = 0, False

        def advance(n_bytes: int, n_files: int = 0) -> None:
            nonlocal task, done
            if finished:
                return
            if task is None:
                task = self._start(label, total_bytes)
            done += n_files
            self._progress.update(task, advance=n_bytes, files=f"{done} files" if count_files else "")
            if total_files is not None and done >= total_files:
                finish()

        def finish() -> None:
            nonlocal finished
            finished = True
            if task is not None:
                self._progress.remove_task(task)
                self._live -= 1
                if not self._live:
                    self._progress.stop()

        try:
            yield advance
        finally:
            if not finished:
                finish()

    def _start(self, label: str, total: int | None) -> Any:
        if self._progress is None:
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TextColumn("{task.fields[files]}"),
                console=Console(stderr=True, highlight=False),
                transient=True,
            )
        if not self._live:
            self._progress.start()
        self._live += 1
        return self._progress.add_task(label, total=total, files="")


_bars = _Bars()


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _clip(text: str, room: int) -> str:
    return text if len(text) <= room else text[: room - 1] + "…"


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:.4f}"


@app.command()
def save(
    source: Annotated[
        Path,
        typer.Argument(
            metavar="SOURCE",
            help="RD-Agent log folder of the run (log/<run>), its __session__ folder, or one session file",
        ),
    ],
    out_path: Annotated[
        str, typer.Argument(metavar="OUT", help="checkpoint file or URL to write (replaced atomically)")
    ],
    loop: Annotated[
        int | None, typer.Option("--loop", help="take the end of loop N instead of the latest step")
    ] = None,
    level: Annotated[int | None, typer.Option("--level", min=1, max=22, help="zstd level (default 3)")] = None,
    max_file_bytes: Annotated[
        int | None,
        typer.Option("--max-file-bytes", min=0, help="list but do not store workspace files larger than this"),
    ] = None,
    trust_legacy: Annotated[
        bool, typer.Option("--trust-legacy", help="accept unsigned pre-1.0 RD-Agent dumps")
    ] = False,
    allow_module: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-module",
            "--allow-class",
            help="a module (or one module.Class) of your own classes that loads of this checkpoint may use (repeatable)",
        ),
    ] = None,
) -> None:
    """Turn an RD-Agent run folder into one checkpoint file."""
    from trace_ckpt.rdagent import save_trace
    from trace_ckpt.rdagent.sessions import load_session, loop_metadata
    from trace_ckpt.storage import is_remote, size_of

    if not is_remote(out_path) and not Path(out_path).parent.is_dir():
        raise SaveError(f"cannot save to {out_path}: folder {Path(out_path).parent} does not exist")
    loop_obj, dump = load_session(source, loop=loop, trust_legacy=trust_legacy)
    trace = getattr(loop_obj, "trace", None)
    if trace is None or not hasattr(trace, "hist"):
        raise CorruptCheckpointError(f"{dump.path} holds a {type(loop_obj).__name__} without a trace")
    with _bars.bar("saving workspace files") as progress:
        manifest = save_trace(
            trace,
            out_path,
            level=level,
            max_file_bytes=max_file_bytes,
            metadata=loop_metadata(loop_obj, dump),
            progress=progress,
            allow_modules=allow_module or (),
        )
    size = size_of(out_path)
    ws = manifest.workspace_stats
    c = manifest.counts
    out.print(
        f"saved {out_path} ({_human(size)}; {c.hist} nodes, {c.accepted} accepted; "
        f"{ws.files} workspace files, {_human(ws.file_bytes)} on disk; from loop {dump.loop} step {dump.name})"
    )


@app.command()
def inspect(
    ckpt: Annotated[str, typer.Argument(metavar="CKPT", help="checkpoint file or URL")],
    as_json: Annotated[
        bool, typer.Option("--json", help="print the manifest as one JSON object (nodes under 'nodes')")
    ] = False,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            metavar="PATH",
            help="also draw the trace (IC and annualized return per node, phases, decisions, DAG) to this PNG; needs trace-ckpt[plot]",
        ),
    ] = None,
) -> None:
    """Show what a checkpoint holds, from its manifest only (nothing is unpickled)."""
    from trace_ckpt.checkpoint import read_manifest

    if plot is not None:
        from trace_ckpt.plot import require_matplotlib

        require_matplotlib()  # before any output: a missing extra is a one-line error, not half a report
    m = read_manifest(ckpt)
    if as_json:
        sys.stdout.write(m.model_dump_json(indent=None) + "\n")
    else:
        _print_manifest(ckpt, m)
    if plot is not None:
        from trace_ckpt.plot import write_plot

        write_plot(m, plot, title=str(ckpt).rstrip("/").rsplit("/", 1)[-1])  # CKPT may be a URL
        points = sum(1 for n in m.nodes if KEY_IC in n.metrics)
        (err if as_json else out).print(
            f"wrote {plot}: {points} of {len(m.nodes)} nodes have an IC"
        )  # stdout stays JSON


def _print_manifest(ckpt: str, m: Manifest) -> None:
    p, c, ws = m.producer, m.counts, m.workspace_stats
    out.print(f"{ckpt}  format v{m.format_version}, saved {m.created_at:%Y-%m-%d %H:%M:%S} UTC")
    out.print(f"producer: trace-ckpt {p.trace_ckpt}, rdagent {p.rdagent}, python {p.python}, pandas {p.pandas}")
    out.print(
        f"trace: {m.trace_class}"
        + (f"  scenario: {m.scenario_class}" if m.scenario_class else "")
        + (f"  signed (key id {m.signature.key_id})" if m.signature else "  unsigned")
    )
    out.print(
        f"nodes: {c.hist} ({c.accepted} accepted, {c.rejected} rejected; {c.factor_experiments} factor, "
        f"{c.model_experiments} model; {c.roots} root{'s' if c.roots != 1 else ''})"
    )
    ratio = (m.sizes.raw / m.sizes.stored) if m.sizes.stored else 0
    out.print(
        f"size: {_human(m.sizes.stored)} stored, {_human(m.sizes.raw)} raw ({ratio:.1f}x); workspaces: "
        f"{ws.workspaces} folders, {ws.files} files ({ws.unique_files} distinct), {ws.symlinks} links, "
        f"{ws.skipped} skipped"
    )
    source = m.metadata.get("source") if isinstance(m.metadata, dict) else None
    if isinstance(source, dict):
        out.print(f"source: {source.get('path')} (loop {source.get('loop')}, step {source.get('step_name')})")
    plan = m.metadata.get("plan") if isinstance(m.metadata, dict) else None
    if isinstance(plan, dict) and plan.get("features") is not None:
        out.print(
            f"base features: {len(plan['features'])}"
            + (f", feature code files: {len(plan['feature_codes'])}" if plan.get("feature_codes") else "")
        )
    headers = ("#", "loop", "parent", "kind", "decision", "IC", "ann. return", "hypothesis")
    rows = []
    for n in m.nodes:
        decision = "accepted" if n.decision else ("rejected" if n.decision is False else "")
        rows.append(
            (
                str(n.index),
                "" if n.loop_id is None else str(n.loop_id),
                ",".join(map(str, n.parents)) or "root",
                n.action or n.kind,
                decision + (" *SOTA*" if n.index == m.sota_index else ""),
                _fmt(n.metrics.get(KEY_IC)),
                _fmt(n.metrics.get(KEY_ARR)),
                n.hypothesis or "",
            )
        )
    # plain formatting: rich's Table takes seconds for a 500-node trace, this takes milliseconds
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers[:-1])]
    room = max(16, shutil.get_terminal_size((120, 24)).columns - sum(widths) - 2 * len(widths))
    right = {0, 1, 2, 5, 6}
    lines = []
    for r in [headers, *rows]:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r[:-1], widths))]
        lines.append("  ".join([*cells, _clip(r[-1], room)]).rstrip())
    sys.stdout.write("\n".join(lines) + "\n")


@app.command()
def verify(
    ckpt: Annotated[str, typer.Argument(metavar="CKPT", help="checkpoint file or URL")],
    require_signature: Annotated[
        bool, typer.Option("--require-signature", help="fail unless the file is signed with your key or a trusted key")
    ] = False,
) -> None:
    """Check every section's checksum and the signature, and say who signed; exit 0 only when all hold."""
    from trace_ckpt.checkpoint import verify_checkpoint

    report = verify_checkpoint(ckpt)
    m, st = report.manifest, report.status
    if report.bad_sections:
        raise CorruptCheckpointError(
            f"{ckpt}: {len(report.bad_sections)} of {len(m.sections)} sections fail their checksum "
            f"({', '.join(report.bad_sections[:5])})"
        )
    if st.state == "bad":
        raise UntrustedContentError(f"{ckpt}: {st.describe()}")
    if require_signature and st.state != "ok":
        what = {
            "unsigned": "unsigned",
            "unchecked": f"signed (key id {st.key_id}) but no key is configured to check it",
            "unknown-key": f"signed by an unknown key ({st.key_id}): add its public key to TRACE_CKPT_TRUSTED_KEYS "
            "if you trust it",
        }.get(st.state, st.describe())
        error = UnsupportedVersionError if st.state == "unsupported" else UntrustedContentError
        raise error(f"{ckpt}: {what}, and --require-signature was given")
    out.print(f"ok: {ckpt}: {len(m.sections)} sections, every checksum holds; {st.describe()}")


@app.command()
def keygen(
    out_path: Annotated[
        Path,
        typer.Argument(metavar="OUT", help="private key file to write (mode 0600); the public key goes to OUT.pub"),
    ],
    comment: Annotated[
        str | None,
        typer.Option("--comment", help="the name the public key carries, which verify reports (default: user@host)"),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="replace OUT and OUT.pub if they exist")] = False,
) -> None:
    """Make an Ed25519 key pair: sign with OUT on one machine, verify with OUT.pub everywhere else."""
    import getpass
    import socket

    from trace_ckpt.signing import generate_key_pair

    if comment is None:
        try:
            comment = f"{getpass.getuser()}@{socket.gethostname()}"
        except (KeyError, OSError):
            comment = ""
    kid = generate_key_pair(out_path, comment=comment, force=force)
    out.print(
        f"wrote {out_path} (private: keep it here, TRACE_CKPT_PRIVATE_KEY_FILE={out_path.absolute()}) and {out_path}.pub "
        f"(public: copy it into TRACE_CKPT_TRUSTED_KEYS on the machines that verify); key {kid} {comment}"
    )


@app.command("export-factors")
def export_factors_cmd(
    ckpt: Annotated[str, typer.Argument(metavar="CKPT", help="checkpoint file or URL")],
    out_path: Annotated[str, typer.Argument(metavar="OUT.parquet", help="Parquet file or URL to write")],
    require_signature: Annotated[
        bool, typer.Option("--require-signature", help="refuse an unsigned checkpoint")
    ] = False,
) -> None:
    """Write the SOTA factor values (one column per factor, index datetime x instrument) to Parquet."""
    from trace_ckpt.export import export_factors

    values, notes = export_factors(ckpt, out_path, require_signature=require_signature or None)
    for note in notes:
        err.print(f"trace-ckpt: note: {note}")
    out.print(f"wrote {out_path}: {values.shape[1]} factors x {values.shape[0]} rows")


class Phase(str, Enum):
    model = "model"
    factor = "factor"


@app.command()
def resume(
    ckpt: Annotated[str, typer.Argument(metavar="CKPT", help="checkpoint (file or URL) of an earlier run")],
    only: Annotated[
        Phase | None,
        typer.Option(
            "--only",
            help="model: evolve only models on the SOTA factors; factor: continue factor evolution; omit: the mixed quant loop",
        ),
    ] = None,
    loop_n: Annotated[int | None, typer.Option("--loop-n", min=1, help="number of new loops to run")] = None,
    step_n: Annotated[int | None, typer.Option("--step-n", min=1, help="number of steps to run")] = None,
    all_duration: Annotated[
        str | None, typer.Option("--all-duration", help="time budget, as RD-Agent takes it (e.g. 2h)")
    ] = None,
    base_features: Annotated[
        Path | None,
        typer.Option(
            "--base-features",
            help="folder with base_factors.json and/or *.py (RD-Agent's format); default: the plan in the checkpoint",
        ),
    ] = None,
    workspace_root: Annotated[
        Path | None,
        typer.Option(
            "--workspace-root", help="where restored and new workspaces go (default: RD-Agent's WORKSPACE_PATH)"
        ),
    ] = None,
    log_dir: Annotated[
        Path | None, typer.Option("--log-dir", help="the new run's log folder (default: RD-Agent's LOG_TRACE_PATH)")
    ] = None,
    allow_module: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-module",
            "--allow-class",
            help="a module (or one module.Class) of your own classes the checkpoint may load (repeatable)",
        ),
    ] = None,
    require_signature: Annotated[
        bool, typer.Option("--require-signature", help="refuse an unsigned checkpoint")
    ] = False,
    trust: Annotated[
        bool,
        typer.Option(
            "--trust",
            help="run a checkpoint no configured key has verified: resume runs its factor code, feature code and workspace files (docs/security.md)",
        ),
    ] = False,
) -> None:
    """Run RD-Agent on top of a saved trace: model evolution on the SOTA factors, or more factor loops."""
    from trace_ckpt.checkpoint import read_manifest
    from trace_ckpt.rdagent.resume import resume as run_resume

    ws = read_manifest(ckpt).workspace_stats
    with _bars.bar("restoring workspace files", ws.file_bytes, ws.files - ws.skipped) as progress:
        report = run_resume(
            ckpt,
            only=only.value if only else None,
            loop_n=loop_n,
            step_n=step_n,
            all_duration=all_duration,
            base_features=base_features,
            workspace_root=workspace_root,
            log_dir=log_dir,
            allow_modules=allow_module or (),
            require_signature=require_signature or None,
            progress=progress,
            trust=trust or None,
        )
    out.print(
        f"resumed {ckpt}: {report.restored_nodes} restored nodes ({report.sota_factor_experiments} SOTA factor "
        f"experiments), {report.new_nodes} new nodes from loop id {report.first_loop_id}; "
        f"{len(report.base_features)} base features; log folder {report.log_dir}"
    )


class _OneLine(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        err.print(f"trace-ckpt: {record.levelname.lower()}: {record.getMessage()}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run a command, turn every failure into one line and its exit code."""
    logger = logging.getLogger("trace_ckpt")
    if not logger.handlers:
        logger.addHandler(_OneLine())
        logger.setLevel(logging.INFO)
        logger.propagate = False
    code = 0
    try:
        # a fresh context per call: --storage-option never leaks into the next call in one process
        rv = contextvars.copy_context().run(app, args=argv, prog_name="trace-ckpt", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
    except typer.Exit as e:
        code = e.exit_code
    except (typer.Abort, KeyboardInterrupt):
        err.print("trace-ckpt: interrupted")
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
    except Exception as e:  # never a traceback for users; TRACE_CKPT_DEBUG=1 shows it
        if os.environ.get("TRACE_CKPT_DEBUG"):
            raise
        err.print(f"trace-ckpt: error: unexpected {type(e).__name__}: {e} (rerun with TRACE_CKPT_DEBUG=1 for details)")
        code = 1
    sys.exit(code)
