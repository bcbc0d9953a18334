"""``trace-ckpt inspect`` and ``verify``: what one checkpoint holds, from its manifest (nothing is unpickled,
rdagent is never imported)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from trace_ckpt import quant
from trace_ckpt.cli import render
from trace_ckpt.cli.app import app
from trace_ckpt.cli.options import Ckpt, Json, Quiet, RequireSignature, Verbose
from trace_ckpt.cli.render import (
    emit_json,
    err,
    human_size,
    metric,
    out,
    say,
    shown_time,
    table,
    terminal_width,
    timestamp,
)
from trace_ckpt.errors import CorruptCheckpointError, UnsupportedVersionError, UntrustedContentError
from trace_ckpt.format.manifest import Manifest, NodeSummary
from trace_ckpt.format.records import to_json


def _plot_path(value: Path | None) -> Path | None:
    from trace_ckpt.plot import PLOT_FORMATS

    if value is not None and value.suffix.lower().lstrip(".") not in PLOT_FORMATS:
        allowed = ", ".join("." + f for f in PLOT_FORMATS)
        raise typer.BadParameter(f"{value}: the plot is written as the extension says: end it in {allowed}")
    return value


def node_phase(n: NodeSummary) -> str:
    """A node's phase, ``factor`` or ``model`` (its fin_quant action, else its experiment kind)."""
    return quant.phase(n.action, n.kind)


def trace_summary(m: Manifest, metric_name: str = quant.IC) -> dict[str, Any]:
    """RD-Agent's SOTA (the last accepted node), the SOTA of each sub-trace, the best accepted node by
    ``metric_name``, and the SOTA factor set a model phase trains on (every sub-trace's)."""
    by_root = quant.sota_by_subtrace([n.parents for n in m.nodes], [quant.node_accepted(n) for n in m.nodes])
    sota = quant.sota_index(m.nodes)
    best = quant.best_accepted(m.nodes, metric_name)
    return {
        "sota": sota,
        "sota_by_subtrace": {str(root): i for root, i in sorted(by_root.items())},
        "best_accepted": {"metric": metric_name, "index": best},
        "sota_factors": quant.sota_factor_names(m.nodes),
        "sota_metrics": m.nodes[sota].metrics if sota is not None else {},
        "best_metrics": m.nodes[best].metrics if best is not None else {},
    }


def _node_json(n: NodeSummary) -> dict[str, Any]:
    doc = to_json(n)
    doc["action"] = node_phase(n)  # filled for every node: fin_factor/fin_model hypotheses carry none
    names = doc.pop("factors")
    doc["factors"], doc["models"] = (names, []) if n.kind != "model" else ([], names)
    return doc


def manifest_json(m: Manifest, size: int | None = None) -> dict[str, Any]:
    """The manifest as ``inspect --json`` prints it: every key of the manifest, ``created_at`` in the one
    timestamp form, each node's ``action`` filled and model names under ``models``, plus ``summary``."""
    doc = to_json(m)
    doc["created_at"] = timestamp(m.created_at)
    doc["nodes"] = [_node_json(n) for n in m.nodes]
    doc["summary"] = {"file_size": size, **trace_summary(m)}
    return doc


