"""Simulated Qlib backtest: stands in for the Docker/conda environment that runs ``qrun``.

RD-Agent's ``QlibFBWorkspace.execute`` creates that environment and then reads ``qlib_res.csv`` and
``ret.parquet`` from the workspace; this stand-in writes those files from a quick computation on the
synthetic panel (the information coefficient of the combined factors against next-day returns), so
all of RD-Agent's own code around the backtest runs unchanged. Every call is appended to the log
named by ``TRACE_CKPT_OFFLINE_BACKTEST_LOG`` so tests can see which configuration was asked for.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

METRICS = [
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


def _next_day_returns() -> pd.Series | None:
    folder = os.environ.get("FACTOR_CoSTEER_DATA_FOLDER")  # noqa: SIM112 — RD-Agent spells it so
    if not folder or not (Path(folder) / "daily_pv.h5").exists():
        return None
    close = pd.read_hdf(Path(folder) / "daily_pv.h5", key="data")["$close"].astype("float64")
    return close.groupby(level="instrument").pct_change().groupby(level="instrument").shift(-1)


def simulate(workspace: Path, config: str) -> pd.Series:
    """Metrics for one simulated ``qrun``: IC of the combined factors, plus a bonus for a model."""
    ic = 0.01
    factors_file = workspace / "combined_factors_df.parquet"
    fwd = _next_day_returns()
    if factors_file.exists() and fwd is not None:
        factors = pd.read_parquet(factors_file)
        factors.columns = [c[-1] if isinstance(c, tuple) else c for c in factors.columns]
        joined = factors.join(fwd.rename("__ret__"), how="inner").dropna()
        if len(joined) > 10:
            ics = [abs(joined[c].corr(joined["__ret__"])) for c in factors.columns]
            ic = float(np.nanmean(ics)) if ics else ic
    if "model" in config:
        ic *= 1.1
    arr = ic * 3
    values = [ic, ic * 8, ic * 0.9, ic * 7, arr, arr * 5, -0.1 + ic, arr * 1.2, arr * 6, -0.08 + ic]
    return pd.Series(values, index=METRICS, name="0")


class SimulatedQlibEnv:
    """The environment object RD-Agent's Qlib workspace calls; ``qrun`` is simulated."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def prepare(self, *args: Any, **kwargs: Any) -> None:
        pass

    def check_output(
        self, entry: str | None = None, local_path: str = ".", env: dict | None = None, **kwargs: Any
    ) -> str:
        workspace = Path(local_path)
        m = re.match(r"qrun\s+(\S+)", entry or "")
        record = {"entry": entry, "workspace": str(workspace)}
        log = os.environ.get("TRACE_CKPT_OFFLINE_BACKTEST_LOG")
        if log:
            with open(log, "a") as f:
                f.write(json.dumps(record) + "\n")
        if not m:
            return ""  # `python read_exp_res.py`: the files are written already
        config = m.group(1)
        result = simulate(workspace, config)
        result.to_frame().to_csv(workspace / "qlib_res.csv")
        days = pd.date_range("2020-01-01", periods=20, freq="B")
        pd.DataFrame({"return": np.linspace(0, result["IC"], 20)}, index=days).to_parquet(workspace / "ret.parquet")
        return f"[simulated qrun {config}]\nEpoch0: train -0.99, valid -0.98\nbest score: -0.97 @ 0 epoch\n"


def install(loop: Any = None) -> None:
    """Make RD-Agent's Qlib workspace use the simulated environment (call before the loop starts;
    usable as ``TRACE_CKPT_RESUME_SETUP=examples.offline.backtest:install``)."""
    from rdagent.scenarios.qlib.experiment import workspace

    workspace.QTDockerEnv = SimulatedQlibEnv  # type: ignore[misc]
    workspace.QlibCondaEnv = SimulatedQlibEnv  # type: ignore[misc]
