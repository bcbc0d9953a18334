"""A picture of a checkpoint's trace, drawn from its manifest alone.

    from trace_ckpt import read_manifest
    from trace_ckpt.plot import plot_manifest, write_plot
    fig = plot_manifest(read_manifest("run1.tckpt"))        # a matplotlib Figure, to show or tweak
    write_plot(read_manifest("run1.tckpt"), "trace.png")    # or: trace-ckpt inspect run1.tckpt --plot trace.png

Top panel: each node's IC in ``trace.hist`` order; bottom panel: its annualized excess return (with
cost). Colour is the phase (factor / model / other), a filled marker is an accepted node, a hollow one
a rejected node, a ring marks RD-Agent's SOTA node (the last accepted one) and a star, on each panel, the
best accepted node by that panel's metric (often another node); grey lines are the DAG edges, arcs where a
node branches off an earlier node than the one before it. Nothing is unpickled and rdagent is never imported.
matplotlib is an optional extra (``pip install 'trace-ckpt[plot]'``), imported on first use; figures
are drawn on the Agg canvas directly, so the process's pyplot backend is left alone.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trace_ckpt._os import current_umask
from trace_ckpt.errors import MissingExtraError, SaveError
from trace_ckpt.format.manifest import Manifest, NodeSummary
from trace_ckpt.quant import ANNUALIZED_RETURN as KEY_ARR
from trace_ckpt.quant import IC as KEY_IC
from trace_ckpt.quant import METRIC_LABELS, best_accepted, node_accepted
from trace_ckpt.quant import phase as node_phase

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PHASE_COLOURS = {"factor": "tab:blue", "model": "tab:orange", "other": "tab:gray"}
INSTALL_HINT = "pip install 'trace-ckpt[plot]'"
PLOTTABLE = 1e12  # larger metrics (and NaN, inf) are left out of the plot, like a missing metric
# more DAG edges than MAX_EDGE_ARTISTS (a crafted DAG: 100 nodes naming every earlier one, 4,950 edges, drew for
# 10 s, one artist each) are drawn as one collection of straight lines; more than MAX_EDGES (1,200 such nodes,
# 720,000 edges in a 30 KB file, took 27 s even so) are not drawn, the panel says how many there are
MAX_EDGE_ARTISTS = 2000
MAX_EDGES = 50_000
GID_POINTS = "points"  # gid of every marker collection: "points:<metric>:<phase>:<accepted|rejected>"


def require_matplotlib() -> None:
    """Fail with a one-line MissingExtraError when matplotlib is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MissingExtraError(
            f"drawing the trace (inspect --plot) needs matplotlib, which is not installed: {INSTALL_HINT}"
        ) from None


def phase(node: NodeSummary) -> str:
    """The node's phase for colouring: the hypothesis' action when it has one, else the experiment kind."""
    return node_phase(node.action, node.kind)


