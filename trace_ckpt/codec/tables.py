"""pandas Series/DataFrames <-> Arrow IPC sections.

pandas pickles break across pandas major versions, and the model phase may run with another pandas,
so frames and series in the trace are stored as Arrow. Column labels, the Series name and the column
index names travel in the pickle as plain Python values (Arrow field names must be strings).
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pandas.api.types import infer_dtype

from trace_ckpt.errors import CorruptCheckpointError

_ARROW_SAFE_OBJECT = {"string", "empty", "bytes"}
_PLAIN_KINDS = "fiub"  # numpy float, signed/unsigned int, bool: these columns round-trip as plain arrays
# Reading: a table is read zero-copy from its blob (buffers are never compressed, see _check_messages), so
# what pandas then builds is bounded by the cells: every element of every array, children included. An
# honest table spends at least one bit of the blob per element (a bool); a null column spends none, so
# a few million cells are allowed on top (an all-None column of an honest frame).
CELLS_PER_BYTE = 8
CELLS_SLACK = 1 << 24
_READ_OPTIONS = pa.ipc.IpcReadOptions(use_threads=False)  # nothing to decompress: no thread pool hand-off


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
        labels["index"] = {
            "kind": "range",
            "start": index.start,
            "stop": index.stop,
            "step": index.step,
            "name": index.name,
        }
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


def _check_labels(table: pa.Table, labels: Any) -> None:
    """The labels come from the graph, not from the table: their shapes must be what ``to_arrow`` writes and
    their lengths the table's, checked before pandas builds an index of them (a lazily huge RangeIndex as the
    column labels would be materialised first)."""
    ok = type(labels) is dict and labels.get("type") in ("series", "frame")
    if ok and labels["type"] == "frame":
        # a plain table holds exactly the frame's columns (and __index__); pandas' own layout is checked later
        n_cols = table.num_columns - ("__index__" in table.column_names) if "index" in labels else None
        cols, names = labels.get("columns"), labels.get("column_names")
        ok = (
            type(cols) is list
            and len(cols) == (len(cols) if n_cols is None else n_cols)
            and type(names) is list
            and 1 <= len(names) <= 64
            and type(labels.get("multi")) is bool
            and (labels.get("columns_dtype") is None or type(labels.get("columns_dtype")) is str)
        )
        if ok and labels["multi"]:
            ok = all(type(c) is tuple and len(c) == len(names) for c in cols)
    spec = labels.get("index") if ok else None
    if spec is not None:
        ok = type(spec) is dict and spec.get("kind") in ("range", "str", "int")
        if ok and spec["kind"] == "range":
            bounds = (spec.get("start"), spec.get("stop"), spec.get("step"))
            ok = all(type(b) is int for b in bounds) and bounds[2] != 0 and len(range(*bounds)) == table.num_rows
    if not ok:
        raise CorruptCheckpointError("a table's labels in the graph do not match the table")


def _column(table: pa.Table, name: str) -> Any:
    # Arrow hands out read-only views; RD-Agent code may edit results in place, so copy.
    return np.array(table.column(name).to_numpy(), copy=True)


def _plain_index(table: pa.Table, spec: dict[str, Any]) -> pd.Index:
    if spec["kind"] == "range":
        return pd.RangeIndex(spec["start"], spec["stop"], spec["step"], name=spec["name"])
    if spec["kind"] == "str":
        return pd.Index(table.column("__index__").to_numpy(zero_copy_only=False), dtype=object, name=spec["name"])
    return pd.Index(_column(table, "__index__"), name=spec["name"])


# Arrow's IPC metadata is a flatbuffer (format/Message.fbs); pyarrow does not say whether a record batch's
# buffers are compressed before it decompresses them, so the three fields that tell are read here.
_U16, _I32, _U32 = (struct.Struct(f).unpack_from for f in ("<H", "<i", "<I"))
_MESSAGE_HEADER, _DICTIONARY_DATA, _RECORD_BATCH_COMPRESSION = 2, 1, 3  # field slots in Message.fbs


def _field(buf: bytes, table: int, slot: int) -> int:
    """Position of field ``slot`` of the flatbuffer table at ``table`` (0 when the field is absent)."""
    vtable = table - _I32(buf, table)[0]
    at = 4 + 2 * slot
    offset = _U16(buf, vtable + at)[0] if at < _U16(buf, vtable)[0] else 0
    return table + offset if offset else 0


def _target(buf: bytes, pos: int) -> int:
    """The table a flatbuffer offset field at ``pos`` points to."""
    return pos + _U32(buf, pos)[0]


def _is_compressed(metadata: bytes, dictionary: bool) -> bool:
    """Whether a record batch or dictionary batch message declares compressed body buffers."""
    header = _field(metadata, _target(metadata, 0), _MESSAGE_HEADER)
    if not header:
        return False
    batch = _target(metadata, header)
    if dictionary:
        data = _field(metadata, batch, _DICTIONARY_DATA)
        if not data:
            return False
        batch = _target(metadata, data)
    return _field(metadata, batch, _RECORD_BATCH_COMPRESSION) != 0


def _check_messages(buf: pa.Buffer) -> None:
    """Refuse an IPC stream with compressed buffers before Arrow decompresses them: each buffer says how
    large it decompresses to, and no size in the checkpoint bounds that (a few KiB became gigabytes).
    :func:`to_arrow` never compresses (the section around the blob is compressed already)."""
    try:
        for message in pa.ipc.MessageReader.open_stream(buf):
            if message.type in ("record batch", "dictionary") and _is_compressed(
                message.metadata.to_pybytes(), message.type == "dictionary"
            ):
                raise CorruptCheckpointError(
                    "an Arrow table of the graph has compressed buffers, which trace-ckpt never writes: "
                    "the file is crafted or damaged; use a good copy"
                )
    except (pa.ArrowException, struct.error) as e:
        raise CorruptCheckpointError(f"an Arrow table of the graph is damaged ({e})") from None


def _cells(arr: pa.Array) -> int:
    """Elements of ``arr`` and of every array below it: what converting it to pandas builds, at most."""
    t = arr.type
    if isinstance(arr, pa.ExtensionArray):
        return _cells(arr.storage)
    if pa.types.is_dictionary(t):
        return len(arr) + _cells(arr.dictionary)
    if pa.types.is_run_end_encoded(t):  # its length is the expanded one
        return len(arr) + _cells(arr.values)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_map(t):
        return len(arr) + _cells(arr.values)
    if pa.types.is_struct(t) or pa.types.is_union(t):
        return len(arr) + sum(_cells(arr.field(i)) for i in range(t.num_fields))
    if pa.types.is_nested(t):  # list views: rows may share elements, so no count bounds them
        raise CorruptCheckpointError(
            f"an Arrow table of the graph has a column of type {t}, which trace-ckpt never writes"
        )
    return len(arr)


def _check_size(table: pa.Table, nbytes: int) -> None:
    cells = sum(_cells(chunk) for column in table.columns for chunk in column.chunks) + table.num_rows
    if cells > CELLS_PER_BYTE * nbytes + CELLS_SLACK:
        raise CorruptCheckpointError(
            f"an Arrow table of the graph claims {table.num_rows} rows ({cells} cells) in {nbytes} bytes, "
            "more than the bytes can hold: the file is crafted or damaged"
        )


def _check_plain(table: pa.Table, kind: str) -> None:
    """The plain layout holds numeric columns and a string or integer ``__index__`` only (see :func:`_plain_table`)."""
    for field in table.schema:
        t = field.type
        if field.name == "__index__":
            ok = pa.types.is_string(t) if kind == "str" else pa.types.is_integer(t) and kind == "int"
        else:
            ok = pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
        if not ok:
            raise CorruptCheckpointError(
                f"an Arrow table of the graph has a column {field.name!r} of type {t}, "
                "which its layout does not hold: the file is crafted or damaged"
            )


def from_arrow(data: bytes, labels: dict[str, Any]) -> pd.DataFrame | pd.Series:
    """Rebuild the Series/DataFrame written by :func:`to_arrow`; CorruptCheckpointError for a table that
    holds more than its bytes can (compressed buffers, rows without bytes) or is not what it claims."""
    buf = pa.py_buffer(data)
    _check_messages(buf)
    table = pa.ipc.open_stream(buf, options=_READ_OPTIONS).read_all()
    # reading IPC does not check buffer contents: a crafted string offset would make to_pandas read out of
    # bounds (Arrow's security notes); the full check raises ArrowInvalid instead, a corrupt graph
    table.validate(full=True)
    _check_size(table, len(data))
    _check_labels(table, labels)
    if "index" in labels:
        _check_plain(table, labels["index"]["kind"])
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
    if len(labels["columns"]) != len(frame.columns):
        raise CorruptCheckpointError("a table's labels in the graph do not match the table")
    if labels["multi"]:
        frame.columns = pd.MultiIndex.from_tuples(labels["columns"], names=labels["column_names"])
    else:
        dtype = labels.get("columns_dtype")
        frame.columns = pd.Index(labels["columns"], name=labels["column_names"][0], dtype=dtype)
    return frame
