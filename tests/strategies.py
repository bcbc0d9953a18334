"""Hypothesis strategies shared by the property tests."""

from __future__ import annotations

from hypothesis import strategies as st


@st.composite
def dags(draw: st.DrawFn, max_nodes: int = 7) -> tuple[list[tuple[int, ...]], list[bool], list[int]]:
    """A random trace shape: each node's parents (a root or one earlier node), decisions, and loop ids
    in a random order."""
    n = draw(st.integers(min_value=1, max_value=max_nodes))
    parents: list[tuple[int, ...]] = [()]
    for i in range(1, n):
        parents.append(draw(st.one_of(st.just(()), st.integers(0, i - 1).map(lambda p: (p,)))))
    decisions = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    loop_ids = draw(st.permutations(list(range(n))))
    return parents, decisions, loop_ids