def plot_manifest(manifest: Manifest, *, title: str | None = None) -> Figure:
    """Draw the trace of ``manifest`` (IC and annualized return per node) on a new Agg Figure."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    nodes = manifest.nodes
    width = min(24.0, max(8.0, 0.12 * len(nodes) + 6))
    fig = Figure(figsize=(width, 7.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax_ic, ax_arr = fig.subplots(2, 1, sharex=True)
    for ax, key, label in ((ax_ic, KEY_IC, METRIC_LABELS[KEY_IC]), (ax_arr, KEY_ARR, "annualized return (with cost)")):
        _panel(ax, manifest, key)
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.margins(y=0.12)  # room for the SOTA ring
    ax_arr.set_xlabel("node (order in trace.hist)")
    if nodes:
        ax_arr.set_xlim(-0.5, len(nodes) - 0.5)

    c = manifest.counts
    missing = sum(1 for n in nodes if not abs(n.metrics.get(KEY_IC, math.inf)) <= PLOTTABLE)
    fig.suptitle(
        (title or "trace")
        + f" — {c.hist} nodes, {c.accepted} accepted"
        + (f"; {missing} without IC not shown" if missing else "")
    )
    phases = sorted({phase(n) for n in nodes}, key=list(PHASE_COLOURS).index)
    handles = [Line2D([], [], ls="", marker="o", color=PHASE_COLOURS[p], label=p) for p in phases]
    handles += [
        Line2D([], [], ls="", marker="o", color="black", label="accepted"),
        Line2D([], [], ls="", marker="o", markerfacecolor="none", color="black", label="rejected"),
        Line2D(
            [],
            [],
            ls="",
            marker="o",
            markersize=13,
            markerfacecolor="none",
            color="crimson",
            label="SOTA (last accepted)",
        ),
        Line2D([], [], ls="", marker="*", markersize=13, color="goldenrod", label="best accepted (panel's metric)"),
        Line2D([], [], color="0.6", label="DAG edge"),
    ]
    ax_ic.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def _panel(ax: Any, manifest: Manifest, key: str) -> None:
    from matplotlib.patches import FancyArrowPatch

    # values a plot can place: a finite metric of ordinary size (1e308 broke matplotlib's ticks)
    y = {n.index: v for n in manifest.nodes if abs(v := n.metrics.get(key, math.inf)) <= PLOTTABLE}
    if not y:
        ax.text(0.5, 0.5, f"no node has {key}", transform=ax.transAxes, ha="center", va="center", color="0.4")
        return
    # DAG edges first, under the markers
    edges = [(p, n.index) for n in manifest.nodes if n.index in y for p in n.parents if p in y]
    if len(edges) > MAX_EDGES:
        ax.text(0.01, 0.98, f"{len(edges)} DAG edges: too many to draw", transform=ax.transAxes, va="top", color="0.4")
        edges = []
    elif len(edges) > MAX_EDGE_ARTISTS:
        from matplotlib.collections import LineCollection

        segments = [((p, y[p]), (i, y[i])) for p, i in edges]
        ax.add_collection(LineCollection(segments, colors="0.6", linewidths=0.5, zorder=1, gid="edges"), autolim=False)
        edges = []
    for p, index in edges:
        if p == index - 1:
            ax.plot([p, index], [y[p], y[index]], color="0.6", lw=0.8, zorder=1, gid="edge")
        else:  # a branch off an earlier node: an arc, so it is not hidden behind the chain
            # add_artist, not add_patch: the arc must not stretch the axis limits
            ax.add_artist(
                FancyArrowPatch(
                    (p, y[p]),
                    (index, y[index]),
                    connectionstyle="arc3,rad=-0.25",
                    arrowstyle="-",
                    color="0.45",
                    lw=0.9,
                    ls="--",
                    zorder=1,
                    gid="branch",
                )
            )
    for ph, colour in PHASE_COLOURS.items():
        for accepted in (True, False):
            xs = [n.index for n in manifest.nodes if n.index in y and phase(n) == ph and node_accepted(n) is accepted]
            if not xs:
                continue
            ax.scatter(
                xs,
                [y[x] for x in xs],
                s=36,
                zorder=3,
                linewidths=1.2,
                edgecolors=colour,
                facecolors=colour if accepted else "none",
                gid=f"{GID_POINTS}:{key}:{ph}:{'accepted' if accepted else 'rejected'}",
            )
    sota = manifest.sota_index
    if sota is not None and sota in y:
        ax.plot(
            [sota],
            [y[sota]],
            ls="",
            marker="o",
            markersize=13,
            markerfacecolor="none",
            markeredgecolor="crimson",
            markeredgewidth=1.5,
            zorder=4,
            gid="sota",
        )
    best = best_accepted([n for n in manifest.nodes if n.index in y], key)
    if best is not None:
        ax.plot([best], [y[best]], ls="", marker="*", markersize=13, color="goldenrod", zorder=5, gid="best")


PLOT_FORMATS: tuple[str, ...] = ("png", "svg", "pdf")  # what --plot writes, named by the extension


def write_plot(manifest: Manifest, path: str | os.PathLike[str], *, title: str | None = None) -> Path:
    """Draw the trace and write it at ``path`` in the format its extension names (``PLOT_FORMATS``: png, svg,
    pdf; a SaveError for any other), atomically (temp file beside it, then rename)."""
    target = Path(path)
    fmt = target.suffix.lower().lstrip(".")
    if fmt not in PLOT_FORMATS:
        raise SaveError(f"cannot write the plot to {target}: end it in {', '.join('.' + f for f in PLOT_FORMATS)}")
    if not target.parent.is_dir():
        raise SaveError(f"cannot write the plot to {target}: folder {target.parent} does not exist")
    fig = plot_manifest(manifest, title=title)
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tckpt-plot-", suffix=f".{fmt}.part")
    except OSError as e:
        raise SaveError(f"cannot write the plot to {target}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format=fmt, dpi=100)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; a picture is for sharing
        os.replace(tmp, target)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise SaveError(f"cannot write the plot to {target}: {e.strerror or e}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
