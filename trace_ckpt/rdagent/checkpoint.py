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

from trace_ckpt.checkpoint import PathLike, open_checkpoint, write_checkpoint
from trace_ckpt.codec.files import Progress
from trace_ckpt.errors import CheckpointError, CorruptCheckpointError
from trace_ckpt.format.container import FORMAT_VERSION
from trace_ckpt.format.manifest import Manifest, Producer
from trace_ckpt.rdagent.trace import (
    class_path,
    held_workspaces,
    iter_workspaces,
    relocation,
    summarize,
    workspace_key,
)
from trace_ckpt.settings import get_settings
from trace_ckpt.signing import configured_key


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


def save_trace(
    trace: Any,
    path: PathLike,
    *,
    level: int | None = None,
    max_file_bytes: int | None = None,
    metadata: dict[str, Any] | None = None,
    progress: Progress | None = None,
    allow_modules: Iterable[str] = (),
) -> Manifest:
    """Write ``trace`` (hist, DAG, experiments, workspace files on disk) atomically to ``path``.

    Returns the manifest written; ``level``/``max_file_bytes`` default to the TRACE_CKPT_ settings.
    A trace holding classes a load would refuse (see ``allow_modules``) is refused before writing.
    """
    if not (hasattr(trace, "hist") and hasattr(trace, "dag_parent")):
        raise CheckpointError(f"save_trace needs an RD-Agent Trace, got {type(trace).__name__}")
    settings = get_settings()
    manifest = new_manifest(trace, metadata)
    keys = list(dict.fromkeys(workspace_key(ws) for ws in iter_workspaces(trace)))
    return write_checkpoint(
        path,
        trace,
        manifest,
        keys,
        level=settings.level if level is None else level,
        threads=settings.threads,
        max_file_bytes=settings.max_file_bytes if max_file_bytes is None else max_file_bytes,
        min_blob=settings.min_blob_bytes,
        progress=progress,
        allow_modules=[*settings.allowed, *allow_modules],
        key=configured_key(settings),
    )


def default_workspace_root() -> Path:
    """RD-Agent's current ``RD_AGENT_SETTINGS.workspace_path`` (set WORKSPACE_PATH before importing rdagent)."""
    from rdagent.core.conf import RD_AGENT_SETTINGS

    return Path(RD_AGENT_SETTINGS.workspace_path)


def check_trace_shape(trace: Any, source: str) -> None:
    """Refuse a loaded object that is not a Trace with the structure RD-Agent relies on."""
    from rdagent.core.experiment import Experiment
    from rdagent.core.proposal import Trace

    problem = None
    # getattr: a damaged graph can lack an attribute outright (its state dict lost a key)
    hist, dag_parent, loop_ids = (getattr(trace, a, None) for a in ("hist", "dag_parent", "idx2loop_id"))
    if not isinstance(trace, Trace):
        problem = f"holds a {type(trace).__name__}, not a Trace"
    elif not (isinstance(hist, list) and isinstance(dag_parent, list) and isinstance(loop_ids, dict)):
        problem = "has a damaged hist / dag_parent / idx2loop_id"
    elif len(dag_parent) != len(hist):
        problem = "has a dag_parent that does not match hist"
    else:
        for node in trace.hist:
            if not (isinstance(node, tuple) and len(node) == 2 and isinstance(node[0], Experiment)):
                problem = "has a hist entry that is not (experiment, feedback)"
                break
            based = getattr(node[0], "based_experiments", [])
            subs = getattr(node[0], "sub_workspace_list", [])
            if not isinstance(based, (list, tuple)) or not isinstance(subs, (list, tuple)):
                problem = "has an experiment with damaged based_experiments / sub_workspace_list"
                break
    if problem:
        raise CorruptCheckpointError(f"{source}: the checkpoint {problem}")


def restore_trace(
    path: PathLike,
    *,
    workspace_root: PathLike | None = None,
    overwrite: bool = False,
    allow_modules: Iterable[str] = (),
    require_signature: bool | None = None,
    progress: Progress | None = None,
) -> Any:
    """Load the Trace saved at ``path`` and re-create its workspace folders under ``workspace_root``.

    Every ``workspace_path`` is rewritten to ``workspace_root/<folder name>``; existing different
    files are never overwritten unless ``overwrite=True``. A signed file is checked against the
    configured key (TRACE_CKPT_SIGNING_KEY...); ``require_signature`` refuses unsigned files.
    ``progress(n_bytes, n_files)`` is told what is written, as it is written.
    """
    settings = get_settings()
    root = Path(workspace_root) if workspace_root is not None else default_workspace_root()
    allow = [*settings.allowed, *allow_modules]
    require = settings.require_signature if require_signature is None else require_signature
    with open_checkpoint(path, allow_modules=allow, key=configured_key(settings), require_signature=require) as ck:
        trace = ck.root
        check_trace_shape(trace, str(path))
        # every workspace the graph holds moves under the root, listed in the files index or not: RD-Agent
        # writes into (and clears) a workspace's folder, so none may keep the path the file chose
        held = {id(ws): ws for ws in (*iter_workspaces(trace), *held_workspaces(trace))}
        keys = [(ws, workspace_key(ws)) for ws in held.values()]
        names = dict.fromkeys([*ck.files.workspaces, *(key for _, key in keys)])
        mapping = relocation(list(names), root.absolute(), str(path))
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
