"""``trace-ckpt run APP [rdagent args] --autosave DIR|URL``: RD-Agent's app with a checkpoint after every loop.

The RD-Agent arguments are passed through and read by ``_rdagent_args``: the options of RD-Agent's own
``rdagent fin_factor|fin_model|fin_quant`` (rdagent/app/cli.py), each also in the underscore spelling of
``python -m rdagent.app.qlib_rd_loop.factor --loop_n 5``, plus ``--base-features-path`` of the apps' ``main``.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from trace_ckpt.cli.app import app
from trace_ckpt.cli.options import AllowModule, Json, Quiet, Verbose
from trace_ckpt.cli.render import emit_json, err, say
from trace_ckpt.quant import IC, metric_key

_rdagent_cli = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@_rdagent_cli.command()
def _rdagent_args(
    path: Annotated[str | None, typer.Option("--path")] = None,
    step_n: Annotated[int | None, typer.Option("--step-n", "--step_n")] = None,
    loop_n: Annotated[int | None, typer.Option("--loop-n", "--loop_n")] = None,
    all_duration: Annotated[str | None, typer.Option("--all-duration", "--all_duration")] = None,
    checkout: Annotated[bool, typer.Option("--checkout/--no-checkout", "-c/-C")] = True,
    base_features_path: Annotated[
        str | None, typer.Option("--base-features", "--base-features-path", "--base_features_path")
    ] = None,
) -> None:
    """Only parsed, never invoked: the declaration is the parser."""


def parse_rdagent_args(args: list[str], parent: typer.Context | None = None) -> dict:
    """The keyword arguments of the app's ``main`` from RD-Agent-style arguments (a usage error otherwise)."""
    command = typer.main.get_command(_rdagent_cli)
    return dict(command.make_context("run", list(args), parent=parent).params)


def _metric(name: str) -> str:
    """``--metric``: a key or label of trace_ckpt.quant, as its key (a usage error otherwise)."""
    try:
        return metric_key(name)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


class App(str, Enum):
    fin_factor = "fin_factor"
    fin_model = "fin_model"
    fin_quant = "fin_quant"


_APP_HELP = (
    "fin_factor, fin_model or fin_quant; then RD-Agent's own arguments: --loop-n N, --step-n N, "
    "--all-duration D, --path SESSION, --checkout/--no-checkout, --base-features DIR (RD-Agent's --base-features-path)"
)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run(
    ctx: typer.Context,
    app_name: Annotated[App, typer.Argument(metavar="APP", help=_APP_HELP)],
    autosave: Annotated[
        str,
        typer.Option(
            "--autosave",
            metavar="DIR|URL",
            help="folder or URL prefix for the checkpoints, loop-NNNN.tckpt (s3://bucket/runs/r1/; a folder is "
            "created if missing)",
        ),
    ],
    keep: Annotated[
        int, typer.Option("--keep-last", min=1, metavar="N", help="keep the checkpoints of the last N loops")
    ] = 3,
    keep_old: Annotated[
        int | None, typer.Option("--keep", min=1, hidden=True, help="old spelling of --keep-last")
    ] = None,
    keep_best: Annotated[
        int,
        typer.Option(
            "--keep-best", min=0, metavar="N", help="also keep the N checkpoints whose SOTA node has the best --metric"
        ),
    ] = 0,
    metric: Annotated[
        str,
        typer.Option(
            "--metric",
            metavar="NAME",
            callback=_metric,
            help="the metric --keep-best ranks by: IC, ICIR, 'Rank IC', 'Rank ICIR', arr, ir, mdd or a 1day.* key",
        ),
    ] = IC,
    allow_module: AllowModule = None,
    as_json: Json = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Run an RD-Agent app and write a checkpoint after every completed loop (to a folder or a URL), keeping the
    last N and the best N by a metric."""
    from trace_ckpt.rdagent.autosave import run_app

    rdagent_kwargs = parse_rdagent_args(ctx.args, parent=ctx)
    report = run_app(
        app_name.value,
        autosave,
        keep=keep if keep_old is None else keep_old,
        keep_best=keep_best,
        metric=metric,
        allow_modules=allow_module or (),
        **rdagent_kwargs,
    )
    saver = report.saver
    if as_json:
        emit_json(
            {
                "app": report.app,
                "completed_loops": report.completed_loops,
                "saved": [str(p) for p in saver.saved],
                "failed": list(saver.failed),
                "kept": list(report.kept_names),
                "log_dir": report.log_dir,
            }
        )
    else:
        kept = ", ".join(report.kept_names) or "none"
        say(
            f"ran {report.app}: {report.completed_loops} loops completed, {len(saver.saved)} checkpoints written; "
            f"kept in {autosave}: {kept}; log folder {report.log_dir}"
        )
    if saver.failed:
        err.print(
            f"trace-ckpt: warning: the autosave of {len(saver.failed)} loop(s) failed "
            f"({', '.join(map(str, saver.failed))}); the run itself completed"
        )
