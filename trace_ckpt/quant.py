"""The quant vocabulary: what RD-Agent's Qlib runs measure, accept, call SOTA and train on, in one place.

Imports neither rdagent nor pandas, so manifest readers (inspect, ls, diff, export, plot) use it as the RD-Agent
side does. Each name, in one line:

- ``IC``, ``ICIR``, ``RANK_IC``, ``RANK_ICIR``: the signal metrics, keys of the ``qlib_res.csv`` RD-Agent's Qlib runner writes.
- ``ANNUALIZED_RETURN``, ``INFORMATION_RATIO``, ``MAX_DRAWDOWN``: the backtest's ``1day.excess_return_with_cost.*`` keys.
- ``KEY_METRICS``: those seven, in the order a researcher reads them; ``METRIC_LABELS``: a short column label for each.
- ``metric_key(name)``: a key or a label (``"Rank IC"``, ``"ann. return"``, ``"arr"``) as the key; ValueError if unknown.
- ``accepted(feedback)``: an RD-Agent feedback says the node was accepted (its ``decision``, what ``if feedback`` tests).
- ``node_accepted(node)``: a manifest node was accepted (``decision is True``).
- ``sota_index(nodes)``: RD-Agent's SOTA, the LAST accepted node (``Trace.get_sota_hypothesis_and_experiment``).
- ``sota_by_subtrace(parents, flags)``: the last accepted node of each sub-trace (root tree), as ``prune --keep sota`` keeps.
- ``nearest_kept(parents, kept, i)``: node i's nearest ancestors among ``kept`` (how prune re-links, how diff compares parents).
- ``best_accepted(nodes, metric)``: the accepted node with the best value of a metric the caller names (not the SOTA).
- ``sota_factor_nodes(nodes)``: the accepted factor nodes, every sub-trace's: the factor set a model phase trains on.
- ``sota_factor_names(nodes)``: the names of that factor set, in trace order, each once.
- ``FACTOR_FILE``, ``RESULT_FILE``: a factor workspace's code (``factor.py``) and the values it writes (``result.h5``).
- ``factor_name(task)``: a factor task's name: ``factor_name``, else ``name``, else ``""`` (one precedence).
- ``node_factor_name(node, i)``: the name of a manifest node's i-th factor, ``factor_<node>_<i>`` when it has none.
- ``phase(action, kind)``: a node's phase: its hypothesis' action (fin_quant), else its experiment kind.
- ``class_path(obj)``: ``module.QualName`` of a class or of an object's class (how RD-Agent names plug-ins).
"""

from __future__ import annotations

import math
from collections.abc import Container, Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trace_ckpt.format.manifest import NodeSummary

# --------------------------------------------------------------------------------------------------- metrics
# Read from rdagent 1.0.0: scenarios/qlib/experiment/*_template/read_exp_res.py writes Qlib's recorder metrics
# to qlib_res.csv; QlibFBWorkspace.execute reads it back as a Series (the experiment's result).

IC = "IC"
ICIR = "ICIR"
RANK_IC = "Rank IC"
RANK_ICIR = "Rank ICIR"
ANNUALIZED_RETURN = "1day.excess_return_with_cost.annualized_return"
INFORMATION_RATIO = "1day.excess_return_with_cost.information_ratio"
MAX_DRAWDOWN = "1day.excess_return_with_cost.max_drawdown"  # negative: closer to 0 is better

KEY_METRICS: tuple[str, ...] = (IC, ICIR, RANK_IC, RANK_ICIR, ANNUALIZED_RETURN, INFORMATION_RATIO, MAX_DRAWDOWN)
METRIC_LABELS: dict[str, str] = {
    IC: "IC",
    ICIR: "ICIR",
    RANK_IC: "Rank IC",
    RANK_ICIR: "Rank ICIR",
    ANNUALIZED_RETURN: "ann. return",
    INFORMATION_RATIO: "IR",
    MAX_DRAWDOWN: "max DD",
}
_ALIASES = {"arr": ANNUALIZED_RETURN, "ir": INFORMATION_RATIO, "mdd": MAX_DRAWDOWN}


def metric_key(name: str) -> str:
    """The result key a user's metric name means: a key itself, a label of ``METRIC_LABELS`` or arr/ir/mdd (any case)."""
    if name in KEY_METRICS:
        return name
    low = name.strip().lower()
    for key, label in METRIC_LABELS.items():
        if low in (key.lower(), label.lower()):
            return key
    if low in _ALIASES:
        return _ALIASES[low]
    if name.startswith("1day."):  # another Qlib backtest key, e.g. ..._without_cost.annualized_return
        return name
    raise ValueError(f"unknown metric {name!r}: use one of {', '.join(METRIC_LABELS.values())}, or a 1day.* key")


# ------------------------------------------------------------------------------------------- accepted, SOTA


def accepted(feedback: Any) -> bool:
    """Whether RD-Agent accepted a node: its feedback's ``decision`` (what RD-Agent's ``if feedback`` tests)."""
    return feedback is not None and bool(getattr(feedback, "decision", False))


def node_accepted(node: NodeSummary) -> bool:
    """Whether a manifest node was accepted (its recorded decision is True)."""
    return node.decision is True


def sota_index(nodes: Sequence[NodeSummary]) -> int | None:
    """RD-Agent's SOTA: the index of the last accepted node, or None."""
    return next((n.index for n in reversed(nodes) if node_accepted(n)), None)


