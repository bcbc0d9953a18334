"""Traces built from RD-Agent's real classes, with real workspace folders on disk, for the tests
and the benchmark. Only the scenario is a small stand-in (the real ones probe Docker/conda)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from rdagent.components.coder.CoSTEER.evaluators import CoSTEERMultiFeedback, CoSTEERSingleFeedback
from rdagent.components.coder.factor_coder.factor import FactorFBWorkspace, FactorTask
from rdagent.core.proposal import Hypothesis, HypothesisFeedback, Trace
from rdagent.core.scenario import Scenario
from rdagent.scenarios.qlib.experiment.factor_experiment import QlibFactorExperiment
from rdagent.scenarios.qlib.proposal.bandit import Metrics
from rdagent.scenarios.qlib.proposal.quant_proposal import QlibQuantHypothesis, QuantTrace

ALLOW = ["tests"]  # the stand-in scenario lives in this package

RESULT_KEYS = [
    "IC",
    "ICIR",
    "Rank IC",
    "Rank ICIR",
    "1day.excess_return_with_cost.annualized_return",
    "1day.excess_return_with_cost.information_ratio",
    "1day.excess_return_with_cost.max_drawdown",
    "1day.excess_return_without_cost.annualized_return",
    "1day.excess_return_without_cost.information_ratio",
    "1day.excess_return_without_cost.max_drawdown",
]

BACKGROUND = "The factor is a characteristic or variable used in quant investment. " * 40


class TinyScenario(Scenario):
    """Stand-in for QlibFactorScenario, whose constructor probes the runtime environment."""

    def __init__(self) -> None:
        super().__init__()
        self._background = BACKGROUND

    @property
    def background(self) -> str:
        return self._background

    def get_scenario_all_desc(self, *args: object, **kwargs: object) -> str:
        return self._background

    @property
    def rich_style_description(self) -> str:
        return "tiny"

    def get_source_data_desc(self, task: object = None) -> str:
        return "daily_pv.h5"

    def get_runtime_environment(self) -> str:
        return "python 3.11, no GPU"


def panel(n_days: int = 30, n_inst: int = 5, seed: int = 0) -> pd.DataFrame:
    """A small synthetic price panel, indexed (datetime, instrument), with Qlib's column names."""
    rng = np.random.default_rng(seed)
    idx = pd.MultiIndex.from_product(
        [pd.date_range("2020-01-01", periods=n_days, freq="B"), [f"SH60{i:04d}" for i in range(n_inst)]],
        names=["datetime", "instrument"],
    )
    close = 10 + rng.standard_normal(len(idx)).cumsum() * 0.1
    return pd.DataFrame(
        {
            "$open": close,
            "$close": close * 1.01,
            "$high": close * 1.02,
            "$low": close * 0.98,
            "$volume": rng.integers(1_000, 9_000, len(idx)).astype(float),
            "$factor": 1.0,
        },
        index=idx,
    )


def data_folder(root: Path) -> Path:
    """A factor data folder holding daily_pv.h5 (linked into workspaces, never copied)."""
    root.mkdir(parents=True, exist_ok=True)
    h5 = root / "daily_pv.h5"
    if not h5.exists():
        panel().to_hdf(h5, key="data")
    return root


def factor_code(i: int) -> str:
    return f"""import pandas as pd

def calculate_factor_{i}():
    df = pd.read_hdf("daily_pv.h5", key="data")
    close = df["$close"].groupby(level="instrument")
    result = close.pct_change({i % 7 + 1}).rename("factor_{i}")
    result.to_frame().to_hdf("result.h5", key="data")

if __name__ == "__main__":
    calculate_factor_{i}()
"""


def result_series(i: int) -> pd.Series:
    rng = np.random.default_rng(1000 + i)
    return pd.Series(rng.normal(0.02, 0.01, len(RESULT_KEYS)), index=RESULT_KEYS, name="0")


