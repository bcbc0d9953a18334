"""A deterministic synthetic market in Qlib's binary format, and the factor phase's ``daily_pv.h5`` from it.

    python -m examples.qlib_market ~/.qlib/qlib_data/cn_data --daily-pv data/factor_implementation_source_data

Qlib's layout (what ``qlib.init(provider_uri=...)`` reads): ``calendars/day.txt`` (one date a line),
``instruments/all.txt`` and ``instruments/csi300.txt`` (``CODE<tab>start<tab>end``) and
``features/<code lower case>/<field>.day.bin``: little-endian float32, the first value the index of the
series' first day in the calendar, then one value a day. Instrument codes are upper case in the
instrument lists (RD-Agent's factor values carry the same codes, so they join Qlib's features).

The market is simulated: business days 2008-01-02 .. 2020-12-31 (the span RD-Agent's Qlib templates
train, validate and test on), ``SH600000`` and 29 more stocks in ``csi300``, and the ``SH000300``
benchmark (the stocks' equal-weight index). Returns carry a small short-term reversal, so factors and
models have something to find. The same seed always writes the same bytes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

START, END = "2008-01-02", "2020-12-31"
BENCHMARK = "SH000300"
MARKET = "csi300"
FIELDS = ("open", "close", "high", "low", "volume", "vwap", "factor", "change")
N_STOCKS = 30  # SH600000 (test_fea.py of RD-Agent reads it) and 29 more


def stock_codes(n: int = N_STOCKS) -> list[str]:
    """Upper-case codes: SH600000, SH600001, ..."""
    return [f"SH{600000 + i}" for i in range(n)]


def make_market(seed: int = 0, n_stocks: int = N_STOCKS) -> dict[str, pd.DataFrame]:
    """Code -> daily frame with Qlib's fields (index: the calendar), stocks and the benchmark."""
    rng = np.random.default_rng(seed)
    days = pd.bdate_range(START, END)
    n = len(days)
    codes = stock_codes(n_stocks)
    market = rng.normal(0.0002, 0.011, n)
    noise = rng.normal(0.0, 0.018, (n, n_stocks))
    rets = np.empty((n, n_stocks))
    rets[0] = market[0] + noise[0]
    for t in range(1, n):  # a mild reversal of the last three days' return: a learnable signal
        past = rets[max(0, t - 3) : t].sum(axis=0)
        rets[t] = market[t] + noise[t] - 0.06 * (past - past.mean())
    rets = np.clip(rets, -0.095, 0.095)  # within the templates' limit_threshold
    close = 10.0 * rng.uniform(0.5, 3.0, n_stocks) * np.exp(np.cumsum(rets, axis=0))
    out = {}
    for j, code in enumerate(codes):
        c = close[:, j]
        prev = np.concatenate([[c[0] / (1 + rets[0, j])], c[:-1]])
        o = prev * (1 + rng.normal(0, 0.004, n))
        hi = np.maximum(o, c) * (1 + np.abs(rng.normal(0, 0.006, n)))
        lo = np.minimum(o, c) * (1 - np.abs(rng.normal(0, 0.006, n)))
        vol = rng.lognormal(11.0, 0.35, n) * (1 + 20 * np.abs(rets[:, j]))
        out[code] = pd.DataFrame(
            {
                "open": o,
                "close": c,
                "high": hi,
                "low": lo,
                "volume": vol,
                "vwap": (o + c + hi + lo) / 4,
                "factor": np.ones(n),
                "change": c / prev - 1,
            },
            index=days,
        )
    index = 1000.0 * np.exp(np.cumsum(rets.mean(axis=1)))
    prev = np.concatenate([[1000.0], index[:-1]])
    out[BENCHMARK] = pd.DataFrame(
        {
            "open": prev,
            "close": index,
            "high": np.maximum(prev, index),
            "low": np.minimum(prev, index),
            "volume": np.full(n, 1e9),
            "vwap": (prev + index) / 2,
            "factor": np.ones(n),
            "change": index / prev - 1,
        },
        index=days,
    )
    return out


def write_qlib(market: dict[str, pd.DataFrame], root: Path) -> None:
    """Write the market in Qlib's binary layout under ``root`` (e.g. ~/.qlib/qlib_data/cn_data)."""
    root = Path(root)
    days = next(iter(market.values())).index
    (root / "calendars").mkdir(parents=True, exist_ok=True)
    (root / "calendars" / "day.txt").write_text("".join(f"{d:%Y-%m-%d}\n" for d in days))
    (root / "instruments").mkdir(parents=True, exist_ok=True)
    span = f"\t{days[0]:%Y-%m-%d}\t{days[-1]:%Y-%m-%d}\n"
    (root / "instruments" / "all.txt").write_text("".join(code + span for code in market))
    (root / "instruments" / f"{MARKET}.txt").write_text("".join(code + span for code in market if code != BENCHMARK))
    for code, frame in market.items():
        folder = root / "features" / code.lower()
        folder.mkdir(parents=True, exist_ok=True)
        for field in FIELDS:
            values = np.concatenate([[0.0], frame[field].to_numpy()]).astype("<f4")  # 0: starts on day 0
            (folder / f"{field}.day.bin").write_bytes(values.tobytes())


def daily_pv(market: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """RD-Agent's factor data (``daily_pv.h5``): MultiIndex (datetime, instrument), ``$open`` ... ``$factor``."""
    stocks = {code: frame for code, frame in market.items() if code != BENCHMARK}
    panel = pd.concat(stocks, names=["instrument", "datetime"]).swaplevel().sort_index()
    panel = panel[["open", "close", "high", "low", "volume", "vwap", "factor"]]
    panel.columns = [f"${c}" for c in panel.columns]
    return panel.astype("float32")


def write_daily_pv(market: dict[str, pd.DataFrame], full: Path, debug: Path | None = None) -> None:
    """Write the factor phase's ``daily_pv.h5`` (and a debug copy of the last two years) from ``market``."""
    panel = daily_pv(market)
    last = panel.index.get_level_values("datetime")
    copies = [(Path(full), panel)]
    if debug is not None:
        copies.append((Path(debug), panel[last >= last.max() - pd.DateOffset(years=2)]))
    for folder, frame in copies:
        folder.mkdir(parents=True, exist_ok=True)
        frame.to_hdf(folder / "daily_pv.h5", key="data")
        (folder / "README.md").write_text("daily_pv.h5: simulated daily price and volume (examples/qlib_market.py)\n")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Write a synthetic market in Qlib's binary format (deterministic).")
    ap.add_argument("qlib_dir", type=Path, help="e.g. ~/.qlib/qlib_data/cn_data")
    ap.add_argument("--daily-pv", type=Path, help="also write daily_pv.h5 of the same market into this folder")
    ap.add_argument("--daily-pv-debug", type=Path, help="and its two-year debug copy into this folder")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    market = make_market(args.seed)
    write_qlib(market, args.qlib_dir.expanduser())
    if args.daily_pv:
        write_daily_pv(market, args.daily_pv, args.daily_pv_debug)
    days = len(next(iter(market.values())))
    print(f"{args.qlib_dir}: {len(market) - 1} stocks + {BENCHMARK}, {days} days, {len(FIELDS)} fields")


if __name__ == "__main__":
    main()
