"""The one place where a checkpoint's ``result.h5`` bytes become factor values (pandas), checked first.

    values = read_factor_values(blob, "run1.tckpt: node 3 result.h5")   # a DataFrame or Series

``pd.read_hdf`` runs pickles: pandas stores an object array as a PyTables ``VLArray`` of ``ObjectAtom``
(a pickle per row), and PyTables unpickles every node attribute that looks like a pickle (a byte string
ending in ``.``) as soon as the node is opened, so PyTables itself cannot be used to look first. The file
is therefore walked with h5py, which never unpickles, and handed to pandas only when every node is a group
or an array/table of numbers or fixed-size strings, no link leaves the file, and every attribute PyTables
would unpickle is a pickle of plain data (pandas writes ``None`` so: ``N.``). RD-Agent's own ``result.h5``
files (floats; datetime and instrument levels) pass; a foreign one is a one-line error.
"""

from __future__ import annotations

import contextvars
import io
import pickletools
import sys
import tempfile
from pathlib import Path
from typing import Any

from trace_ckpt.codec.pickle_ops import MEMO_SLACK
from trace_ckpt.errors import CorruptCheckpointError, UntrustedContentError
from trace_ckpt.quant import RESULT_FILE

# opcodes that import or call something: a pickle holding one of these can run code when loaded
_CODE_OPCODES = frozenset(
    {
        "GLOBAL",
        "STACK_GLOBAL",
        "REDUCE",
        "BUILD",
        "INST",
        "OBJ",
        "NEWOBJ",
        "NEWOBJ_EX",
        "EXT1",
        "EXT2",
        "EXT4",
        "PERSID",
        "BINPERSID",
    }
)
_MEMO_OPCODES = frozenset({"MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"})
_PICKLE_OPCODES = frozenset(ord(op.code) for op in pickletools.opcodes)
# PyTables' node classes that hold numbers or fixed-size strings (never VLARRAY: its rows may be pickles)
_CLASSES = frozenset({b"GROUP", b"ARRAY", b"CARRAY", b"EARRAY", b"TABLE"})
_KINDS = frozenset("biufS")  # bool, integers, floats, fixed-size byte strings (factor values are real numbers)
# values may expand beyond the file (compression, unwritten chunks) only this much
_EXPANSION, _SLACK = 64, 64 << 20


def _unsafe_pickle(value: bytes) -> str | None:
    """Why PyTables must not unpickle this attribute value (it tries any byte string ending in '.').

    The C unpickler runs opcodes in order and stops at the first it cannot read, so what matters is every
    opcode up to there: none may import or call anything, and no memo index may be a bomb.
    """
    if not value or value[0] not in _PICKLE_OPCODES:
        return None  # the unpickler stops at the first byte: a name like "x." is only text
    stored = 0
    try:
        for op, arg, pos in pickletools.genops(value):
            if op.name in _CODE_OPCODES:
                return f"a pickle that calls code ({op.name} at byte {pos})"
            if op.name in _MEMO_OPCODES:
                if op.name != "MEMOIZE" and int(arg) > stored + MEMO_SLACK:
                    return f"a pickle with memo index {arg} (byte {pos})"
                stored += 1
    except ValueError:  # the unpickler stops there too, after the harmless opcodes before it
        return None
    return None


def _attribute_problem(name: str, value: Any) -> str | None:
    import numpy as np

    if isinstance(value, (str, np.str_)):  # h5py decodes variable-length strings; PyTables gives ASCII ones as bytes
        value = value.encode("utf-8", "surrogateescape")
    if isinstance(value, (bytes, np.bytes_)):
        raw = bytes(value).rstrip(b"\x00")  # as PyTables reads it
        if raw.endswith(b".") and raw not in (b"0", b"0."):
            why = _unsafe_pickle(raw)
            return f"attribute {name!r} is {why}" if why else None
        return None
    if isinstance(value, np.ndarray) and value.dtype.kind not in _KINDS | {"U"}:
        return f"attribute {name!r} holds {value.dtype} values"
    return None


def _dtype_problem(dtype: Any) -> str | None:
    if dtype.names:  # a Table's rows
        for field in dtype.names:
            why = _dtype_problem(dtype.fields[field][0])
            if why:
                return why
        return None
    if dtype.subdtype is not None:
        return _dtype_problem(dtype.subdtype[0])
    import h5py

    if dtype.kind not in _KINDS or h5py.check_enum_dtype(dtype) is not None:
        return f"{dtype} values (only numbers and fixed-size strings are factor values)"
    return None


