"""trace-ckpt: checkpoint and restore RD-Agent's Trace, workspaces included, in one file.

    from trace_ckpt import save_trace, restore_trace, read_manifest
    save_trace(trace, "run1.tckpt")
    read_manifest("run1.tckpt").counts          # no unpickling, no rdagent import
    trace = restore_trace("run1.tckpt", workspace_root="ws/")

``save_trace``/``restore_trace``/``prune``/``merge`` import rdagent on first use; everything else here
(``diff`` too) does not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

__version__ = "0.1.0"

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "CheckpointNotFoundError",
    "CorruptCheckpointError",
    "Manifest",
    "NotACheckpointError",
    "Options",
    "SaveError",
    "UnsupportedVersionError",
    "UntrustedContentError",
    "WorkspaceConflictError",
    "diff",
    "merge",
    "prune",
    "read_manifest",
    "restore_trace",
    "save_trace",
    "verify_checkpoint",
]

if TYPE_CHECKING:
    from trace_ckpt.ckpt import Checkpoint, read_manifest, verify_checkpoint
    from trace_ckpt.format.manifest import Manifest
    from trace_ckpt.rdagent import restore_trace, save_trace
    from trace_ckpt.rdagent.merge import merge
    from trace_ckpt.rdagent.prune import prune
    from trace_ckpt.settings import Options
    from trace_ckpt.views.diff import diff

# Imported on first use, so `import trace_ckpt` stays light: the CLI's `inspect` imports neither
# rdagent nor pandas.
_LAZY = {
    "save_trace": "trace_ckpt.rdagent",
    "restore_trace": "trace_ckpt.rdagent",
    "Checkpoint": "trace_ckpt.ckpt",
    "Options": "trace_ckpt.settings",
    "read_manifest": "trace_ckpt.ckpt",
    "verify_checkpoint": "trace_ckpt.ckpt",
    "Manifest": "trace_ckpt.format.manifest",
    "prune": "trace_ckpt.rdagent.prune",
    "merge": "trace_ckpt.rdagent.merge",
    "diff": "trace_ckpt.views.diff",  # a view: no rdagent import
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'trace_ckpt' has no attribute {name!r}")
