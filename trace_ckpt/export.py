"""SOTA factor values out of a checkpoint, without unpickling anything and without rdagent.

The manifest says which nodes were accepted factor experiments and which folders are their
sub-workspaces; each sub-workspace holds the ``result.h5`` RD-Agent's factor execution wrote, read
through ``trace_ckpt.codec.hdf`` (checked before pandas sees it). The signature is checked as every
reader checks it (``require_signature`` / ``TRACE_CKPT_REQUIRE_SIGNATURE``).
"""

from __future__ import annotations

import os
import posixpath

import pandas as pd

from trace_ckpt.ckpt import Checkpoint, PathLike
from trace_ckpt.codec.hdf import read_factor_values
from trace_ckpt.errors import NothingToExportError, SaveError
from trace_ckpt.quant import RESULT_FILE, node_factor_name, sota_factor_nodes
from trace_ckpt.settings import Options
from trace_ckpt.storage import atomic_write


def sota_factor_values(
    path: PathLike, *, require_signature: bool | None = None, options: Options | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """One column per SOTA factor, index (datetime, instrument); plus notes on renamed/missing factors."""
    notes: list[str] = []
    opts = (options or Options.resolve()).with_choices(require_signature=require_signature)
    with Checkpoint.open(path, opts) as ck:
        nodes = sota_factor_nodes(ck.manifest.nodes)
        if not nodes:
            raise NothingToExportError(f"{path} holds no accepted factor experiment, so no SOTA factor values")
        blobs, files = ck.blobs, ck.files
        frames: list[pd.DataFrame] = []
        seen: set[str] = set()
        for node in nodes:
            for i, key in enumerate(node.sub_workspaces):
                entry = next(
                    (
                        e
                        for e in files.workspaces.get(key or "", {}).get("entries", [])
                        if e.get("path") == RESULT_FILE and e.get("type") == "file"
                    ),
                    None,
                )
                name = node_factor_name(node, i)
                if entry is None:
                    notes.append(f"node {node.index}: {name} has no captured {RESULT_FILE}")
                    continue
                df = read_factor_values(blobs.get(entry["digest"]), f"{path}: {RESULT_FILE} of node {node.index}")
                if isinstance(df, pd.Series):
                    df = df.to_frame(name)
                if not df.index.is_unique:  # pd.concat cannot align it; RD-Agent's model runner could not either
                    raise NothingToExportError(
                        f"{path}: {RESULT_FILE} of node {node.index} ({name}) has "
                        f"{int(df.index.duplicated().sum())} duplicate index rows, so it cannot be combined with other factors"
                    )
                renamed = []
                for col in df.columns:
                    new = str(col)
                    if new in seen:
                        new = f"{new}@node{node.index}"
                        notes.append(f"node {node.index}: factor {col} exists already, exported as {new}")
                    seen.add(new)
                    renamed.append(new)
                df.columns = renamed
                frames.append(df)
    if not frames:
        raise NothingToExportError(f"{path}: the SOTA factor experiments have no captured {RESULT_FILE} files")
    try:
        return pd.concat(frames, axis=1).sort_index(), notes
    except (
        TypeError,
        ValueError,
        pd.errors.InvalidIndexError,
    ) as e:  # indexes of different kinds (a foreign result.h5)
        raise NothingToExportError(f"{path}: the SOTA factor values cannot be combined into one table ({e})") from None


TABLE_FORMATS: dict[str, str] = {".parquet": "parquet", ".csv": "csv", ".feather": "feather"}


def table_format(out: str | os.PathLike[str]) -> str:
    """The table format ``out``'s extension names (parquet, csv, feather); a SaveError for any other."""
    ext = posixpath.splitext(os.fspath(out))[1].lower()
    if ext not in TABLE_FORMATS:
        raise SaveError(
            f"{out}: the factor values are written as the extension says: end it in {', '.join(TABLE_FORMATS)}"
        )
    return TABLE_FORMATS[ext]


def export_factors(
    path: PathLike,
    out: str | os.PathLike[str],
    *,
    require_signature: bool | None = None,
    options: Options | None = None,
    overwrite: bool = True,
) -> tuple[pd.DataFrame, list[str]]:
    """Write :func:`sota_factor_values` to ``out`` (atomically) in the format its extension names (see
    :func:`table_format`; csv and feather hold the index as the columns ``datetime``, ``instrument``)."""
    fmt = table_format(out)
    values, notes = sota_factor_values(path, require_signature=require_signature, options=options)
    with atomic_write(out, overwrite=overwrite) as f:  # the CLI also refuses early: check_output
        if fmt == "parquet":
            values.to_parquet(f)
        elif fmt == "csv":
            values.to_csv(f)
        else:
            values.reset_index().to_feather(f)
    return values, notes
