"""trace-ckpt: checkpoint and restore RD-Agent's Trace, workspaces included, in one file.

    from trace_ckpt import save_trace, restore_trace, read_manifest
    save_trace(trace, "run1.tckpt")
    read_manifest("run1.tckpt").counts          # no unpickling, no rdagent import
    trace = restore_trace("run1.tckpt", workspace_root="ws/")

``save_trace``/``restore_trace`` import rdagent on first use; everything else here does not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trace_ckpt.checkpoint import read_manifest, verify_checkpoint
from trace_ckpt.errors import (
    CheckpointError,
    CheckpointNotFoundError,
    CorruptCheckpointError,
    NotACheckpointError,
    SaveError,
    UnsupportedVersionError,
    UntrustedContentError,
    WorkspaceConflictError,
)
from trace_ckpt.format.manifest import Manifest

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "CheckpointNotFoundError",
    "CorruptCheckpointError",
    "Manifest",
    "NotACheckpointError",
    "SaveError",
    "UnsupportedVersionError",
    "UntrustedContentError",
    "WorkspaceConflictError",
    "read_manifest",
    "restore_trace",
    "save_trace",
    "verify_checkpoint",
]

if TYPE_CHECKING:
    from trace_ckpt.rdagent import restore_trace, save_trace


def __getattr__(name: str) -> Any:
    if name in ("save_trace", "restore_trace"):
        from trace_ckpt import rdagent

        return getattr(rdagent, name)
    raise AttributeError(f"module 'trace_ckpt' has no attribute {name!r}")
