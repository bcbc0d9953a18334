"""``trace-ckpt save``: an RD-Agent run folder into one checkpoint file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trace_ckpt.cli.app import app
from trace_ckpt.cli.options import AllowModule, Force, Json, Level, OutCkpt, Quiet, Verbose
from trace_ckpt.cli.render import bars, detail, emit_json, human_size, say, wrote
from trace_ckpt.errors import CorruptCheckpointError


@app.command()
def save(
    source: Annotated[
        Path,
        typer.Argument(
            metavar="SOURCE",
            help="RD-Agent log folder of the run (log/<run>), its __session__ folder, or one session file",
        ),
    ],
    out_path: OutCkpt,
    loop_id: Annotated[
        int | None, typer.Option("--loop-id", metavar="ID", help="take the end of loop ID instead of the latest step")
    ] = None,
    loop_old: Annotated[int | None, typer.Option("--loop", hidden=True, help="old spelling of --loop-id")] = None,
    level: Level = None,
    max_file_bytes: Annotated[
        int | None,
        typer.Option("--max-file-bytes", min=0, help="list but do not store workspace files larger than this"),
    ] = None,
    trust_legacy: Annotated[
        bool, typer.Option("--trust-legacy", help="accept unsigned pre-1.0 RD-Agent dumps")
    ] = False,
    allow_module: AllowModule = None,
    force: Force = False,
    as_json: Json = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Turn an RD-Agent run folder into one checkpoint file."""
    import time

    from trace_ckpt.rdagent import save_trace
    from trace_ckpt.rdagent.sessions import load_session, loop_metadata
    from trace_ckpt.storage import check_output, size_of

    check_output(out_path, overwrite=force)  # before the slow part: loading the session takes seconds
    start = time.monotonic()
    loop_obj, dump = load_session(source, loop=loop_id if loop_id is not None else loop_old, trust_legacy=trust_legacy)
    trace = getattr(loop_obj, "trace", None)
    if trace is None or not hasattr(trace, "hist"):
        raise CorruptCheckpointError(f"{dump.path} holds a {type(loop_obj).__name__} without a trace")
    detail(f"loaded {dump.path} in {time.monotonic() - start:.1f} s")
    with bars.bar("saving workspace files") as progress:
        manifest = save_trace(
            trace,
            out_path,
            level=level,
            max_file_bytes=max_file_bytes,
            metadata=loop_metadata(loop_obj, dump),
            progress=progress,
            allow_modules=allow_module or (),
            overwrite=force,
        )
    wrote(out_path)
    detail(f"saved in {time.monotonic() - start:.1f} s")
    size = size_of(out_path)
    ws, c = manifest.workspace_stats, manifest.counts
    if as_json:
        emit_json(
            {
                "path": out_path,
                "size": size,
                "nodes": c.hist,
                "accepted": c.accepted,
                "workspace_files": ws.files,
                "workspace_bytes": ws.file_bytes,
                "source": {"path": str(dump.path), "loop": dump.loop, "step": dump.name},
                "created_at": manifest.created_at,
                "signed": manifest.signature is not None,
            }
        )
        return
    say(
        f"saved {out_path} ({human_size(size)} file; {c.hist} nodes, {c.accepted} accepted; "
        f"{ws.files} workspace files, {human_size(ws.file_bytes)} on disk; from loop {dump.loop} step {dump.name})"
    )
