"""``trace-ckpt inspect`` and ``verify``: what one checkpoint holds, from its manifest (nothing is unpickled,
rdagent is never imported)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from trace_ckpt.cli.app import app
from trace_ckpt.cli.options import Ckpt, Json, RequireSignature
from trace_ckpt.cli.render import err, human_size, metric, out, table
from trace_ckpt.errors import CorruptCheckpointError, UnsupportedVersionError, UntrustedContentError
from trace_ckpt.format.manifest import Manifest
from trace_ckpt.quant import ANNUALIZED_RETURN as KEY_ARR
from trace_ckpt.quant import IC as KEY_IC


@app.command()
def inspect(
    ckpt: Ckpt,
    as_json: Json = False,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            metavar="PATH",
            help="also draw the trace (IC and annualized return per node, phases, decisions, DAG) to this PNG; needs trace-ckpt[plot]",
        ),
    ] = None,
) -> None:
    """Show what a checkpoint holds, from its manifest only (nothing is unpickled)."""
    from trace_ckpt.ckpt import read_manifest

    if plot is not None:
        from trace_ckpt.plot import require_matplotlib

        require_matplotlib()  # before any output: a missing extra is a one-line error, not half a report
    m = read_manifest(ckpt)
    if as_json:
        sys.stdout.write(m.model_dump_json(indent=None) + "\n")
    else:
        _print_manifest(ckpt, m)
    if plot is not None:
        from trace_ckpt.plot import write_plot

        write_plot(m, plot, title=str(ckpt).rstrip("/").rsplit("/", 1)[-1])  # CKPT may be a URL
        points = sum(1 for n in m.nodes if KEY_IC in n.metrics)
        (err if as_json else out).print(
            f"wrote {plot}: {points} of {len(m.nodes)} nodes have an IC"
        )  # stdout stays JSON


def _print_manifest(ckpt: str, m: Manifest) -> None:
    p, c, ws = m.producer, m.counts, m.workspace_stats
    out.print(f"{ckpt}  format v{m.format_version}, saved {m.created_at:%Y-%m-%d %H:%M:%S} UTC")
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
    ratio = (m.sizes.raw / m.sizes.stored) if m.sizes.stored else 0
    out.print(
        f"size: {human_size(m.sizes.stored)} stored, {human_size(m.sizes.raw)} raw ({ratio:.1f}x); workspaces: "
        f"{ws.workspaces} folders, {ws.files} files ({ws.unique_files} distinct), {ws.symlinks} links, "
        f"{ws.skipped} skipped"
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
    headers = ("#", "loop", "parent", "kind", "decision", "IC", "ann. return", "hypothesis")
    rows = []
    for n in m.nodes:
        decision = "accepted" if n.decision else ("rejected" if n.decision is False else "")
        rows.append(
            (
                str(n.index),
                "" if n.loop_id is None else str(n.loop_id),
                ",".join(map(str, n.parents)) or "root",
                n.action or n.kind,
                decision + (" *SOTA*" if n.index == m.sota_index else ""),
                metric(n.metrics.get(KEY_IC)),
                metric(n.metrics.get(KEY_ARR)),
                n.hypothesis or "",
            )
        )
    sys.stdout.write(table(headers, rows, right={0, 1, 2, 5, 6}, flexible_last=True) + "\n")


@app.command()
def verify(ckpt: Ckpt, require_signature: RequireSignature = False) -> None:
    """Check every section's checksum and the signature, and say who signed; exit 0 only when all hold."""
    from trace_ckpt.ckpt import verify_checkpoint

    report = verify_checkpoint(ckpt)
    m, st = report.manifest, report.status
    if report.bad_sections:
        raise CorruptCheckpointError(
            f"{ckpt}: {len(report.bad_sections)} of {len(m.sections)} sections fail their checksum "
            f"({', '.join(report.bad_sections[:5])})"
        )
    if st.state == "bad":
        raise UntrustedContentError(f"{ckpt}: {st.describe()}")
    if require_signature and st.state != "ok":
        what = {
            "unsigned": "unsigned",
            "unchecked": f"signed (key id {st.key_id}) but no key is configured to check it",
            "unknown-key": f"signed by an unknown key ({st.key_id}): add its public key to TRACE_CKPT_TRUSTED_KEYS "
            "if you trust it",
        }.get(st.state, st.describe())
        error = UnsupportedVersionError if st.state == "unsupported" else UntrustedContentError
        raise error(f"{ckpt}: {what}, and --require-signature was given")
    out.print(f"ok: {ckpt}: {len(m.sections)} sections, every checksum holds; {st.describe()}")
