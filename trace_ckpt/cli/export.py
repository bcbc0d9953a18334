"""``trace-ckpt export-factors``: the SOTA factor values of a checkpoint as one table file."""

from __future__ import annotations

from typing import Annotated

import typer

from trace_ckpt.cli.app import app
from trace_ckpt.cli.options import Ckpt, RequireSignature
from trace_ckpt.cli.render import err, out


@app.command("export-factors")
def export_factors_cmd(
    ckpt: Ckpt,
    out_path: Annotated[str, typer.Argument(metavar="OUT.parquet", help="Parquet file or URL to write")],
    require_signature: RequireSignature = False,
) -> None:
    """Write the SOTA factor values (one column per factor, index datetime x instrument) to Parquet."""
    from trace_ckpt.export import export_factors

    values, notes = export_factors(ckpt, out_path, require_signature=require_signature or None)
    for note in notes:
        err.print(f"trace-ckpt: note: {note}")
    out.print(f"wrote {out_path}: {values.shape[1]} factors x {values.shape[0]} rows")
