"""How the numpy and pandas reconstructors' arguments and state are checked before the unpickler calls them
(the ``check_args`` / ``check_state`` of :mod:`trace_ckpt.codec.classes`' rules), read from the abstract
values of the pickle check's stack (:mod:`trace_ckpt.codec.stack`)."""

from __future__ import annotations

from collections.abc import Callable

from trace_ckpt.codec.stack import NONE, OTHER, Const, Dict, List, Made, Name


def names(*where: str) -> str | None:
    """A check that the first argument is one of the given names (a reconstructor that makes that class)."""
    wanted = frozenset(where)

    def check(args: tuple) -> str | None:
        first = args[0] if args else None
        if isinstance(first, Name) and first.where in wanted:
            return None
        return f"may only rebuild {', '.join(sorted(wanted))}, not {first!r}"

    return check  # type: ignore[return-value]


# what a defaultdict may take as its default factory
_FACTORIES = frozenset(f"builtins.{t}" for t in ("list", "dict", "set", "int", "float", "str", "tuple", "bool"))


def factory(args: tuple) -> str | None:
    """defaultdict's default factory: none, or a builtin container or scalar type (it is called later)."""
    if not args:
        return None
    f = args[0]
    if len(args) == 1 and (f is NONE or (isinstance(f, Name) and f.where in _FACTORIES)):
        return None
    return f"takes a builtin type as its default factory, not {f!r}"


def empty_iterable(args: tuple) -> str | None:
    """deque's first argument: the empty tuple or list pickle writes (its items come by APPENDS)."""
    first = args[0] if args else ()
    if len(args) <= 2 and (first == () or (isinstance(first, List) and first.count == 0)):
        return None
    return f"takes an empty tuple or list here (its items come after), not {first!r}"


def _is_int(value: object) -> bool:
    """An integer constant of the pickle (a bool is not one)."""
    return isinstance(value, Const) and type(value.value) is int


def no_args(args: tuple) -> str | None:
    return None if not args else f"takes no arguments here (its items come after), not {len(args)}"


def a_dict(args: tuple) -> str | None:
    return None if not args or (len(args) == 1 and isinstance(args[0], (Dict, dict))) else "takes one dict here"


def blocks_and_axes(args: tuple) -> str | None:
    if len(args) == 2 and type(args[0]) is tuple and isinstance(args[1], List):
        return None
    return "takes a tuple of blocks and a list of axes"


def empty_array(args: tuple) -> str | None:
    """numpy writes ``_reconstruct(ndarray, (0,), b'b')``: an empty array whose state comes after (a larger
    shape would be allocated before any state arrives)."""
    if (
        len(args) == 3
        and isinstance(args[0], Name)
        and args[0].where == "numpy.ndarray"
        and type(args[1]) is tuple
        and len(args[1]) == 1
        and _is_int(args[1][0])
        and args[1][0].value == 0
    ):
        return None
    return "may only make an empty numpy.ndarray (ndarray, (0,), b'b')"


def array_state(made: object, state: object) -> str | None:
    """An array's state ``(version, shape, dtype, is_fortran, data)``: data given as a list (an object array)
    must hold exactly one item per element (numpy reads past a shorter list: a crash)."""
    if type(state) is not tuple or len(state) != 5:
        return "is not numpy's (version, shape, dtype, is_fortran, data)"
    shape, dtype, raw = state[1], state[2], state[4]
    if not (isinstance(dtype, Made) and dtype.name.where == "numpy.dtype"):
        return f"gives an array the dtype {dtype!r}, not a numpy.dtype"
    if raw is OTHER or (isinstance(raw, Const) and type(raw.value) is bytes):
        return None  # bytes: numpy checks their length against the shape
    if not isinstance(raw, List):  # a list subclass, a dict, an object: numpy would read it as a list
        return f"gives an array its data as {raw!r}, neither bytes nor a plain list"
    if type(shape) is not tuple or not all(_is_int(n) and n.value >= 0 for n in shape):
        return "gives an object array a shape that is not a tuple of small integers"
    size = 1
    for n in shape:
        size *= n.value
    if size != raw.count:
        return f"gives an object array of {size} elements a list of {raw.count} items"
    return None


