"""save_trace / restore_trace: a whole RD-Agent Trace, workspaces included, to and from one file.

from trace_ckpt import save_trace, restore_trace
save_trace(trace, "run1.tckpt")                      # after the factor run
trace = restore_trace("run1.tckpt", workspace_root="ws/")   # in the model run
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Iterable
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from trace_ckpt.ckpt import Checkpoint, PathLike
from trace_ckpt.codec.files import Progress
from trace_ckpt.errors import CheckpointError, CorruptCheckpointError
from trace_ckpt.format.container import FORMAT_VERSION
from trace_ckpt.format.manifest import Manifest, Producer
from trace_ckpt.pipeline import write_checkpoint
from trace_ckpt.quant import class_path
from trace_ckpt.rdagent.logs import without_rdagent_logs
from trace_ckpt.rdagent.shape import check_trace_shape
from trace_ckpt.rdagent.trace import iter_workspaces, relocation, summarize, workspace_key
from trace_ckpt.settings import Options


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def producer() -> Producer:
    """Versions of the packages that shape a checkpoint's content, for the manifest."""
    return Producer(
        trace_ckpt=_version("trace-ckpt") or "0+unknown",
        rdagent=_version("rdagent"),
        python=platform.python_version(),
        pandas=_version("pandas"),
        pyarrow=_version("pyarrow"),
        zstandard=_version("zstandard"),
        platform=sys.platform,
    )


def new_manifest(trace: Any, metadata: dict[str, Any] | None = None) -> Manifest:
    """The manifest of a save of ``trace``: producer versions, counts and one summary per node."""
    nodes, counts, sota = summarize(trace)
    scen = getattr(trace, "scen", None)
    return Manifest(
        format_version=FORMAT_VERSION,
        created_at=datetime.now(timezone.utc),
        producer=producer(),
        trace_class=class_path(trace),
        scenario_class=None if scen is None else class_path(scen),
        counts=counts,
        sota_index=sota,
        nodes=nodes,
        metadata=dict(metadata or {}),
    )


@without_rdagent_logs  # RD-Agent's logger would write ./log/<time>/: only resume and run write its logs
def save_trace(
    trace: Any,
    path: PathLike,
    *,
    level: int | None = None,
    max_file_bytes: int | None = None,
    metadata: dict[str, Any] | None = None,
    progress: Progress | None = None,
    allow_modules: Iterable[str] = (),
    options: Options | None = None,
    overwrite: bool | None = None,
) -> Manifest:
    """Write ``trace`` (hist, DAG, experiments, workspace files on disk) atomically to ``path``.

    Returns the manifest written; ``options`` default to the TRACE_CKPT_ settings (``Options.resolve()``), and
    ``level``/``max_file_bytes``/``allow_modules`` override or add to them for this call; ``overwrite=False`` refuses
    an existing file at ``path`` (``OutputExistsError``), even one that appears while the save runs. A trace holding classes a
    load would refuse (see ``allow_modules``) is refused before writing.
    """
    if not (hasattr(trace, "hist") and hasattr(trace, "dag_parent")):
        raise CheckpointError(f"save_trace needs an RD-Agent Trace, got {type(trace).__name__}")
    opts = (options or Options.resolve()).with_choices(
        level=level, max_file_bytes=max_file_bytes, allow_modules=allow_modules, overwrite=overwrite
    )
    manifest = new_manifest(trace, metadata)
    keys = list(dict.fromkeys(workspace_key(ws) for ws in iter_workspaces(trace)))
    return write_checkpoint(path, trace, manifest, keys, opts, progress=progress)


def default_workspace_root() -> Path:
    """RD-Agent's current ``RD_AGENT_SETTINGS.workspace_path`` (set WORKSPACE_PATH before importing rdagent)."""
    from rdagent.core.conf import RD_AGENT_SETTINGS

    return Path(RD_AGENT_SETTINGS.workspace_path)


@without_rdagent_logs
def restore_trace(
    path: PathLike,
    *,
    workspace_root: PathLike | None = None,
    overwrite: bool = False,
    allow_modules: Iterable[str] = (),
    require_signature: bool | None = None,
    progress: Progress | None = None,
    options: Options | None = None,
) -> Any:
    """Load the Trace saved at ``path`` and re-create its workspace folders under ``workspace_root``.

    Every ``workspace_path`` is rewritten to ``workspace_root/<folder name>``; existing different
    files are never overwritten unless ``overwrite=True``. A signed file is checked against the
    configured key (TRACE_CKPT_SIGNING_KEY...); ``require_signature`` refuses unsigned files.
    ``progress(n_bytes, n_files)`` is told what is written, as it is written.
    """
    opts = (options or Options.resolve()).with_choices(allow_modules=allow_modules, require_signature=require_signature)
    with Checkpoint.open(path, opts) as ck:
        return restore_checkpoint(ck, workspace_root=workspace_root, overwrite=overwrite, progress=progress)


@without_rdagent_logs
def restore_checkpoint(
    ck: Checkpoint,
    *,
    workspace_root: PathLike | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> Any:
    """``restore_trace`` of a checkpoint already open (``Checkpoint.open``: its signature checked with its options),
    for a caller that read its manifest first (``resume`` decides on trust before it restores)."""
    path = ck.source
    root = Path(workspace_root) if workspace_root is not None else default_workspace_root()
    trace = ck.root
    # every workspace the graph holds moves under the root, listed in the files index or not: RD-Agent
    # writes into (and clears) a workspace's folder, so none may keep the path the file chose
    elsewhere = check_trace_shape(trace, path, held=True)
    held = {id(ws): ws for ws in (*iter_workspaces(trace), *elsewhere)}
    keys = [(ws, workspace_key(ws)) for ws in held.values()]
    names = dict.fromkeys([*ck.files.workspaces, *(key for _, key in keys)])
    mapping = relocation(list(names), root.absolute(), path)
    ck.materialize(mapping, overwrite=overwrite, progress=progress)
    for ws, key in keys:
        try:
            ws.workspace_path = mapping[key]
        except (AttributeError, TypeError, ValueError) as e:
            raise CorruptCheckpointError(
                f"{path}: a {type(ws).__name__}'s workspace_path cannot be moved under {root} ({e}); "
                "the checkpoint is crafted"
            ) from None
    return trace
