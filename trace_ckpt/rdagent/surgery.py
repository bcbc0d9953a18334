"""Trace surgery in one import: prune and merge (``trace_ckpt.rdagent.prune``, ``.merge``) and diff (``trace_ckpt.views.diff``).

    from trace_ckpt import prune, merge, diff
    prune("run1.tckpt", "sota.tckpt", keep="sota")               # the SOTA node of each sub-trace
    prune("run1.tckpt", "last3.tckpt", keep="last:3", action="factor")
    merge(["run1.tckpt", "run2.tckpt"], "both.tckpt")           # each input becomes a sub-trace (a root)
    diff("run1.tckpt", "both.tckpt").equal                      # nodes matched by loop id and content

``prune`` and ``merge`` load the object graph and live beside RD-Agent's model; ``diff`` reads manifests and file
indexes only (it never unpickles and never imports rdagent), so it lives with the other views.
"""

from __future__ import annotations

from trace_ckpt.quant import accepted, nearest_kept
from trace_ckpt.rdagent.merge import FactorDuplicate, FactorRename, MergeReport, code_hash, factor_code, merge
from trace_ckpt.rdagent.prune import Keep, PruneReport, keep_nodes, prune, select_nodes
from trace_ckpt.rdagent.rewrite import ACTIONS, Action, node_action
from trace_ckpt.views.diff import FactorChange, FilesChange, NodeChange, TraceDiff, diff

__all__ = [
    "ACTIONS",
    "Action",
    "FactorChange",
    "FactorDuplicate",
    "FactorRename",
    "FilesChange",
    "Keep",
    "MergeReport",
    "NodeChange",
    "PruneReport",
    "TraceDiff",
    "accepted",
    "code_hash",
    "diff",
    "factor_code",
    "keep_nodes",
    "merge",
    "nearest_kept",
    "node_action",
    "prune",
    "select_nodes",
]
