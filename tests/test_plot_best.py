"""The trace plot shows RD-Agent's SOTA (the last accepted node) and, apart from it, the best accepted node by
each panel's metric: readers took the one ring for the best node (issue 14)."""

from __future__ import annotations

from datetime import datetime, timezone

from trace_ckpt.format.manifest import Manifest, NodeSummary, Producer
from trace_ckpt.plot import plot_manifest
from trace_ckpt.quant import ANNUALIZED_RETURN, IC


def manifest(rows: list[tuple[bool | None, float, float]]) -> Manifest:
    nodes = [
        NodeSummary(
            index=i, experiment_class="x.Exp", kind="factor", decision=d, metrics={IC: ic, ANNUALIZED_RETURN: r}
        )
        for i, (d, ic, r) in enumerate(rows)
    ]
    sota = max((n.index for n in nodes if n.decision), default=None)
    return Manifest(
        format_version=2,
        created_at=datetime.now(timezone.utc),
        producer=Producer(trace_ckpt="0", python="3"),
        trace_class="x.Trace",
        nodes=nodes,
        sota_index=sota,
    )


def marked(ax: object, gid: str) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for ln in ax.lines if ln.get_gid() == gid for x, y in zip(*ln.get_data())]


def test_best_accepted_is_starred_per_panel_apart_from_the_sota_ring() -> None:
    # node 1 has the best IC but is rejected; node 2 is the best accepted by IC, node 0 by return; 3 is the SOTA
    m = manifest([(True, 0.02, 0.30), (False, 0.09, 0.10), (True, 0.05, 0.05), (True, 0.01, 0.20)])
    fig = plot_manifest(m)
    ax_ic, ax_arr = fig.axes[:2]
    assert marked(ax_ic, "sota") == [(3.0, 0.01)] and marked(ax_arr, "sota") == [(3.0, 0.20)]
    assert marked(ax_ic, "best") == [(2.0, 0.05)]
    assert marked(ax_arr, "best") == [(0.0, 0.30)]
    labels = [t.get_text() for t in ax_ic.get_legend().get_texts()]
    assert "SOTA (last accepted)" in labels and "best accepted (panel's metric)" in labels

    # no accepted node: no star (and no ring)
    fig = plot_manifest(manifest([(False, 0.02, 0.3), (None, 0.05, 0.1)]))
    assert all(marked(ax, "best") == marked(ax, "sota") == [] for ax in fig.axes[:2])