def factor_experiment(
    i: int,
    based: list,
    data: Path,
    *,
    action: str | None = None,
    write_outputs: bool = True,
    panel_shape: tuple[int, int] = (30, 5),
    sota_values: list[pd.DataFrame] | None = None,
) -> QlibFactorExperiment:
    """One factor experiment as the factor loop leaves it: coded, run, with files on disk."""
    name = f"factor_{i}"
    task = FactorTask(
        name,
        f"Momentum over {i % 7 + 1} days",
        f"close_t / close_(t-{i % 7 + 1}) - 1",
        variables={"close_t": "close price"},
    )
    hyp_args = (
        f"Momentum of {i % 7 + 1} days predicts returns (node {i})\nsecond line",
        "reason " * 20,
        "concise reason",
        "concise observation",
        "concise justification",
        "concise knowledge",
    )
    hypothesis = QlibQuantHypothesis(*hyp_args, action=action) if action else Hypothesis(*hyp_args)
    exp = QlibFactorExperiment(sub_tasks=[task], based_experiments=list(based), hypothesis=hypothesis)
    ws = FactorFBWorkspace(target_task=task)
    ws.inject_files(**{"factor.py": factor_code(i)})
    FactorFBWorkspace.link_all_files_in_folder_to_workspace(data, ws.workspace_path)
    exp.sub_workspace_list = [ws]
    exp.prop_dev_feedback = CoSTEERMultiFeedback(
        [CoSTEERSingleFeedback(execution="ran", return_checking="ok", code="fine", final_decision=True)]
    )
    exp.base_features = {"RESI5": "Resi($close, 5)/$close", "WVMA5": "Std(Abs($close/Ref($close, 1)-1)*$volume, 5)"}
    exp.stdout = f"training log of node {i}\n" * 5
    exp.result = result_series(i)
    ew = exp.experiment_workspace
    ew.prepare()
    if write_outputs:
        close = panel(*panel_shape, seed=i)["$close"]
        values = close.groupby(level="instrument").pct_change(i % 7 + 1).rename(name).to_frame()
        values.to_hdf(ws.workspace_path / "result.h5", key="data")
        # like QlibFactorRunner: the SOTA factors so far plus the new one, in one frame
        pd.concat([*(sota_values or []), values], axis=1).to_parquet(ew.workspace_path / "combined_factors_df.parquet")
        exp.values_for_tests = values  # not an RD-Agent field: lets build_trace pass SOTA values on
        exp.result.to_csv(ew.workspace_path / "qlib_res.csv")
        (ew.workspace_path / "mlruns" / "1").mkdir(parents=True, exist_ok=True)
        (ew.workspace_path / "mlruns" / "1" / "meta.yaml").write_text(f"run: {i}\n")
        os.symlink("../read_exp_res.py", ew.workspace_path / "mlruns" / "link_to_script.py")
    return exp


def feedback(i: int, decision: bool) -> HypothesisFeedback:
    return HypothesisFeedback(
        reason=f"IC went {'up' if decision else 'down'} at node {i}",
        decision=decision,
        observations=f"observation {i}",
        hypothesis_evaluation="supported" if decision else "refuted",
        new_hypothesis=f"try window {i + 1}",
        acceptable=decision,
    )


def build_trace(
    parents: list[tuple[int, ...]],
    decisions: list[bool],
    data: Path,
    *,
    quant: bool = False,
    loop_ids: list[int] | None = None,
    write_outputs: bool = True,
    panel_shape: tuple[int, int] = (30, 5),
    max_combined: int = 1000,
) -> Trace:
    """A trace with the given DAG; every node's based_experiments are one shared empty baseline plus
    the accepted nodes before it (as RD-Agent's factor proposal builds them)."""
    scen = TinyScenario()
    trace = QuantTrace(scen) if quant else Trace(scen)
    baseline = QlibFactorExperiment(sub_tasks=[])
    accepted: list = []
    sota_values: list[pd.DataFrame] = []
    for i, (parent, decision) in enumerate(zip(parents, decisions)):
        exp = factor_experiment(
            i,
            [baseline, *accepted],
            data,
            action="factor" if quant else None,
            write_outputs=write_outputs,
            panel_shape=panel_shape,
            sota_values=sota_values[-max_combined:],
        )
        exp.local_selection = parent
        trace.sync_dag_parent_and_hist((exp, feedback(i, decision)), loop_ids[i] if loop_ids else i)
        if decision:
            accepted.append(exp)
            if write_outputs:
                sota_values.append(exp.__dict__.pop("values_for_tests"))
        else:
            exp.__dict__.pop("values_for_tests", None)
        if quant:
            m = Metrics(ic=0.01 * i, arr=0.1, mdd=-0.05)
            trace.controller.record(m, "factor" if i % 2 else "model")
    return trace


class RunHolder:
    """Stands in for a loop object in hand-made session dumps (bad-input tests only; the real
    session dumps come from RD-Agent's own loop in tests/test_offline_loop.py)."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.plan = {"features": {"RESI5": "Resi($close, 5)/$close"}, "feature_codes": {}}


def write_session(
    run_dir: Path,
    trace: Trace,
    loops: int = 2,
    steps: tuple[str, ...] = ("direct_exp_gen", "coding", "running", "feedback", "record"),
) -> Path:
    """A run folder with ``__session__/<loop>/<step>_<name>`` dumps signed by RD-Agent's serializer."""
    from rdagent.core.serialization import dumps

    data = dumps(RunHolder(trace))
    for li in range(loops):
        for si, name in enumerate(steps):
            f = run_dir / "__session__" / str(li) / f"{si}_{name}"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(data)
    return run_dir
