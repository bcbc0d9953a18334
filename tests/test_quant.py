"""trace_ckpt.quant: the quant vocabulary, on manifest nodes built here (no checkpoint, no RD-Agent run)."""

from __future__ import annotations

import math
import random
import subprocess
import sys
from types import SimpleNamespace

import pytest

from trace_ckpt import quant
from trace_ckpt.format.manifest import NodeSummary


def node(i: int, decision: bool | None, ic: float | None = None, kind: str = "factor", **kw) -> NodeSummary:
    metrics = {} if ic is None else {quant.IC: ic}
    return NodeSummary(index=i, experiment_class="x.Exp", decision=decision, kind=kind, metrics=metrics, **kw)


def test_quant_and_diff_import_neither_rdagent_nor_pandas() -> None:
    code = (
        "import sys, trace_ckpt.quant, trace_ckpt.views.diff; from trace_ckpt import diff; "
        "print(sorted(m for m in ('rdagent', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_metric_keys_are_rdagents() -> None:
    # the keys RD-Agent's Qlib feedback and bandit read from a result (read_exp_res.py writes them to qlib_res.csv)
    from rdagent.scenarios.qlib.developer.feedback import IMPORTANT_METRICS

    assert set(IMPORTANT_METRICS) <= set(quant.KEY_METRICS)
    assert quant.KEY_METRICS[:4] == ("IC", "ICIR", "Rank IC", "Rank ICIR")
    assert set(quant.METRIC_LABELS) == set(quant.KEY_METRICS)


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("IC", quant.IC),
        ("rank ic", quant.RANK_IC),
        ("ann. return", quant.ANNUALIZED_RETURN),
        ("ARR", quant.ANNUALIZED_RETURN),
        ("mdd", quant.MAX_DRAWDOWN),
        (quant.INFORMATION_RATIO, quant.INFORMATION_RATIO),
        ("1day.excess_return_without_cost.annualized_return", "1day.excess_return_without_cost.annualized_return"),
    ],
)
def test_metric_key(name: str, key: str) -> None:
    assert quant.metric_key(name) == key


def test_metric_key_refuses_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown metric 'sharpe'"):
        quant.metric_key("sharpe")


def test_sota_is_the_last_accepted_and_best_is_by_the_named_metric() -> None:
    nodes = [node(0, True, 0.05), node(1, False, 0.09), node(2, True, 0.02), node(3, None), node(4, True)]
    assert quant.sota_index(nodes) == 4  # RD-Agent's: the last accepted, metric or not
    assert quant.best_accepted(nodes) == 0  # the rejected node 1 has the highest IC but is not accepted
    assert quant.best_accepted(nodes, "IC", maximize=False) == 2
    assert quant.best_accepted(nodes, "ICIR") is None
    assert quant.sota_index([node(0, False), node(1, None)]) is None
    nodes[0].metrics[quant.IC] = math.nan  # NaN is no value: it never wins
    assert quant.best_accepted(nodes) == 2


def test_accepted_on_feedback_and_node() -> None:
    assert quant.accepted(SimpleNamespace(decision=True))
    assert not quant.accepted(SimpleNamespace(decision=False))
    assert not quant.accepted(None) and not quant.accepted(SimpleNamespace())
    assert quant.node_accepted(node(0, True)) and not quant.node_accepted(node(0, None))


def test_sota_by_subtrace_and_nearest_kept() -> None:
    parents = [(), (0,), (1,), (), (3,), (2,)]
    flags = [True, True, False, True, False, False]
    assert quant.sota_by_subtrace(parents, flags) == {0: 1, 3: 3}
    assert quant.nearest_kept(parents, {0}, 5) == (0,)  # up through 2 and 1
    assert quant.nearest_kept(parents, {1, 3}, 4) == (3,)
    assert quant.nearest_kept(parents, set(), 5) == ()


