"""pandas objects through Arrow: what comes back is what went in, labels and dtypes included."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.compare import assert_same_graph
from trace_ckpt.codec.tables import from_arrow, to_arrow

ROOT = Path(__file__).resolve().parents[1]


def roundtrip(obj):
    encoded = to_arrow(obj)
    assert encoded is not None
    return from_arrow(*encoded)


@pytest.mark.parametrize(
    "obj",
    [
        pd.Series([0.1, -0.2], index=["IC", "1day.excess_return_with_cost.annualized_return"], name="0"),
        pd.Series([1.0, 2.0], name=0),
        pd.Series([1, 2, 3], dtype="int32", name=None),
        pd.Series(["a", None, "c"], name=("x", 1)),
        pd.DataFrame({0: [1.0, 2.0], "a": ["x", "y"]}),
        pd.DataFrame(
            np.arange(6.0).reshape(3, 2), columns=pd.MultiIndex.from_tuples([("f", 1), ("g", 2)], names=["n", "w"])
        ),
        pd.DataFrame({"f": [1.5, np.nan]}, index=pd.Index(["a", "b"], name="id")),
        pd.DataFrame({"t": pd.to_datetime(["2020-01-01", "2020-01-02"]), "c": pd.Categorical(["u", "v"])}),
        pd.DataFrame(),
    ],
    ids=[
        "qlib-result",
        "int-name",
        "int32",
        "strings",
        "mixed-labels",
        "multi-columns",
        "named-index",
        "dt-cat",
        "empty",
    ],
)
def test_roundtrip(obj) -> None:
    assert_same_graph(obj, roundtrip(obj))


def test_factor_panel_with_datetime_instrument_index() -> None:
    idx = pd.MultiIndex.from_product(
        [pd.date_range("2021-01-04", periods=50, freq="B"), ["SH600000", "SZ000001"]], names=["datetime", "instrument"]
    )
    df = pd.DataFrame({"Mom5": np.random.default_rng(0).standard_normal(100)}, index=idx)
    back = roundtrip(df)
    assert_same_graph(df, back)
    assert back.index.names == ["datetime", "instrument"]


@pytest.mark.parametrize(
    "obj",
    [
        pd.DataFrame({"m": [1, "x"]}),
        pd.Series([{"a": 1}, [2]]),
        pd.DataFrame({"a": [1]}, index=pd.Index([0], name=5)),
    ],
    ids=["mixed-object-column", "python-objects", "non-string-index-name"],
)
def test_what_arrow_cannot_hold_is_left_to_the_pickle(obj) -> None:
    assert to_arrow(obj) is None


def test_attrs_are_not_dropped_silently() -> None:
    s = pd.Series([1.0])
    s.attrs["unit"] = "bp"
    assert to_arrow(s) is None


@pytest.mark.parametrize(
    "obj",
    [
        pd.Series(np.arange(4, dtype="float32"), index=pd.RangeIndex(2, 10, 2, name="r")),
        pd.Series([True, False], index=pd.Index([3, 7], dtype="int64", name="k"), name="flag"),
        pd.DataFrame({"a": np.array([1, 2], dtype="uint16"), "b": [np.nan, 1.0]}, index=["x", "y"]),
        pd.Series([], dtype="float64", index=pd.Index([], dtype=object), name="0"),
    ],
    ids=["range-float32", "int-index-bool", "uint-nan", "empty-result"],
)
def test_fast_layout_keeps_index_types_and_dtypes(obj) -> None:
    back = roundtrip(obj)
    assert_same_graph(obj, back)
    assert type(back.index) is type(obj.index) and back.index.dtype == obj.index.dtype


@pytest.mark.parametrize(
    "obj",
    [
        pd.Series([1.0, 2.0], index=["IC", "ICIR"], name="0"),
        pd.DataFrame({"a": [1.0, 2.0]}, index=pd.date_range("2020-01-01", periods=2)),
        pd.DataFrame({"a": [1, 2]}),
    ],
    ids=["result", "datetime-index", "range-index"],
)
def test_restored_values_can_be_edited_in_place(obj) -> None:
    back = roundtrip(obj)
    back.iloc[0] = 5  # RD-Agent code edits results in place; Arrow's read-only views would refuse
    assert (back.iloc[0] == 5).all()


def test_a_string_offset_past_its_data_is_refused_not_read() -> None:
    """IPC reading does not check offsets; a crafted one would make to_pandas read out of bounds (a crash
    at worst). Run in a child process so that, were the check missing, a crash fails this test only."""
    probe = textwrap.dedent(
        """
        import pandas as pd, pyarrow as pa
        from trace_ckpt.codec.tables import from_arrow, to_arrow
        data, labels = to_arrow(pd.Series([1.0, 2.0], index=["abc", "def"]))
        offsets = (0).to_bytes(4, "little") + (3).to_bytes(4, "little") + (6).to_bytes(4, "little")
        assert data.count(offsets) == 1
        bad = data.replace(offsets, offsets[:8] + (2**31 - 1).to_bytes(4, "little"))
        try:
            from_arrow(bad, labels)
        except pa.ArrowInvalid as e:
            print("refused:", e)
        else:
            print("loaded")
        """
    )
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("refused:"), r.stdout
