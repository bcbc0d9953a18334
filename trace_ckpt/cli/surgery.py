"""``trace-ckpt prune``, ``merge`` and ``diff``: thin layers over ``trace_ckpt.rdagent.surgery``.

``diff`` exits like diff(1): 0 when the checkpoints are equal, 1 when they differ; trouble uses the
typed exit codes (all >= 2) of the table in docs/cli.md.
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from enum import Enum
from typing import Annotated

import typer

from trace_ckpt.cli.app import app
from trace_ckpt.cli.options import AllowModule, Ckpt, Force, Json, Level, OutCkpt, Quiet, RequireSignature, Verbose
from trace_ckpt.cli.render import emit_json, note, say, wrote


class Action(str, Enum):
    factor = "factor"
    model = "model"


def _keep(value: str | None) -> str | None:
    from trace_ckpt.rdagent.surgery import Keep

    if value is None:
        return None
    try:
        return str(Keep.parse(value))
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


@app.command()
def prune(
    ckpt: Ckpt,
    out_path: OutCkpt,
    keep: Annotated[
        str,
        typer.Option(
            "--keep",
            metavar="sota|accepted|last:N",
            callback=_keep,
            help="sota: the last accepted node of each sub-trace; accepted: every accepted node; last:N: the last N nodes",
        ),
    ],
    action: Annotated[Action | None, typer.Option("--action", help="consider only factor or only model nodes")] = None,
    level: Level = None,
    allow_module: AllowModule = None,
    require_signature: RequireSignature = False,
    force: Force = False,
    as_json: Json = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Write a smaller checkpoint holding only the chosen nodes, re-indexed, with their workspaces."""
    from trace_ckpt.rdagent.surgery import prune as api_prune
    from trace_ckpt.storage import check_output

    check_output(out_path, overwrite=force)
    report = api_prune(
        ckpt,
        out_path,
        keep=keep,
        action=action.value if action else None,
        level=level,
        allow_modules=allow_module or (),
        require_signature=require_signature or None,
        overwrite=force,
    )
    wrote(out_path)
    ws = report.manifest.workspace_stats
    if as_json:
        emit_json(
            {
                "path": out_path,
                "source": ckpt,
                "kept": report.kept,
                "dropped": report.dropped,
                "workspaces": ws.workspaces,
                "workspace_files": ws.files,
            }
        )
        return
    say(
        f"pruned {ckpt} into {out_path}: kept {len(report.kept)} of {len(report.kept) + report.dropped} nodes "
        f"(old indices {', '.join(map(str, report.kept))}); {ws.workspaces} workspace folders, {ws.files} files"
    )


@app.command()
def merge(
    paths: Annotated[
        list[str],
        typer.Argument(metavar="A B [C ...] OUT", help="two or more checkpoints, then the checkpoint to write"),
    ],
    level: Level = None,
    allow_module: AllowModule = None,
    require_signature: RequireSignature = False,
    force: Force = False,
    as_json: Json = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Merge checkpoints into one trace, each input a separate sub-trace (root), in the order given."""
    from trace_ckpt.rdagent.surgery import merge as api_merge
    from trace_ckpt.storage import check_output

    if len(paths) < 3:
        raise typer.BadParameter(
            "give at least two checkpoints to merge, then the output", param_hint="A B [C ...] OUT"
        )
    inputs, out_path = paths[:-1], paths[-1]
    check_output(out_path, overwrite=force)
    report = api_merge(
        inputs,
        out_path,
        level=level,
        allow_modules=allow_module or (),
        require_signature=require_signature or None,
        overwrite=force,
    )
    wrote(out_path)
    c = report.manifest.counts
    if as_json:
        emit_json(
            {
                "path": out_path,
                "inputs": inputs,
                "nodes": c.hist,
                "accepted": c.accepted,
                "first_index": report.first_index,
                "duplicates": [asdict(d) for d in report.duplicates],
                "renamed": [asdict(r) for r in report.renamed],
                "notes": report.notes,
            }
        )
        return
    for text in report.notes:
        note(text)
    say(
        f"merged {len(inputs)} checkpoints into {out_path}: {c.hist} nodes ({c.accepted} accepted), "
        f"sub-traces start at nodes {', '.join(map(str, report.first_index))}; {len(report.duplicates)} SOTA factors "
        f"shared (same code), {len(report.renamed)} renamed"
    )
    for d in report.duplicates:
        say(f"  shared: node {d.node} factor {d.name} has the code of node {d.same_as}: stored and counted once")
    for r in report.renamed:
        say(f"  renamed: node {r.node} factor {r.old} -> {r.new} (an earlier input has another {r.old})")


@app.command()
def diff(
    a: Annotated[str, typer.Argument(metavar="A", help="checkpoint file or URL")],
    b: Annotated[str, typer.Argument(metavar="B", help="checkpoint file or URL")],
    as_json: Json = False,
    require_signature: RequireSignature = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Show which nodes, factors and metrics differ (from the manifests; nothing is unpickled). Exit 0 when equal, 1 when not."""
    from trace_ckpt.views.diff import diff as api_diff  # a view: no rdagent, no pandas

    d = api_diff(a, b, require_signature=require_signature or None)
    if as_json:
        emit_json({"equal": d.equal, **asdict(d)})
    else:
        sys.stdout.write("\n".join(d.lines()) + "\n")
    if not d.equal:
        raise typer.Exit(1)