def _walk_up(parents: list[tuple[int, ...]], kept: set[int], i: int) -> tuple[int, ...]:
    """nearest_kept as a plain depth-first walk (its definition, without the memo)."""
    found: list[int] = []
    seen = {i}
    stack = list(reversed(parents[i]))
    while stack:
        p = stack.pop()
        if p in seen or not 0 <= p < len(parents):
            continue
        seen.add(p)
        if p in kept:
            found.append(p)
        else:
            stack.extend(reversed(parents[p]))
    return tuple(found)


def test_nearest_kept_with_a_shared_memo_is_the_plain_walk() -> None:
    """On 2,000 random DAGs (parents earlier, repeats, out-of-range parents), every node asked in a random order with
    one memo gives what the plain walk gives; on graphs with cycles (crafted files) only ancestors the walk finds."""
    rng = random.Random(7)
    for trial in range(3000):
        n = rng.randint(1, 30)
        cyclic = trial % 3 == 0
        parents = [
            tuple(rng.randrange(-1, n + 1 if cyclic else max(i, 1)) for _ in range(rng.randint(0, 3))) if i else ()
            for i in range(n)
        ]
        kept = {k for k in range(n) if rng.random() < 0.4}
        memo: dict[int, tuple[int, ...]] = {}
        for i in rng.sample(range(n), n):
            got, walked = quant.nearest_kept(parents, kept, i, memo), _walk_up(parents, kept, i)
            if cyclic:
                assert set(got) <= set(walked) and i not in got, (parents, kept, i)
            else:
                assert got == walked, (parents, kept, i)


class _Counted(list):
    """A parents list that counts how often a node's parents are read."""

    reads = 0

    def __getitem__(self, i):  # type: ignore[override]
        _Counted.reads += 1
        return super().__getitem__(i)


def test_nearest_kept_walks_a_chain_once_over_all_calls() -> None:
    """diff asks for every matched node: 2,000 matched nodes under an unmatched chain of 2,000 read the chain once
    with a memo (each call walked all of it before: 4 million reads; 8,000 + 8,000 nodes took 17 s)."""
    chain = [()] + [(i - 1,) for i in range(1, 2000)]
    parents = _Counted(chain + [(1999,)] * 2000)
    kept = {0, *range(2000, 4000)}
    memo: dict[int, tuple[int, ...]] = {}
    _Counted.reads = 0
    assert all(quant.nearest_kept(parents, kept, i, memo) == (0,) for i in range(2000, 4000))
    assert _Counted.reads < 3 * 4000


def test_factor_names_one_precedence() -> None:
    assert quant.factor_name(SimpleNamespace(factor_name="mom_5", name="task")) == "mom_5"
    assert quant.factor_name(SimpleNamespace(factor_name=None, name="task")) == "task"
    assert quant.factor_name(SimpleNamespace()) == ""
    n = node(7, True, factors=["a", ""], sub_workspaces=["w0", "w1", "w2"])
    assert [quant.node_factor_name(n, i) for i in range(3)] == ["a", "factor_7_1", "factor_7_2"]


def test_sota_factor_set_is_every_accepted_factor_node() -> None:
    nodes = [
        node(0, True, factors=["a"], sub_workspaces=["w0"]),
        node(1, False, factors=["b"], sub_workspaces=["w1"]),
        node(2, True, kind="model", factors=[], sub_workspaces=[]),
        node(3, True, factors=["c", "a"], sub_workspaces=["w3", "w4"]),
    ]
    assert [n.index for n in quant.sota_factor_nodes(nodes)] == [0, 3]
    assert quant.sota_factor_names(nodes) == ["a", "c"]


def test_phase_and_class_path() -> None:
    assert quant.phase("model", "factor") == "model"
    assert quant.phase(None, "factor") == quant.phase("other", "factor") == "factor"
    assert quant.class_path(NodeSummary) == quant.class_path(node(0, True)) == "trace_ckpt.format.manifest.NodeSummary"
