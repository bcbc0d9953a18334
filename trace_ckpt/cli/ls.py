"""``trace-ckpt ls``: the checkpoints in a folder or bucket prefix, one manifest summary per line."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from trace_ckpt.cli.app import app
from trace_ckpt.cli.options import Json
from trace_ckpt.cli.render import human_size, metric, table
from trace_ckpt.errors import CheckpointError, NotACheckpointError
from trace_ckpt.quant import IC


def _summary(url: str, size: int) -> dict[str, Any] | None:
    """One checkpoint's summary from its manifest (ranged reads only); None for a file that is no checkpoint."""
    from trace_ckpt.ckpt import read_manifest

    try:
        m = read_manifest(url)
    except NotACheckpointError:
        return None
    except CheckpointError as e:
        return {"url": url, "size": size, "error": str(e)}
    sota = m.nodes[m.sota_index] if m.sota_index is not None and m.sota_index < len(m.nodes) else None
    return {
        "url": url,
        "size": size,
        "created_at": m.created_at.isoformat(),
        "format_version": m.format_version,
        "nodes": m.counts.hist,
        "accepted": m.counts.accepted,
        "factor_experiments": m.counts.factor_experiments,
        "model_experiments": m.counts.model_experiments,
        "sota_ic": sota.metrics.get(IC) if sota else None,
        "signed": m.signature is not None,
        "producer": m.producer.trace_ckpt,
    }


@app.command("ls")
def ls_cmd(
    folder: Annotated[
        str,
        typer.Argument(metavar="FOLDER", help="local folder, or URL of a folder / bucket prefix (s3://bucket/runs/)"),
    ],
    as_json: Json = False,
) -> None:
    """List the checkpoints in a folder or bucket prefix with their manifest summary (nothing is unpickled)."""
    from trace_ckpt.storage import list_files

    rows = [s for e in list_files(folder) if (s := _summary(e.url, e.size)) is not None]
    if as_json:
        sys.stdout.write("".join(json.dumps(r) + "\n" for r in rows))
        return
    if not rows:
        sys.stdout.write(f"no checkpoints in {folder}\n")
        return
    headers = ("checkpoint", "size", "saved (UTC)", "nodes", "accepted", "factor", "model", "SOTA IC", "signed")
    good = []
    for r in rows:
        if "error" not in r:
            good.append(
                (
                    r["url"],
                    human_size(r["size"]),
                    r["created_at"][:19].replace("T", " "),
                    str(r["nodes"]),
                    str(r["accepted"]),
                    str(r["factor_experiments"]),
                    str(r["model_experiments"]),
                    metric(r["sota_ic"]),
                    "yes" if r["signed"] else "no",
                )
            )
    lines = [table(headers, good, right=set(range(len(headers))) - {0, 2})]
    lines += [f"{r['url']}  {human_size(r['size'])}  damaged: {r['error']}" for r in rows if "error" in r]
    sys.stdout.write("\n".join(lines) + "\n")