def _root(parents: Sequence[Sequence[int]], i: int, known: dict[int, int]) -> int:
    """Node ``i``'s root; every node walked through is remembered in ``known`` (a chain is walked once, not once
    per node: 20,000 accepted nodes in a chain took 20 s)."""
    path: dict[int, None] = {}
    while i not in known and parents[i] and i not in path and 0 <= parents[i][0] < len(parents):
        path[i] = None
        i = parents[i][0]  # RD-Agent follows the first parent (Trace.get_parents)
    root = known.get(i, i)
    known.update(dict.fromkeys(path, root))
    return root


def sota_by_subtrace(parents: Sequence[Sequence[int]], flags: Sequence[bool]) -> dict[int, int]:
    """Root index -> last accepted node of that sub-trace (root tree), given each node's parents and acceptance."""
    last: dict[int, int] = {}
    known: dict[int, int] = {}
    for i, ok in enumerate(flags):
        if ok:
            last[_root(parents, i, known)] = i
    return last


def nearest_kept(
    parents: Sequence[Sequence[int]], kept: Container[int], i: int, memo: dict[int, tuple[int, ...]] | None = None
) -> tuple[int, ...]:
    """The nearest ancestors of node ``i`` that are in ``kept``, walking up through the others (parent order kept).

    ``memo``: a dict shared by calls with the same ``parents`` and ``kept``, so each node is walked through once
    over all of them (diff asks for every node: an unmatched chain of 8,000 nodes under 8,000 matched ones took 17 s).
    Within one call each node is walked through once too. Only a crafted file has a cycle: a node whose walk met one
    is not remembered (its answer depends on where the walk began).
    """
    memo = {} if memo is None else memo
    n = len(parents)
    walked = {i}
    # each frame: a node, its parents still to look at, what they gave so far (an ordered set), whether it is complete
    stack: list[tuple[int, list[int], dict[int, None], list[bool]]] = [(i, list(reversed(parents[i])), {}, [True])]
    while True:
        node, todo, found, complete = stack[-1]
        if todo:
            p = todo.pop()
            if not 0 <= p < n:
                continue
            if p in kept and p != i:
                found[p] = None
            elif p in memo:  # (``i`` is in it only on a cycle, where the walk never names ``i``)
                found.update(dict.fromkeys(k for k in memo[p] if k != i))
            elif p in walked:  # on a cycle, or after one: what it gives is already in the answer, or never will be
                complete[0] = False
            else:
                walked.add(p)
                stack.append((p, list(reversed(parents[p])), {}, [True]))
            continue
        stack.pop()
        result = tuple(found)
        if not stack:
            return result
        if complete[0]:
            memo[node] = result
        else:
            stack[-1][3][0] = False
        stack[-1][2].update(dict.fromkeys(result))


def metric_value(node: NodeSummary, metric: str) -> float | None:
    """A node's finite value of ``metric`` (a key or label, see :func:`metric_key`), else None."""
    v = node.metrics.get(metric_key(metric))
    return v if v is not None and math.isfinite(v) else None


def best_accepted(nodes: Iterable[NodeSummary], metric: str = IC, *, maximize: bool = True) -> int | None:
    """The index of the accepted node with the best ``metric`` (highest unless ``maximize`` is False); None if none has it."""
    best: tuple[float, int] | None = None
    for n in nodes:
        v = metric_value(n, metric) if node_accepted(n) else None
        if v is None:
            continue
        score = v if maximize else -v
        if best is None or score > best[0]:  # the earliest of equal values
            best = (score, n.index)
    return None if best is None else best[1]


def sota_factor_nodes(nodes: Iterable[NodeSummary]) -> list[NodeSummary]:
    """The accepted factor nodes (every sub-trace's), oldest first: RD-Agent's model phase trains on all of them."""
    return [n for n in nodes if node_accepted(n) and n.kind == "factor"]


def sota_factor_names(nodes: Iterable[NodeSummary]) -> list[str]:
    """The names of the SOTA factor set, in trace order, each once."""
    names = (node_factor_name(n, i) for n in sota_factor_nodes(nodes) for i in range(len(n.sub_workspaces)))
    return list(dict.fromkeys(names))


# ------------------------------------------------------------------------------------------------- factors

FACTOR_FILE = "factor.py"  # a factor workspace's code, in its file_dict
RESULT_FILE = "result.h5"  # the factor values factor.py writes (only on disk, captured with the folder)


def factor_name(task: Any) -> str:
    """A factor task's name: ``factor_name`` (FactorTask), else ``name``, else ``""``."""
    return str(getattr(task, "factor_name", None) or getattr(task, "name", None) or "")


def node_factor_name(node: NodeSummary, i: int) -> str:
    """The name of manifest node ``node``'s i-th factor (sub-workspace); ``factor_<index>_<i>`` when unnamed."""
    name = node.factors[i] if i < len(node.factors) else ""
    return name or f"factor_{node.index}_{i}"


def phase(action: str | None, kind: str) -> str:
    """A node's phase: its hypothesis' action ("factor"/"model", fin_quant) when it has one, else its experiment kind."""
    return action if action in ("factor", "model") else kind


def class_path(obj: Any) -> str:
    """``module.QualName`` of a class, or of an object's class."""
    t = obj if isinstance(obj, type) else type(obj)
    return f"{t.__module__}.{t.__qualname__}"
