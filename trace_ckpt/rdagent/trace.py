"""What trace-ckpt knows about RD-Agent's object model: experiments, workspaces, node summaries.

Only this package imports rdagent. Classes are recognised by name along the MRO so that summarising
a trace never has to import a scenario module (and its settings) that the trace did not use.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from trace_ckpt._os import is_plain_name
from trace_ckpt.errors import CorruptCheckpointError
from trace_ckpt.format.manifest import NodeSummary, TraceCounts
from trace_ckpt.quant import KEY_METRICS, accepted, class_path, factor_name, sota_index

# a result longer than this keeps only KEY_METRICS; every numeric entry of a smaller one is kept
_MAX_METRICS = 64


def _mro_names(obj: Any) -> set[str]:
    return {c.__name__ for c in type(obj).__mro__}


def iter_experiments(trace: Any) -> Iterator[Any]:
    """Every experiment reachable from ``trace.hist``, including nested ``based_experiments``, once each."""
    seen: set[int] = set()
    stack = [exp for exp, _ in reversed(trace.hist)]
    while stack:
        exp = stack.pop()
        if exp is None or id(exp) in seen:
            continue
        seen.add(id(exp))
        yield exp
        stack.extend(reversed(list(getattr(exp, "based_experiments", None) or [])))


def iter_workspaces(trace: Any) -> Iterator[Any]:
    """Every file-based workspace of every reachable experiment, once each."""
    seen: set[int] = set()
    for exp in iter_experiments(trace):
        candidates = [getattr(exp, "experiment_workspace", None), *(getattr(exp, "sub_workspace_list", None) or [])]
        for ws in candidates:
            if ws is not None and hasattr(ws, "workspace_path") and id(ws) not in seen:
                seen.add(id(ws))
                yield ws


def experiment_kind(exp: Any) -> str:
    """'factor' or 'model' by experiment class (or its tasks), else 'other'."""
    names = _mro_names(exp)
    if "QlibFactorExperiment" in names:
        return "factor"
    if "QlibModelExperiment" in names:
        return "model"
    task_names: set[str] = set()
    for t in getattr(exp, "sub_tasks", None) or []:
        task_names |= _mro_names(t)
    if "FactorTask" in task_names:
        return "factor"
    if "ModelTask" in task_names:
        return "model"
    return "other"


def sota_factor_experiments(trace: Any) -> list[Any]:
    """The accepted factor experiments of ``trace.hist``, oldest first: what a model phase trains on."""
    return [exp for exp, fb in trace.hist if accepted(fb) and experiment_kind(exp) == "factor"]


def _metrics(result: Any) -> dict[str, float]:
    if not isinstance(result, pd.Series) or len(result) > _MAX_METRICS:
        if isinstance(result, pd.Series):
            result = result[[k for k in KEY_METRICS if k in result.index]]
        else:
            return {}
    out: dict[str, float] = {}
    for k, v in result.items():
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out[str(k)] = f
    return out


def _first_line(text: Any, limit: int = 200) -> str | None:
    if text is None:
        return None
    for line in str(text).strip().splitlines():
        if line.strip():
            return line.strip()[:limit]
    return ""


def summarize(trace: Any) -> tuple[list[NodeSummary], TraceCounts, int | None]:
    """Per-node summaries, counts, and the index of the SOTA node (the last accepted one)."""
    nodes: list[NodeSummary] = []
    counts = TraceCounts(hist=len(trace.hist))
    for i, (exp, fb) in enumerate(trace.hist):
        decision = None if fb is None else accepted(fb)
        kind = experiment_kind(exp)
        hyp = getattr(exp, "hypothesis", None)
        parents = list(trace.dag_parent[i]) if i < len(trace.dag_parent) else []
        factors = [factor_name(t) for t in (getattr(exp, "sub_tasks", None) or [])]
        nodes.append(
            NodeSummary(
                index=i,
                loop_id=trace.idx2loop_id.get(i),
                parents=parents,
                kind=kind,  # type: ignore[arg-type]
                action=getattr(hyp, "action", None),
                experiment_class=class_path(exp),
                hypothesis=_first_line(getattr(hyp, "hypothesis", None)),
                decision=decision,
                factors=factors,
                metrics=_metrics(getattr(getattr(exp, "running_info", None), "result", None)),
                experiment_workspace=_ws_key(getattr(exp, "experiment_workspace", None)),
                sub_workspaces=[_ws_key(ws) for ws in (getattr(exp, "sub_workspace_list", None) or [])],
            )
        )
        counts.accepted += decision is True
        counts.rejected += decision is False
        counts.factor_experiments += kind == "factor"
        counts.model_experiments += kind == "model"
        counts.roots += not parents
    return nodes, counts, sota_index(nodes)


def _ws_key(ws: Any) -> str | None:
    return workspace_key(ws) if ws is not None and hasattr(ws, "workspace_path") else None


def workspace_key(ws: Any) -> str:
    """The key a workspace's folder is stored under: its ``workspace_path`` exactly as the trace holds it."""
    return str(ws.workspace_path)


# values the walk of held_workspaces never enters
_LEAVES = frozenset((str, bytes, int, float, bool, complex, type(None), bytearray, type))
_NOT_ENTERED = ("pandas.", "numpy", "pyarrow", "pathlib")


def held_workspaces(root: Any) -> list[Any]:
    """Every object in the graph under ``root`` with a ``workspace_path`` of its own, wherever it sits
    (hist, based_experiments, a knowledge base, any attribute), once each; pandas and numpy values are
    not entered."""
    found: list[Any] = []
    seen: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        t = type(obj)
        if t in _LEAVES or id(obj) in seen:
            continue
        seen.add(id(obj))
        if t is list or t is tuple or t is set or t is frozenset:
            stack.extend(obj)
            continue
        if t is dict:
            stack.extend(obj)
            stack.extend(obj.values())
            continue
        if t.__module__.startswith(_NOT_ENTERED):
            continue
        state = getattr(obj, "__dict__", None)
        if isinstance(state, dict):
            if "workspace_path" in state:
                found.append(obj)
            stack.extend(state.values())
        if isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        elif isinstance(obj, dict):
            stack.extend(obj)
            stack.extend(obj.values())
    return found


def relocation(keys: list[str], new_root: Path, source: str = "checkpoint") -> dict[str, Path]:
    """Map each original workspace folder to ``new_root/<its folder name>`` (name clashes get a suffix).

    A key whose last part is ``..`` or that holds a NUL byte names no folder: CorruptCheckpointError.
    """
    mapping: dict[str, Path] = {}
    used: set[str] = set()
    for key in keys:
        name = PurePosixPath(key).name or "workspace"
        if not is_plain_name(name) or "\0" in key:
            raise CorruptCheckpointError(
                f"{source}: workspace folder {key!r} does not end in a folder name; the checkpoint is crafted or damaged"
            )
        candidate, n = name, 1
        while candidate in used:
            n += 1
            candidate = f"{name}-{n}"
        used.add(candidate)
        mapping[key] = new_root / candidate
    return mapping
