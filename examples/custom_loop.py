"""restore_trace inside a hand-written loop: seed a model experiment with the SOTA factors of a
saved factor run, record what happened, and save both phases in one new checkpoint.

    python examples/custom_loop.py run1.tckpt run2.tckpt [--workspace-root ws/] [--allow-module my_pkg]
    python examples/custom_loop.py demo-out/run1.tckpt run2.tckpt --allow-module examples   # after `make demo`

Your own runner goes where the comment says; this script records a placeholder feedback so it runs
anywhere (no LLM, no Qlib needed). Restored and new workspaces go to --workspace-root (default: RD-Agent's
WORKSPACE_PATH); a bad input ends in one line and trace-ckpt's exit code (docs/cli.md).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the demo's checkpoints hold examples.offline classes

from trace_ckpt import read_manifest, restore_trace, save_trace
from trace_ckpt.errors import CheckpointError
from trace_ckpt.rdagent.logs import rdagent_logs_off


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--workspace-root", type=Path, default=None)
    ap.add_argument("--allow-module", action="append", default=[])
    args = ap.parse_args()
    if args.workspace_root is not None:  # the new experiment's workspace goes there too
        os.environ["WORKSPACE_PATH"] = str(args.workspace_root.absolute())
    try:
        with rdagent_logs_off():  # RD-Agent's template log would land in ./log/<time>/
            run(args)
    except CheckpointError as e:
        print(f"custom_loop: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)


def run(args: argparse.Namespace) -> None:
    """Restore, add one model experiment on the SOTA factors, save both phases."""
    # rdagent is imported after the command line is read: its settings come from the environment
    from rdagent.components.coder.model_coder.model import ModelTask
    from rdagent.core.proposal import Hypothesis, HypothesisFeedback
    from rdagent.scenarios.qlib.experiment.model_experiment import QlibModelExperiment

    trace = restore_trace(args.checkpoint, workspace_root=args.workspace_root, allow_modules=args.allow_module)
    sota = [exp for exp, feedback in trace.hist if feedback.decision]  # what RD-Agent's model proposal takes
    print(f"restored {len(trace.hist)} nodes; {len(sota)} accepted experiments become based_experiments")
    for exp in sota:
        ic = exp.result.get("IC") if exp.result is not None else None
        for task in exp.sub_tasks:
            print(f"  SOTA factor {getattr(task, 'factor_name', task.name)}: IC {'n/a' if ic is None else f'{ic:.4f}'}")

    hypothesis = Hypothesis(
        "A small GRU over the SOTA factors beats the LightGBM baseline",
        "factors carry temporal structure",
        "temporal",
        "factors accepted",
        "GRU fits sequences",
        "sequence models",
    )
    task = ModelTask(
        "GRU_small",
        "two-layer GRU",
        "GRU(hidden=32) -> Linear",
        hyperparameters={"hidden": "32"},
        training_hyperparameters={"n_epochs": "5"},
        model_type="TimeSeries",
    )
    exp = QlibModelExperiment([task], hypothesis=hypothesis)
    exp.based_experiments = sota
    # ... your coder and runner go here: exp = runner.develop(coder.develop(exp)) ...
    feedback = HypothesisFeedback(reason="not run: example loop", decision=False, observations="placeholder")

    next_loop_id = max(trace.idx2loop_id.values(), default=-1) + 1  # never reuse a restored loop id
    trace.sync_dag_parent_and_hist((exp, feedback), next_loop_id)
    save_trace(trace, args.out, allow_modules=args.allow_module)  # the same classes the restore allowed
    m = read_manifest(args.out)
    print(
        f"saved {args.out}: {m.counts.hist} nodes ({m.counts.factor_experiments} factor, "
        f"{m.counts.model_experiments} model); new node has loop id {m.nodes[-1].loop_id}"
    )


if __name__ == "__main__":
    main()
