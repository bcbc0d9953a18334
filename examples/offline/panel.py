"""A small synthetic daily price panel in Qlib's layout (simulated market data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def make_panel(n_days: int = 120, n_instruments: int = 12, seed: int = 0) -> pd.DataFrame:
    """MultiIndex (datetime, instrument) with $open $close $high $low $volume $factor."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2019-01-02", periods=n_days, freq="B")
    insts = [f"SH6{i:05d}" for i in range(n_instruments)]
    idx = pd.MultiIndex.from_product([dates, insts], names=["datetime", "instrument"])
    rets = rng.normal(0.0003, 0.02, (n_days, n_instruments))
    close = 10 * np.exp(np.cumsum(rets, axis=0))
    close = close.reshape(-1)
    return pd.DataFrame(
        {
            "$open": close * (1 + rng.normal(0, 0.003, close.size)),
            "$close": close,
            "$high": close * 1.01,
            "$low": close * 0.99,
            "$volume": rng.integers(10_000, 90_000, close.size).astype("float64"),
            "$factor": 1.0,
        },
        index=idx,
    ).astype("float32")


def write_data_folders(full: Path, debug: Path, seed: int = 0) -> None:
    """RD-Agent's factor data folders: ``daily_pv.h5`` (all) and a shorter debug copy."""
    panel = make_panel(seed=seed)
    for folder, frame in (
        (full, panel),
        (
            debug,
            panel.loc[panel.index.get_level_values(0) < panel.index.get_level_values(0)[0] + pd.Timedelta(days=60)],
        ),
    ):
        folder.mkdir(parents=True, exist_ok=True)
        frame.to_hdf(folder / "daily_pv.h5", key="data")
        (folder / "README.md").write_text("daily_pv.h5: simulated daily price and volume, Qlib layout\n")