@app.command()
def inspect(
    ckpt: Ckpt,
    as_json: Json = False,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            metavar="PATH",
            callback=_plot_path,
            help="also draw the trace (IC and annualized return per node, phases, decisions, DAG) to PATH, "
            "as its extension says (.png, .svg, .pdf); needs trace-ckpt[plot]",
        ),
    ] = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Show what a checkpoint holds, from its manifest only (nothing is unpickled)."""
    from trace_ckpt.ckpt import read_manifest
    from trace_ckpt.storage import size_of

    if plot is not None:
        from trace_ckpt.plot import require_matplotlib
        from trace_ckpt.storage import check_output

        require_matplotlib()  # before any output: a missing extra is a one-line error, not half a report
        check_output(plot, overwrite=True)  # a plot is a view: replaced like the table it draws
    m = read_manifest(ckpt)
    size = size_of(ckpt)
    if as_json:
        emit_json(manifest_json(m, size))
    else:
        _print_manifest(ckpt, m, size)
    if plot is not None:
        from trace_ckpt.plot import write_plot

        write_plot(m, plot, title=str(ckpt).rstrip("/").rsplit("/", 1)[-1])  # CKPT may be a URL
        points = sum(1 for n in m.nodes if quant.IC in n.metrics)
        text = f"wrote {plot}: {points} of {len(m.nodes)} nodes have an IC"
        if as_json and render.state.verbosity > 0:
            err.print(text)  # stdout stays JSON
        elif not as_json:
            say(text)


def size_line(size: int, m: Manifest) -> str:
    """The size of a checkpoint as save and inspect both say it: the file, then what its sections hold raw."""
    ratio = (m.sizes.raw / m.sizes.stored) if m.sizes.stored else 0
    return f"{human_size(size)} file, {human_size(m.sizes.raw)} raw ({ratio:.1f}x)"


def _metrics_text(metrics: dict[str, float]) -> str:
    shown = [f"{quant.METRIC_LABELS[k]} {metrics[k]:.4f}" for k in quant.KEY_METRICS if k in metrics]
    return ", ".join(shown) or "no metrics"


def _node_ref(m: Manifest, i: int) -> str:
    n = m.nodes[i]
    return f"node {i}" + (f" (loop {n.loop_id})" if n.loop_id is not None else "")


def _print_summary(m: Manifest) -> None:
    s = trace_summary(m)
    if s["sota"] is None:
        out.print("SOTA: none (no accepted node)")
        return
    out.print(f"SOTA (RD-Agent's: the last accepted): {_node_ref(m, s['sota'])}: {_metrics_text(s['sota_metrics'])}")
    if len(s["sota_by_subtrace"]) > 1:
        parts = [f"root {root}: {_node_ref(m, i)}" for root, i in s["sota_by_subtrace"].items()]
        out.print(f"SOTA of each sub-trace: {'; '.join(parts)}")
    best = s["best_accepted"]["index"]
    if best is not None:
        out.print(f"best accepted by IC: {_node_ref(m, best)}: {_metrics_text(s['best_metrics'])}")
    names = s["sota_factors"]
    out.print(f"SOTA factors (what a model phase trains on): {len(names)}" + (f": {', '.join(names)}" if names else ""))


# metric columns of the node table, in the order they are given up when the terminal is narrow (last first)
_COLUMNS = (
    quant.IC,
    quant.RANK_IC,
    quant.ANNUALIZED_RETURN,
    quant.ICIR,
    quant.INFORMATION_RATIO,
    quant.MAX_DRAWDOWN,
    quant.RANK_ICIR,
)
_MIN_LAST = 24  # room the factor names and hypothesis keep before metric columns are given up


def _node_table(m: Manifest) -> str:
    sota, best = m.sota_index, quant.best_accepted(m.nodes, quant.IC)
    present = [k for k in _COLUMNS if any(k in n.metrics for n in m.nodes)] or [quant.IC]
    base = ("#", "loop", "parent", "phase", "decision")
    rows = []
    for n in m.nodes:
        decision = "accepted" if n.decision else ("rejected" if n.decision is False else "")
        marks = [w for w, hit in (("SOTA", n.index == sota), ("best", n.index == best)) if hit]
        names = ", ".join(n.factors)
        what = f"{names}: {n.hypothesis or ''}" if names else (n.hypothesis or "")
        rows.append(
            (
                str(n.index),
                "" if n.loop_id is None else str(n.loop_id),
                ",".join(map(str, n.parents)) or "root",
                node_phase(n),
                decision + (f" *{'*'.join(marks)}*" if marks else ""),
                *(metric(n.metrics.get(k)) for k in present),
                what.strip(),
            )
        )
    width = terminal_width()
    keep = len(present)
    while keep > 1:  # give up the least read metric columns until the names and hypothesis have room
        cols = [*base, *(quant.METRIC_LABELS[k] for k in present[:keep])]
        used = sum(max([len(h), *(len(r[i]) for r in rows)]) + 2 for i, h in enumerate(cols))
        if used + _MIN_LAST <= width:
            break
        keep -= 1
    headers = (*base, *(quant.METRIC_LABELS[k] for k in present[:keep]), "factors or model: hypothesis")
    cut = len(base) + keep
    shown = [(*r[:cut], r[-1]) for r in rows]
    text = table(headers, shown, right={0, 1, 2, *range(len(base), cut)}, flexible_last=True)
    if keep < len(present):
        hidden = ", ".join(quant.METRIC_LABELS[k] for k in present[keep:])
        text += f"\n({hidden} left out for the terminal width: widen it, or use --json)"
    return text


def _print_manifest(ckpt: str, m: Manifest, size: int) -> None:
    p, c, ws = m.producer, m.counts, m.workspace_stats
    out.print(f"{ckpt}  format v{m.format_version}, saved {shown_time(timestamp(m.created_at))} UTC")
    out.print(f"producer: trace-ckpt {p.trace_ckpt}, rdagent {p.rdagent}, python {p.python}, pandas {p.pandas}")
    out.print(
        f"trace: {m.trace_class}"
        + (f"  scenario: {m.scenario_class}" if m.scenario_class else "")
        + (f"  signed (key id {m.signature.key_id})" if m.signature else "  unsigned")
    )
    out.print(
        f"nodes: {c.hist} ({c.accepted} accepted, {c.rejected} rejected; {c.factor_experiments} factor, "
        f"{c.model_experiments} model; {c.roots} root{'s' if c.roots != 1 else ''})"
    )
    out.print(
        f"size: {size_line(size, m)}; workspaces: {ws.workspaces} folders, {ws.files} files "
        f"({ws.unique_files} distinct, {human_size(ws.file_bytes)}), {ws.symlinks} links, {ws.skipped} skipped"
    )
    source = m.metadata.get("source") if isinstance(m.metadata, dict) else None
    if isinstance(source, dict):
        out.print(f"source: {source.get('path')} (loop {source.get('loop')}, step {source.get('step_name')})")
    plan = m.metadata.get("plan") if isinstance(m.metadata, dict) else None
    if isinstance(plan, dict) and plan.get("features") is not None:
        out.print(
            f"base features: {len(plan['features'])}"
            + (f", feature code files: {len(plan['feature_codes'])}" if plan.get("feature_codes") else "")
        )
    _print_summary(m)
    sys.stdout.write(_node_table(m) + "\n")


@app.command()
def verify(
    ckpt: Ckpt,
    require_signature: RequireSignature = False,
    as_json: Json = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Check every section's checksum and the signature, and say who signed; exit 0 only when all hold."""
    from trace_ckpt.ckpt import verify_checkpoint

    report = verify_checkpoint(ckpt)
    m, st = report.manifest, report.status
    problem: Exception | None = None
    if report.bad_sections:
        problem = CorruptCheckpointError(
            f"{ckpt}: {len(report.bad_sections)} of {len(m.sections)} sections fail their checksum "
            f"({', '.join(report.bad_sections[:5])})"
        )
    elif st.state == "bad":
        problem = UntrustedContentError(f"{ckpt}: {st.describe()}")
    elif require_signature and st.state != "ok":
        what = {
            "unsigned": "unsigned",
            "unchecked": f"signed (key id {st.key_id}) but no key is configured to check it",
            "unknown-key": f"signed by an unknown key ({st.key_id}): add its public key to TRACE_CKPT_TRUSTED_KEYS "
            "if you trust it",
        }.get(st.state, st.describe())
        error = UnsupportedVersionError if st.state == "unsupported" else UntrustedContentError
        problem = error(f"{ckpt}: {what}, and --require-signature was given")
    if as_json:
        emit_json(
            {
                "path": ckpt,
                "ok": problem is None,
                "sections": len(m.sections),
                "bad_sections": report.bad_sections,
                "signature": {"state": st.state, "key_id": st.key_id, "text": st.describe()},
                "error": None if problem is None else str(problem),
            }
        )
    if problem is not None:
        raise problem
    if not as_json:
        say(f"ok: {ckpt}: {len(m.sections)} sections, every checksum holds; {st.describe()}")
