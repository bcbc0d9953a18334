"""The save / load pipeline, independent of RD-Agent: graph + tables + blobs + files -> one file.

``trace_ckpt.rdagent`` supplies what is RD-Agent-specific (which folders are workspaces, the node
summaries, relocation); this module owns the order of sections and the integrity rules.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trace_ckpt.codec.allowlist import Allowlist
from trace_ckpt.codec.blobs import BlobPacker, BlobSource
from trace_ckpt.codec.files import FilesIndex, Progress, capture_workspaces, materialize
from trace_ckpt.codec.graph import decode_graph, encode_graph
from trace_ckpt.errors import CorruptCheckpointError
from trace_ckpt.format.container import ContainerReader, ContainerWriter
from trace_ckpt.format.manifest import Manifest
from trace_ckpt.storage import atomic_write, open_read

PathLike = str | os.PathLike[str]


def write_checkpoint(
    path: PathLike,
    root: Any,
    manifest: Manifest,
    workspace_paths: Iterable[str],
    *,
    level: int = 3,
    threads: int = 0,
    max_file_bytes: int | None = None,
    min_blob: int = 256,
    progress: Progress | None = None,
    allow_modules: Iterable[str] = (),
) -> Manifest:
    """Write ``root`` and the given workspace folders atomically to ``path``; return the final manifest.

    The save fails before anything lands at ``path`` if a load with ``allow_modules`` would refuse it.
    """
    with atomic_write(path) as f:
        writer = ContainerWriter(f, level=level, threads=threads)
        packer = BlobPacker(writer)
        stats = encode_graph(root, writer, packer, min_blob=min_blob, allow=Allowlist(allow_modules))
        index, ws_stats = capture_workspaces(workspace_paths, packer, max_file_bytes=max_file_bytes, progress=progress)
        packer.finish()
        writer.add_bytes("files", "files", index.to_bytes())
        manifest.pickler = stats.pickler  # type: ignore[assignment]
        manifest.tables = stats.tables
        manifest.pandas_pickled = stats.pandas_pickled
        manifest.blobs = len(packer.index)
        manifest.workspace_stats = ws_stats
        return writer.finish(manifest)


def read_manifest(path: PathLike) -> Manifest:
    """Read only the manifest (no unpickling, no rdagent import): what ``inspect`` shows."""
    with open_read(path) as f:
        return ContainerReader(f, source=str(path)).manifest


def verify_checkpoint(path: PathLike) -> tuple[Manifest, list[str]]:
    """Check every section's SHA-256; return the manifest and the names of the bad sections."""
    with open_read(path) as f:
        reader = ContainerReader(f, source=str(path))
        return reader.manifest, reader.verify()


@dataclass
class LoadedCheckpoint:
    """A verified, decoded checkpoint: the root object and what is needed to lay out its files."""

    manifest: Manifest
    root: Any
    files: FilesIndex
    _reader: ContainerReader
    _blobs: BlobSource

    def materialize(self, mapping: Mapping[str, Path], *, overwrite: bool = False) -> int:
        """Write the captured workspace folders to their new places (original path -> new path)."""
        return materialize(self.files, mapping, self._blobs, overwrite=overwrite, source=self._reader.source)


@contextlib.contextmanager
def open_checkpoint(path: PathLike, *, allow_modules: Iterable[str] = ()) -> Iterator[LoadedCheckpoint]:
    """Verify every section's checksum, then decode the graph with the restricted unpickler.

    The file stays open inside the ``with`` block so the workspace files can be materialized.
    """
    with open_read(path) as f:
        reader = ContainerReader(f, source=str(path))
        bad = reader.verify()
        if bad:
            raise CorruptCheckpointError(
                f"{path}: {len(bad)} section(s) fail their checksum (first: {bad[0]}); the file is damaged"
            )
        blobs = BlobSource(reader)
        root = decode_graph(reader, blobs, Allowlist(allow_modules))
        try:
            files = FilesIndex.from_bytes(reader.read_section(reader.manifest.section("files")), str(path))
        except KeyError:
            raise CorruptCheckpointError(f"{path}: no files section") from None
        yield LoadedCheckpoint(reader.manifest, root, files, reader, blobs)