def check_factor_file(data: bytes, source: str) -> None:
    """Refuse (one line) an HDF5 file that pandas or PyTables could unpickle anything from, or that is no HDF5."""
    import h5py

    problems: list[str] = []
    declared = 0

    def visit(path: str, obj: Any) -> None:
        nonlocal declared
        where = path or "/"
        for name in obj.attrs:
            try:
                value = obj.attrs[name]
            except (OSError, TypeError, ValueError) as e:  # a type h5py cannot read: PyTables would guess
                problems.append(f"{where}: attribute {name!r} cannot be read ({e})")
                continue
            why = _attribute_problem(name, value)
            if why:
                problems.append(f"{where}: {why}")
        cls = obj.attrs.get("CLASS") if "CLASS" in obj.attrs else None
        cls = cls.encode() if isinstance(cls, str) else bytes(cls) if cls is not None else None
        if cls is not None and cls not in _CLASSES:
            problems.append(f"{where}: a PyTables {cls.decode(errors='replace')} node")
        if isinstance(obj, h5py.Group):
            for name in obj:
                link = obj.get(name, getlink=True)
                if not isinstance(link, h5py.HardLink):
                    problems.append(f"{where.rstrip('/')}/{name}: a {type(link).__name__}")
        elif isinstance(obj, h5py.Dataset):
            why = _dtype_problem(obj.dtype)
            if why:
                problems.append(f"{where}: {why}")
            else:
                declared += int(obj.size) * obj.dtype.itemsize
        else:
            problems.append(f"{where}: a {type(obj).__name__}")

    try:
        with h5py.File(io.BytesIO(data), "r") as f:
            visit("", f)
            f.visititems(visit)
    except Exception as e:  # noqa: BLE001 - h5py raises OSError, KeyError, ValueError... on damaged bytes
        raise CorruptCheckpointError(
            f"{source} is not a readable HDF5 file ({type(e).__name__}: {e}); the checkpoint is damaged"
        ) from None
    if problems:
        raise UntrustedContentError(
            f"{source} is not factor values as RD-Agent writes them ({problems[0]}"
            + (f"; {len(problems) - 1} more" if len(problems) > 1 else "")
            + "): refused, reading it could run code"
        )
    if declared > _EXPANSION * len(data) + _SLACK:
        raise CorruptCheckpointError(
            f"{source} declares {declared} bytes of values in a {len(data)}-byte file: refused as a decompression bomb"
        )


def read_factor_values(data: bytes, source: str) -> Any:
    """The DataFrame (or Series) in a ``result.h5``'s bytes, after :func:`check_factor_file` passed.

    Raises UntrustedContentError for a file that could run code, CorruptCheckpointError for one pandas cannot read.
    """
    import pandas as pd

    check_factor_file(data, source)
    _install_guard()
    refused: list[str] = []
    token = _GUARD.set(refused)
    try:
        # in memory (no temp file): PyTables' core driver opens the checked bytes themselves
        with pd.HDFStore(
            RESULT_FILE, mode="r", driver="H5FD_CORE", driver_core_image=data, driver_core_backing_store=0
        ) as store:
            values = pd.read_hdf(store)
    except Exception as e:  # noqa: BLE001 - any failure of pandas on a checked but foreign file
        if not refused:
            raise CorruptCheckpointError(f"{source} is unreadable as factor values ({type(e).__name__}: {e})") from None
    finally:
        _GUARD.reset(token)
    if refused:  # PyTables swallows errors of attribute unpickling: the guard's record is what counts
        raise UntrustedContentError(f"{source}: reading it tried to load {refused[0]} through pickle: refused")
    return values


# A second line behind check_factor_file: while pandas reads checked bytes, any pickle that names a global
# (the only way a pickle reaches code) is stopped by an audit hook, whatever the check missed.
_GUARD: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("tckpt_hdf_guard", default=None)
_guard_installed = False


def _refuse_pickled_globals(event: str, args: tuple[Any, ...]) -> None:
    if event == "pickle.find_class":
        refused = _GUARD.get()
        if refused is not None:
            refused.append(f"{args[0]}.{args[1]}")
            raise UntrustedContentError(f"pickle.find_class({args[0]}.{args[1]}) refused while reading factor values")


def _install_guard() -> None:
    global _guard_installed
    if not _guard_installed:  # audit hooks cannot be removed: one per process, idle outside a read
        sys.addaudithook(_refuse_pickled_globals)
        _guard_installed = True


def factor_values_bytes(values: Any) -> bytes:
    """``values`` as the bytes of a ``result.h5``, written as RD-Agent's factor code writes it."""
    with tempfile.TemporaryDirectory(prefix="tckpt-h5-") as d:
        path = Path(d) / RESULT_FILE
        values.to_hdf(path, key="data", mode="w")
        return path.read_bytes()
