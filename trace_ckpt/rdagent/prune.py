"""Prune: keep some nodes of a checkpoint's trace, re-linked to their nearest kept ancestors.

from trace_ckpt.rdagent.prune import prune
prune("run1.tckpt", "sota.tckpt", keep="sota")               # the SOTA node of each sub-trace
prune("run1.tckpt", "last3.tckpt", keep="last:3", action="factor")
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from trace_ckpt.ckpt import PathLike
from trace_ckpt.errors import NothingToExportError
from trace_ckpt.format.manifest import Manifest
from trace_ckpt.pipeline import CarriedFolder
from trace_ckpt.quant import accepted, nearest_kept, sota_by_subtrace
from trace_ckpt.rdagent.logs import without_rdagent_logs
from trace_ckpt.rdagent.rewrite import ACTIONS, Action, load_for_surgery, node_action, workspace_keys, write_surgery


@dataclass(frozen=True)
class Keep:
    """Which nodes ``prune`` keeps: ``sota`` (the last accepted node of each sub-trace), ``accepted``, ``last:N``."""

    rule: Literal["sota", "accepted", "last"]
    n: int = 0

    @classmethod
    def parse(cls, spec: str | Keep) -> Keep:
        """``"sota"``, ``"accepted"`` or ``"last:N"`` (N >= 1); ValueError otherwise."""
        if isinstance(spec, Keep):
            return spec
        text = str(spec).strip().lower()
        if text in ("sota", "accepted"):
            return cls(text)  # type: ignore[arg-type]
        m = re.fullmatch(r"last:(\d+)", text)
        if m and int(m.group(1)) >= 1:
            return cls("last", int(m.group(1)))
        raise ValueError(f"{spec!r} is not one of sota, accepted, last:N (N >= 1)")

    def __str__(self) -> str:
        return f"last:{self.n}" if self.rule == "last" else self.rule


def select_nodes(trace: Any, keep: str | Keep, action: Action | None = None) -> list[int]:
    """The indices of ``trace.hist`` that ``keep`` selects among the nodes of ``action`` (all when None).

    ``sota`` is, per sub-trace (root tree), the last accepted node: what ``Trace.get_sota_hypothesis_and_experiment``
    returns for a one-tree trace.
    """
    rule = Keep.parse(keep)
    if action is not None and action not in ACTIONS:
        raise ValueError(f"action {action!r} is not one of {', '.join(ACTIONS)}")
    candidates = [i for i, (exp, _) in enumerate(trace.hist) if action is None or node_action(exp) == action]
    if rule.rule == "last":
        return candidates[-rule.n :]
    chosen = [i for i in candidates if accepted(trace.hist[i][1])]
    if rule.rule == "accepted":
        return chosen
    chosen_set = set(chosen)
    flags = [i in chosen_set for i in range(len(trace.hist))]
    return sorted(sota_by_subtrace([tuple(p) for p in trace.dag_parent], flags).values())


def _remap_selection(
    sel: Any,
    new: dict[int, int],
    parents: Sequence[tuple[int, ...]],
    kept: set[int],
    memo: dict[int, tuple[int, ...]],
) -> Any:
    """A selection tuple in new indices: () and (-1,) ("the latest node") keep their meaning; a dropped node
    becomes its nearest kept ancestor, or () (a new root) when it has none."""
    if not isinstance(sel, tuple) or not sel or any(not isinstance(i, int) or i < 0 for i in sel):
        return sel
    out: list[int] = []
    for i in sel:
        if i in kept:
            targets: tuple[int, ...] = (i,)
        else:
            targets = nearest_kept(parents, kept, i, memo) if i < len(parents) else ()
        out.extend(new[j] for j in targets if new[j] not in out)
    return tuple(out)


def keep_nodes(trace: Any, indices: Sequence[int]) -> Any:
    """Reduce ``trace`` in place to the nodes ``indices`` (in hist order), re-indexing ``dag_parent``,
    ``idx2loop_id``, ``current_selection`` and the kept experiments' ``local_selection``; return it."""
    kept_list = sorted(set(indices))
    kept = set(kept_list)
    new = {old: k for k, old in enumerate(kept_list)}
    parents = [tuple(p) for p in trace.dag_parent]
    hist = [trace.hist[i] for i in kept_list]
    memo: dict[int, tuple[int, ...]] = {}  # each dropped node is walked through once
    trace.dag_parent = [tuple(new[p] for p in nearest_kept(parents, kept, i, memo)) for i in kept_list]
    trace.idx2loop_id = {new[i]: trace.idx2loop_id[i] for i in kept_list if i in trace.idx2loop_id}
    if hasattr(trace, "current_selection"):
        trace.current_selection = _remap_selection(trace.current_selection, new, parents, kept, memo)
    for exp in {id(e): e for e, _ in hist}.values():
        if hasattr(exp, "local_selection"):
            exp.local_selection = _remap_selection(exp.local_selection, new, parents, kept, memo)
    trace.hist = hist
    return trace


@dataclass
class PruneReport:
    """What ``prune`` wrote: the manifest, the old indices of the kept nodes (new order), how many were dropped."""

    manifest: Manifest
    kept: list[int]
    dropped: int


@without_rdagent_logs  # no RD-Agent log files in the current folder
def prune(
    ckpt: PathLike,
    out: PathLike,
    *,
    keep: str | Keep,
    action: Action | None = None,
    level: int | None = None,
    allow_modules: Sequence[str] = (),
    require_signature: bool | None = None,
    overwrite: bool | None = None,
) -> PruneReport:
    """Write to ``out`` a checkpoint of only the nodes ``keep`` selects (among ``action``'s nodes when given).

    A kept node hangs from its nearest kept ancestor (or becomes a root); workspaces of dropped nodes go,
    unless a kept node still uses them through ``based_experiments``.
    """
    rule = Keep.parse(keep)
    with load_for_surgery(ckpt, allow_modules, require_signature) as ck:
        trace = ck.root
        total = len(trace.hist)
        indices = select_nodes(trace, rule, action)
        if not indices:
            what = f"{action} node" if action else "node"
            raise NothingToExportError(f"{ckpt}: --keep {rule} selects no {what} of its {total}; nothing written")
        keep_nodes(trace, indices)
        metadata = dict(ck.manifest.metadata)
        metadata["pruned_from"] = {
            "path": str(ckpt),
            "created_at": ck.manifest.created_at.isoformat(),
            "nodes": total,
            "keep": str(rule),
            "action": action,
            "kept": indices,
        }
        # Workspace files are carried over from the source's blobs rather than materialized and re-captured:
        # no temporary copy of every folder, no dependence on the disk, and the bytes cannot change on the way.
        folders = {key: CarriedFolder(ck, key) for key in workspace_keys(trace)}
        manifest = write_surgery(trace, out, folders, metadata, level, allow_modules, [ck], overwrite)
    return PruneReport(manifest, indices, total - len(indices))