def dtype_args(args: tuple) -> str | None:
    """numpy writes ``dtype(code, False, True)``: a copy (``copy=False`` hands out numpy's shared builtin dtype,
    which a later BUILD would change for the whole process)."""
    import numpy as np

    if not (
        len(args) == 3
        and type(args[0]) is str
        and isinstance(args[1], Const)
        and args[1].value is False
        and isinstance(args[2], Const)
        and args[2].value is True
    ):
        return "takes numpy's (code, False, True) here"
    try:
        size = np.dtype(args[0]).itemsize
    except Exception as e:  # noqa: BLE001 - a code numpy does not parse
        return f"does not make a dtype of {args[0][:40]!r} ({type(e).__name__})"
    return _no_zero_size(size)


def _no_zero_size(itemsize: int) -> str | None:
    """An array of a zero-size dtype (V0) holds any number of elements in no bytes: numpy's length check holds
    for b"" whatever the shape, and what reads the elements (an index of them) makes one object each."""
    return None if itemsize > 0 else "makes a zero-size dtype (an array of it can claim any length)"


def _constant(value: object) -> object:
    if value is NONE:
        return None
    if isinstance(value, Const):
        return value.value
    if type(value) is str:
        return value
    if type(value) is tuple:
        return tuple(_constant(v) for v in value)
    raise ValueError(f"{value!r}, not a constant")


def dtype_state(made: object, state: object) -> str | None:
    """A dtype's state must be the one numpy itself writes for that dtype: a plain dtype (no fields, no
    subarray) whose flags and sizes are numpy's own. numpy keeps the flags a state gives, so an object dtype
    that says "no objects" (or bytes that say "objects") would let an array's bytes be read as pointers."""
    import numpy as np

    try:
        st = _constant(state)
    except ValueError as e:
        return f"holds {e}"
    if type(st) is not tuple or len(st) < 8 or st[2:5] != (None, None, None):
        return "is not a plain dtype's (no fields, no subarray)"
    try:
        dt = np.dtype(made.args[0], False, True)  # type: ignore[attr-defined]
        dt.__setstate__(st)
        canonical = np.dtype(dt.str)
    except Exception as e:  # noqa: BLE001 - any failure means numpy would not rebuild it either
        return f"does not make a dtype ({type(e).__name__})"
    if canonical.__reduce__()[1:] != dt.__reduce__()[1:]:
        return f"makes a {dt.str} dtype whose flags or sizes are not numpy's own"
    return _no_zero_size(dt.itemsize)


# the most rows a pickled RangeIndex may claim: it is lazy, but what reads its values makes them all
MAX_RANGE_ROWS = 1 << 22
_INDEX_MAKERS = frozenset({"pandas.core.indexes.base._new_Index", "pandas.core.indexes.datetimes._new_DatetimeIndex"})


def index_args(*classes: str) -> Callable[[tuple], str | None]:
    """``_new_Index(cls, d)`` calls ``cls(**d)``: ``cls`` one of ``classes``; ``d`` a dict of named values whose
    ``data`` is an array the pickle made (not an index, which a dtype conversion would materialise), and a
    RangeIndex at most MAX_RANGE_ROWS long (lazy, but read in full by whatever takes its values)."""
    check_class = names(*classes)

    def check(args: tuple) -> str | None:
        why = check_class(args)
        if why or len(args) != 2:
            return why or "takes (class, dict) here"
        d = args[1]
        if type(d) is not dict:
            return "takes a dict of named values here"
        data = d.get("data")
        if isinstance(data, Made) and data.name.where in _INDEX_MAKERS:
            return "may not build an index from another index"
        if args[0].where == "pandas.core.indexes.range.RangeIndex":
            bounds = [d.get(k, NONE) for k in ("start", "stop", "step")]
            if not all(b is NONE or _is_int(b) for b in bounds):
                return "takes small integers as a RangeIndex's bounds"
            start, stop, step = (None if b is NONE else b.value for b in bounds)
            if step == 0 or len(range(start or 0, stop or 0, step or 1)) > MAX_RANGE_ROWS:
                return f"may not make a RangeIndex of more than {MAX_RANGE_ROWS} rows"
        return None

    return check
