"""What prune and merge share: load a checkpoint whose trace they change, and write the changed trace.

``load_for_surgery`` opens through ``Checkpoint.open`` (checksums, signature, class list) and checks the trace's
shape; ``write_surgery`` writes through ``write_checkpoint_carrying``, so workspace files are copied from the
inputs' stored blobs byte-exactly and need not exist on disk.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any, Literal

from trace_ckpt.ckpt import Checkpoint, PathLike
from trace_ckpt.format.manifest import Manifest
from trace_ckpt.pipeline import CarriedFolder, write_checkpoint_carrying
from trace_ckpt.quant import phase
from trace_ckpt.rdagent.checkpoint import new_manifest
from trace_ckpt.rdagent.shape import check_trace_shape
from trace_ckpt.rdagent.trace import experiment_kind, iter_workspaces, workspace_key
from trace_ckpt.settings import Options

log = logging.getLogger("trace_ckpt")

Action = Literal["factor", "model"]
ACTIONS: tuple[str, ...] = ("factor", "model")


def node_action(exp: Any) -> str:
    """A node's action: its hypothesis' ``action`` (fin_quant), else its experiment kind (fin_factor, fin_model)."""
    return phase(getattr(getattr(exp, "hypothesis", None), "action", None), experiment_kind(exp))


@contextlib.contextmanager
def load_for_surgery(
    path: PathLike, allow_modules: Sequence[str], require_signature: bool | None
) -> Iterator[Checkpoint]:
    """Open ``path`` as every loader does (checksums, signature, class list) and check its trace's shape."""
    options = Options.resolve(allow_modules=allow_modules, require_signature=require_signature)
    with Checkpoint.open(path, options) as ck:
        check_trace_shape(ck.root, str(path))
        yield ck


def write_surgery(
    trace: Any,
    out: PathLike,
    folders: dict[str, CarriedFolder],
    metadata: dict[str, Any],
    level: int | None,
    allow_modules: Sequence[str],
    sources: Sequence[Checkpoint],
    overwrite: bool | None = None,
) -> Manifest:
    """Write a pruned or merged trace, signed only when a key of yours verified every source: signing content
    nobody here vouched for would make resume trust a stranger's file."""
    options = Options.resolve(level=level, allow_modules=allow_modules, overwrite=overwrite)
    manifest = new_manifest(trace, metadata)
    unverified = [ck.source for ck in sources if ck.signature != "ok"]
    if unverified and (options.key or options.private_key):  # it would have been signed
        log.warning(
            "%s is written unsigned: %s %s not verified by a key of yours",
            out,
            ", ".join(unverified),
            "is" if len(unverified) == 1 else "are",
        )
    return write_checkpoint_carrying(out, trace, manifest, folders, options, sign=not unverified)


def workspace_keys(trace: Any) -> list[str]:
    """The stored folder keys of every workspace the trace reaches, once each, in walk order."""
    return list(dict.fromkeys(workspace_key(ws) for ws in iter_workspaces(trace)))
