"""Hostile checkpoints for the security tests: every checksum valid, the graph chosen by the test (no rdagent)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from trace_ckpt.codec.blobs import BlobPacker
from trace_ckpt.codec.files import FilesIndex
from trace_ckpt.format.container import FORMAT_VERSION, ContainerWriter
from trace_ckpt.format.manifest import Manifest, Producer


def forge_checkpoint(path: Path, graph: bytes) -> None:
    """Write a checkpoint whose graph section is ``graph`` (a pickle an attacker wrote) and nothing else."""
    with open(path, "wb") as f:
        w = ContainerWriter(f)
        BlobPacker(w).finish()
        w.add_bytes("graph", "graph", graph)
        w.add_bytes("files", "files", FilesIndex().to_bytes())
        w.finish(Manifest(format_version=FORMAT_VERSION, created_at=datetime.now(timezone.utc),
                          producer=Producer(trace_ckpt="0", python="3"), trace_class="x"))
