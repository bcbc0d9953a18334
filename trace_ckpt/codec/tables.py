"""pandas Series/DataFrames <-> Arrow IPC sections.

pandas pickles break across pandas major versions, and the model phase may run with another pandas,
so frames and series in the trace are stored as Arrow. Column labels, the Series name and the column
index names travel in the pickle as plain Python values (Arrow field names must be strings).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pandas.api.types import infer_dtype

_ARROW_SAFE_OBJECT = {"string", "empty", "bytes"}
_PLAIN_KINDS = "fiub"  # numpy float, signed/unsigned int, bool: these columns round-trip as plain arrays


def _arrow_safe(values: pd.Index | pd.Series) -> bool:
    """Object columns survive Arrow only when they hold strings or bytes (no mixed Python objects)."""
    if values.dtype == object:
        return infer_dtype(values, skipna=True) in _ARROW_SAFE_OBJECT
    return True


def to_arrow(obj: pd.DataFrame | pd.Series) -> tuple[bytes, dict[str, Any]] | None:
    """Arrow IPC bytes plus the labels to rebuild ``obj``; None when Arrow cannot hold it faithfully."""
    if isinstance(obj, pd.Series):
        frame = obj.to_frame(name="c0")
        labels: dict[str, Any] = {"type": "series", "name": obj.name}
    else:
        frame = obj.copy(deep=False)
        cols = obj.columns
        labels = {
            "type": "frame",
            "columns": list(cols),
            "column_names": list(cols.names),
            "multi": isinstance(cols, pd.MultiIndex),
            "columns_dtype": str(cols.dtype) if not isinstance(cols, pd.MultiIndex) else None,
        }
        frame.columns = [f"c{i}" for i in range(len(cols))]
    if obj.attrs:
        return None
    index = frame.index
    levels = [index.get_level_values(i) for i in range(index.nlevels)]
    if not all(_arrow_safe(lv) for lv in levels) or not all(_arrow_safe(frame[c]) for c in frame.columns):
        return None
    if any(n is not None and not isinstance(n, str) for n in index.names):
        return None
    try:
        table = _plain_table(frame, labels)
        if table is None:
            table = pa.Table.from_pandas(frame, preserve_index=True)
    except (pa.ArrowException, TypeError, ValueError):
        return None
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes(), labels


def _plain_table(frame: pd.DataFrame, labels: dict[str, Any]) -> pa.Table | None:
    """The fast layout for the common small case (a Qlib result Series): numeric columns and a
    string, integer or range index, stored as bare arrays without pandas metadata."""
    if any(dt.kind not in _PLAIN_KINDS for dt in frame.dtypes):
        return None
    index = frame.index
    columns: dict[str, Any] = {}
    if isinstance(index, pd.RangeIndex):
        labels["index"] = {"kind": "range", "start": index.start, "stop": index.stop, "step": index.step, "name": index.name}
    elif type(index) is pd.Index and index.dtype == object and infer_dtype(index, skipna=False) in ("string", "empty"):
        labels["index"] = {"kind": "str", "name": index.name}
        columns["__index__"] = pa.array(index.to_numpy(), type=pa.string())
    elif type(index) is pd.Index and index.dtype.kind in "iu":
        labels["index"] = {"kind": "int", "name": index.name}
        columns["__index__"] = pa.array(index.to_numpy())
    else:
        return None
    for c in frame.columns:
        columns[c] = pa.array(frame[c].to_numpy())
    return pa.table(columns)


def _column(table: pa.Table, name: str) -> Any:
    # Arrow hands out read-only views; RD-Agent code may edit results in place, so copy.
    return np.array(table.column(name).to_numpy(), copy=True)


def _plain_index(table: pa.Table, spec: dict[str, Any]) -> pd.Index:
    if spec["kind"] == "range":
        return pd.RangeIndex(spec["start"], spec["stop"], spec["step"], name=spec["name"])
    if spec["kind"] == "str":
        return pd.Index(table.column("__index__").to_numpy(zero_copy_only=False), dtype=object, name=spec["name"])
    return pd.Index(_column(table, "__index__"), name=spec["name"])


def from_arrow(data: bytes, labels: dict[str, Any]) -> pd.DataFrame | pd.Series:
    """Rebuild the Series/DataFrame written by :func:`to_arrow`."""
    table = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
    # reading IPC does not check buffer contents: a crafted string offset would make to_pandas read out of
    # bounds (Arrow's security notes); the full check raises ArrowInvalid instead, a corrupt graph
    table.validate(full=True)
    if "index" in labels:
        index = _plain_index(table, labels["index"])
        cols = [n for n in table.column_names if n != "__index__"]
        if labels["type"] == "series":
            return pd.Series(_column(table, "c0"), index=index, name=labels["name"])
        frame = pd.DataFrame({n: _column(table, n) for n in cols}, index=index, columns=cols)
    else:
        frame = table.to_pandas()
    if labels["type"] == "series":
        s = frame["c0"]
        s.name = labels["name"]
        return s
    if labels["multi"]:
        frame.columns = pd.MultiIndex.from_tuples(labels["columns"], names=labels["column_names"])
    else:
        dtype = labels.get("columns_dtype")
        frame.columns = pd.Index(labels["columns"], name=labels["column_names"][0], dtype=dtype)
    return frame
