"""What prune and merge share: load a checkpoint whose trace they change, and write the changed trace.

``load_for_surgery`` opens through ``open_checkpoint`` (checksums, signature, class list) and checks the trace's
shape; ``write_surgery`` writes through ``write_checkpoint_carrying``, so workspace files are copied from the
inputs' stored blobs byte-exactly and need not exist on disk.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any, Literal

from trace_ckpt.checkpoint import CarriedFolder, LoadedCheckpoint, PathLike, open_checkpoint, write_checkpoint_carrying
from trace_ckpt.format.manifest import Manifest
from trace_ckpt.quant import phase
from trace_ckpt.rdagent.checkpoint import check_trace_shape, new_manifest
from trace_ckpt.rdagent.trace import experiment_kind, iter_workspaces, workspace_key
from trace_ckpt.settings import get_settings
from trace_ckpt.signing import configured_key, configured_private_key

log = logging.getLogger("trace_ckpt")

Action = Literal["factor", "model"]
ACTIONS: tuple[str, ...] = ("factor", "model")


def node_action(exp: Any) -> str:
    """A node's action: its hypothesis' ``action`` (fin_quant), else its experiment kind (fin_factor, fin_model)."""
    return phase(getattr(getattr(exp, "hypothesis", None), "action", None), experiment_kind(exp))


@contextlib.contextmanager
def load_for_surgery(
    path: PathLike, allow_modules: Sequence[str], require_signature: bool | None
) -> Iterator[LoadedCheckpoint]:
    """Open ``path`` as every loader does (checksums, signature, class list) and check its trace's shape."""
    settings = get_settings()
    require = settings.require_signature if require_signature is None else require_signature
    with open_checkpoint(
        path, allow_modules=[*settings.allowed, *allow_modules], key=configured_key(settings), require_signature=require
    ) as ck:
        check_trace_shape(ck.root, str(path))
        yield ck


def write_surgery(
    trace: Any,
    out: PathLike,
    folders: dict[str, CarriedFolder],
    metadata: dict[str, Any],
    level: int | None,
    allow_modules: Sequence[str],
    sources: Sequence[LoadedCheckpoint],
) -> Manifest:
    """Write a pruned or merged trace, signed only when a key of yours verified every source: signing content
    nobody here vouched for would make resume trust a stranger's file."""
    settings = get_settings()
    manifest = new_manifest(trace, metadata)
    unverified = [ck._reader.source for ck in sources if ck.signature != "ok"]
    key = configured_key(settings)
    if unverified and (key or configured_private_key()):  # it would have been signed
        log.warning(
            "%s is written unsigned: %s %s not verified by a key of yours",
            out,
            ", ".join(unverified),
            "is" if len(unverified) == 1 else "are",
        )
    return write_checkpoint_carrying(
        out,
        trace,
        manifest,
        folders,
        level=settings.level if level is None else level,
        threads=settings.threads,
        min_blob=settings.min_blob_bytes,
        allow_modules=[*settings.allowed, *allow_modules],
        key=key,
        sign=not unverified,
    )


def workspace_keys(trace: Any) -> list[str]:
    """The stored folder keys of every workspace the trace reaches, once each, in walk order."""
    return list(dict.fromkeys(workspace_key(ws) for ws in iter_workspaces(trace)))
