"""``trace-ckpt export-factors``: the SOTA factor values of a checkpoint as one table file."""

from __future__ import annotations

from typing import Annotated

import typer

from trace_ckpt.cli.app import app
from trace_ckpt.cli.options import Ckpt, Force, Json, Quiet, RequireSignature, Verbose
from trace_ckpt.cli.render import emit_json, note, say, wrote
from trace_ckpt.errors import SaveError


def _table_path(value: str) -> str:
    from trace_ckpt.export import table_format

    try:
        table_format(value)
    except SaveError as e:
        raise typer.BadParameter(str(e)) from None
    return value


@app.command("export-factors")
def export_factors_cmd(
    ckpt: Ckpt,
    out_path: Annotated[
        str,
        typer.Argument(
            metavar="OUT",
            callback=_table_path,
            help="file or URL to write, in the format its extension names: .parquet, .csv or .feather",
        ),
    ],
    require_signature: RequireSignature = False,
    force: Force = False,
    as_json: Json = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Write the SOTA factor values (one column per factor, index datetime x instrument) to Parquet, CSV or Feather."""
    from trace_ckpt.export import export_factors, table_format
    from trace_ckpt.storage import check_output

    check_output(out_path, overwrite=force)
    values, notes = export_factors(ckpt, out_path, require_signature=require_signature or None, overwrite=force)
    wrote(out_path)
    if as_json:
        emit_json(
            {
                "path": out_path,
                "format": table_format(out_path),
                "factors": [str(c) for c in values.columns],
                "rows": int(values.shape[0]),
                "notes": notes,
            }
        )
        return
    for text in notes:
        note(text)
    say(f"wrote {out_path}: {values.shape[1]} factors x {values.shape[0]} rows")
