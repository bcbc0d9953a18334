"""``trace-ckpt save``: an RD-Agent run folder into one checkpoint file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trace_ckpt.cli.app import app
from trace_ckpt.cli.options import AllowModule, Level, OutCkpt
from trace_ckpt.cli.render import bars, human_size, out
from trace_ckpt.errors import CorruptCheckpointError, SaveError


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
    loop: Annotated[
        int | None, typer.Option("--loop", help="take the end of loop N instead of the latest step")
    ] = None,
    level: Level = None,
    max_file_bytes: Annotated[
        int | None,
        typer.Option("--max-file-bytes", min=0, help="list but do not store workspace files larger than this"),
    ] = None,
    trust_legacy: Annotated[
        bool, typer.Option("--trust-legacy", help="accept unsigned pre-1.0 RD-Agent dumps")
    ] = False,
    allow_module: AllowModule = None,
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
    with bars.bar("saving workspace files") as progress:
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
        f"saved {out_path} ({human_size(size)}; {c.hist} nodes, {c.accepted} accepted; "
        f"{ws.files} workspace files, {human_size(ws.file_bytes)} on disk; from loop {dump.loop} step {dump.name})"
    )
