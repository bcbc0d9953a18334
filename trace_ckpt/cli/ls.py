"""``trace-ckpt ls``: the checkpoints in a folder or bucket prefix, one manifest summary per line."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from trace_ckpt.cli.app import app
from trace_ckpt.cli.options import Json, Quiet, Verbose
from trace_ckpt.cli.render import human_size, metric, shown_time, table, timestamp
from trace_ckpt.cli.show import trace_summary
from trace_ckpt.errors import CheckpointError, CheckpointNotFoundError, NotACheckpointError
from trace_ckpt.quant import IC


def _summary(url: str, size: int, alone: bool = False) -> dict[str, Any] | None:
    """One checkpoint's summary from its manifest (ranged reads only); None for a file that is no checkpoint.
    A file listed ``alone`` (``ls FILE``) that is no checkpoint or damaged is that error."""
    from trace_ckpt.ckpt import read_manifest

    try:
        m = read_manifest(url)
    except NotACheckpointError:
        if alone:
            raise
        return None
    except CheckpointError as e:
        if alone:
            raise
        return {"url": url, "size": size, "error": str(e)}
    s = trace_summary(m)
    best = s["best_accepted"]["index"]
    return {
        "url": url,
        "size": size,
        "created_at": timestamp(m.created_at),
        "format_version": m.format_version,
        "nodes": m.counts.hist,
        "accepted": m.counts.accepted,
        "factor_experiments": m.counts.factor_experiments,
        "model_experiments": m.counts.model_experiments,
        "sota_index": s["sota"],
        "sota_ic": s["sota_metrics"].get(IC),
        "sota_by_subtrace": s["sota_by_subtrace"],
        "best_index": best,
        "best_ic": s["best_metrics"].get(IC),
        "sota_factors": s["sota_factors"],
        "signed": m.signature is not None,
        "producer": m.producer.trace_ckpt,
    }


def _entries(folder: str) -> tuple[list[tuple[str, int]], bool]:
    """The files to list, and whether it is one file named alone: a folder's or prefix's files; a file alone, as
    ls(1) lists it; none for a prefix of an existing bucket that holds nothing (an object store has no empty
    folders: an empty prefix lists as an empty folder does)."""
    from urllib.parse import urlsplit

    from trace_ckpt.storage import is_folder, is_remote, list_files, size_of

    if is_folder(folder):
        return [(e.url, e.size) for e in list_files(folder)], False
    try:
        return [(folder, size_of(folder))], True
    except CheckpointNotFoundError:
        parts = urlsplit(folder)
        if not is_remote(folder) or not parts.path.strip("/") or not is_folder(f"{parts.scheme}://{parts.netloc}/"):
            raise CheckpointNotFoundError(f"no folder or checkpoint at {folder}: check the path") from None
        return [], False


@app.command("ls")
def ls_cmd(
    folder: Annotated[
        str,
        typer.Argument(metavar="FOLDER", help="local folder, or URL of a folder / bucket prefix (s3://bucket/runs/)"),
    ],
    as_json: Json = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """List the checkpoints in a folder or bucket prefix with their manifest summary (nothing is unpickled)."""
    entries, alone = _entries(folder)
    rows = [s for url, size in entries if (s := _summary(url, size, alone)) is not None]
    if as_json:
        sys.stdout.write("".join(json.dumps(r) + "\n" for r in rows))
        return
    if not rows:
        sys.stdout.write(f"no checkpoints in {folder}\n")
        return
    headers = (
        "checkpoint",
        "size",
        "saved (UTC)",
        "nodes",
        "accepted",
        "factor",
        "model",
        "SOTA IC",
        "best IC",
        "SOTA factors",
        "signed",
    )
    good = []
    for r in rows:
        if "error" not in r:
            good.append(
                (
                    r["url"],
                    human_size(r["size"]),
                    shown_time(r["created_at"]),
                    str(r["nodes"]),
                    str(r["accepted"]),
                    str(r["factor_experiments"]),
                    str(r["model_experiments"]),
                    metric(r["sota_ic"]),
                    metric(r["best_ic"]),
                    str(len(r["sota_factors"])),
                    "yes" if r["signed"] else "no",
                )
            )
    lines = [table(headers, good, right=set(range(len(headers))) - {0, 2})]
    lines += [f"{r['url']}  {human_size(r['size'])}  damaged: {r['error']}" for r in rows if "error" in r]
    sys.stdout.write("\n".join(lines) + "\n")
