"""``trace-ckpt resume``: run RD-Agent on top of a saved trace (a thin layer over ``trace_ckpt.rdagent.resume``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trace_ckpt.cli.app import app
from trace_ckpt.cli.options import AllowModule, Json, Quiet, RequireSignature, Verbose
from trace_ckpt.cli.render import bars, out, say

# --only names a phase as resume and the docs do (model, factor) or as `run` and RD-Agent name the app that runs
# it (fin_model, fin_factor; fin_quant is the mixed loop, as omitting --only): one idea, either spelling
PHASES: dict[str, str | None] = {
    "model": "model",
    "fin_model": "model",
    "factor": "factor",
    "fin_factor": "factor",
    "quant": None,
    "fin_quant": None,
}


def _phase(value: str | None) -> str | None:
    if value is None:
        return None
    if value not in PHASES:
        raise typer.BadParameter(f"{value!r} is none of {', '.join(PHASES)}", param_hint="--only")
    return PHASES[value]


@app.command()
def resume(
    ckpt: Annotated[
        str,
        typer.Argument(
            metavar="CKPT",
            help="checkpoint (file or URL) of an earlier run, or an autosave folder (its latest checkpoint)",
        ),
    ],
    only: Annotated[
        str | None,
        typer.Option(
            "--only",
            metavar="PHASE",
            callback=_phase,
            help="model (or fin_model): evolve only models on the SOTA factors; factor (fin_factor): continue factor "
            "evolution; omit (or quant, fin_quant): the mixed quant loop",
        ),
    ] = None,
    loop_n: Annotated[int | None, typer.Option("--loop-n", min=1, help="number of new loops to run")] = None,
    step_n: Annotated[int | None, typer.Option("--step-n", min=1, help="number of steps to run")] = None,
    all_duration: Annotated[
        str | None, typer.Option("--all-duration", help="time budget, as RD-Agent takes it (e.g. 2h)")
    ] = None,
    base_features: Annotated[
        Path | None,
        typer.Option(
            "--base-features",
            help="folder with base_factors.json and/or *.py (RD-Agent's format); default: the plan in the checkpoint",
        ),
    ] = None,
    workspace_root: Annotated[
        Path | None,
        typer.Option(
            "--workspace-root", help="where restored and new workspaces go (default: RD-Agent's WORKSPACE_PATH)"
        ),
    ] = None,
    log_dir: Annotated[
        Path | None, typer.Option("--log-dir", help="the new run's log folder (default: RD-Agent's LOG_TRACE_PATH)")
    ] = None,
    allow_module: AllowModule = None,
    require_signature: RequireSignature = False,
    trust: Annotated[
        bool,
        typer.Option(
            "--trust",
            help="run a checkpoint no configured key has verified: resume runs its factor code, feature code and workspace files (docs/security.md)",
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="print what would run (nodes restored, SOTA factors, base features, new loop ids) and whether this "
            "machine is ready, without starting RD-Agent; exit 15 when it is not",
        ),
    ] = False,
    as_json: Json = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Run RD-Agent on top of a saved trace: model evolution on the SOTA factors, or more factor loops."""
    from trace_ckpt.ckpt import read_manifest
    from trace_ckpt.errors import NotReadyError
    from trace_ckpt.rdagent.resume import plan_resume
    from trace_ckpt.rdagent.resume import resume as run_resume
    from trace_ckpt.rdagent.resume_plan import resolve_checkpoint

    ckpt = resolve_checkpoint(ckpt)  # an autosave folder: its latest checkpoint

    args = {
        "only": only,
        "loop_n": loop_n,
        "step_n": step_n,
        "all_duration": all_duration,
        "base_features": base_features,
        "workspace_root": workspace_root,
        "log_dir": log_dir,
        "trust": trust or None,
    }
    if dry_run:
        plan = plan_resume(ckpt, require_signature=require_signature or None, **args)
        out.print(plan.to_json() if as_json else "\n".join(["dry run: nothing started", *plan.lines()]))
        if plan.not_ready:
            raise NotReadyError(plan.not_ready)
        return
    ws = read_manifest(ckpt).workspace_stats
    with bars.bar("restoring workspace files", ws.file_bytes, ws.files - ws.skipped) as progress:
        report = run_resume(
            ckpt,
            allow_modules=allow_module or (),
            require_signature=require_signature or None,
            progress=progress,
            **args,
        )
    if as_json:
        out.print(report.to_json())
        return
    say(
        f"resumed {report.checkpoint}: {report.restored_nodes} restored nodes ({report.sota_factor_experiments} SOTA "
        f"factor experiments), {report.new_nodes} new nodes from loop id {report.first_loop_id}; "
        f"{len(report.base_features)} base features; log folder {report.log_dir}"
    )
