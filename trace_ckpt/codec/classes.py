"""The names a checkpoint's pickle may use, each with its rule (docs/security.md, "Classes").

Names only: nothing here imports rdagent, pandas or numpy. A name is resolved (and its module imported)
only when a graph names it. The list is what RD-Agent's Qlib traces (fin_factor, fin_model, fin_quant)
and the values inside them hold; a trace with other classes (your own scenario) needs them allowed per
call (``allow_classes`` / ``allow_modules``) or by setting (``TRACE_CKPT_ALLOW_CLASSES`` /
``TRACE_CKPT_ALLOW_MODULES``), and they get the STATE rule. ``tests/test_classes.py`` checks that every
name resolves here and that no listed class has a loading hook (``__new__``, ``__setstate__``, ``__del__``,
``__getattr__`` ...) that nobody has reviewed.
"""

from __future__ import annotations

from collections.abc import Callable

from trace_ckpt.codec.allowlist import ENUM, EXCEPTION, NAME_ONLY, STATE, VALUE, Rule, one_arg


def _names(*where: str) -> str | None:
    """A check that the first argument is one of the given names (a reconstructor that makes that class)."""
    wanted = frozenset(where)

    def check(args: tuple) -> str | None:
        from trace_ckpt.codec.opcodes import Name

        first = args[0] if args else None
        if isinstance(first, Name) and first.where in wanted:
            return None
        return f"may only rebuild {', '.join(sorted(wanted))}, not {first!r}"

    return check  # type: ignore[return-value]


def _factory(args: tuple) -> str | None:
    """defaultdict's default factory: none, or a builtin container or scalar type (it is called later)."""
    from trace_ckpt.codec.opcodes import NONE, Name

    if not args:
        return None
    f = args[0]
    if len(args) == 1 and (f is NONE or (isinstance(f, Name) and f.where in _FACTORIES)):
        return None
    return f"takes a builtin type as its default factory, not {f!r}"


def _empty_iterable(args: tuple) -> str | None:
    """deque's first argument: the empty tuple or list pickle writes (its items come by APPENDS)."""
    from trace_ckpt.codec.opcodes import List

    first = args[0] if args else ()
    if len(args) <= 2 and (first == () or (isinstance(first, List) and first.count == 0)):
        return None
    return f"takes an empty tuple or list here (its items come after), not {first!r}"


def _is_int(value: object) -> bool:
    """An integer constant of the pickle (a bool is not one)."""
    from trace_ckpt.codec.opcodes import Const

    return isinstance(value, Const) and type(value.value) is int


def _no_args(args: tuple) -> str | None:
    return None if not args else f"takes no arguments here (its items come after), not {len(args)}"


def _a_dict(args: tuple) -> str | None:
    from trace_ckpt.codec.opcodes import Dict

    return None if not args or (len(args) == 1 and isinstance(args[0], (Dict, dict))) else "takes one dict here"


def _blocks_and_axes(args: tuple) -> str | None:
    from trace_ckpt.codec.opcodes import List

    if len(args) == 2 and type(args[0]) is tuple and isinstance(args[1], List):
        return None
    return "takes a tuple of blocks and a list of axes"


def _empty_array(args: tuple) -> str | None:
    """numpy writes ``_reconstruct(ndarray, (0,), b'b')``: an empty array whose state comes after (a larger
    shape would be allocated before any state arrives)."""
    from trace_ckpt.codec.opcodes import Name

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


def _array_state(made: object, state: object) -> str | None:
    """An array's state ``(version, shape, dtype, is_fortran, data)``: data given as a list (an object array)
    must hold exactly one item per element (numpy reads past a shorter list: a crash)."""
    from trace_ckpt.codec.opcodes import OTHER, Const, List, Made

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


def _dtype_args(args: tuple) -> str | None:
    """numpy writes ``dtype(code, False, True)``: a copy (``copy=False`` hands out numpy's shared builtin dtype,
    which a later BUILD would change for the whole process)."""
    import numpy as np

    from trace_ckpt.codec.opcodes import Const

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
    from trace_ckpt.codec.opcodes import NONE, Const

    if value is NONE:
        return None
    if isinstance(value, Const):
        return value.value
    if type(value) is str:
        return value
    if type(value) is tuple:
        return tuple(_constant(v) for v in value)
    raise ValueError(f"{value!r}, not a constant")


def _dtype_state(made: object, state: object) -> str | None:
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


def _index_args(*classes: str) -> Callable[[tuple], str | None]:
    """``_new_Index(cls, d)`` calls ``cls(**d)``: ``cls`` one of ``classes``; ``d`` a dict of named values whose
    ``data`` is an array the pickle made (not an index, which a dtype conversion would materialise), and a
    RangeIndex at most MAX_RANGE_ROWS long (lazy, but read in full by whatever takes its values)."""
    check_class = _names(*classes)

    def check(args: tuple) -> str | None:
        from trace_ckpt.codec.opcodes import NONE, Made

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


_FACTORIES = frozenset(f"builtins.{t}" for t in ("list", "dict", "set", "int", "float", "str", "tuple", "bool"))


_INDEXES = (
    "pandas.core.indexes.base.Index",
    "pandas.core.indexes.range.RangeIndex",
    "pandas.core.indexes.multi.MultiIndex",
    "pandas.core.indexes.datetimes.DatetimeIndex",
    "pandas.core.indexes.timedeltas.TimedeltaIndex",
    "pandas.core.indexes.period.PeriodIndex",
    "pandas.core.indexes.interval.IntervalIndex",
)
# (Categorical is not listed: pandas trusts its codes, and codes past the categories read memory past them)
_BACKED_ARRAYS = (
    "pandas.core.arrays.datetimes.DatetimeArray",
    "pandas.core.arrays.timedeltas.TimedeltaArray",
    "pandas.core.arrays.period.PeriodArray",
    "pandas.core.arrays.string_.StringArray",
)
_BUILTIN_EXCEPTIONS = (
    "BaseException",
    "Exception",
    "ArithmeticError",
    "AssertionError",
    "AttributeError",
    "BufferError",
    "EOFError",
    "FileExistsError",
    "FileNotFoundError",
    "FloatingPointError",
    "ImportError",
    "IndexError",
    "InterruptedError",
    "IsADirectoryError",
    "KeyError",
    "KeyboardInterrupt",
    "LookupError",
    "MemoryError",
    "ModuleNotFoundError",
    "NameError",
    "NotADirectoryError",
    "NotImplementedError",
    "OSError",
    "OverflowError",
    "PermissionError",
    "ProcessLookupError",
    "RecursionError",
    "ReferenceError",
    "RuntimeError",
    "StopIteration",
    "SyntaxError",
    "SystemError",
    "TimeoutError",
    "TypeError",
    "UnboundLocalError",
    "UnicodeDecodeError",
    "UnicodeEncodeError",
    "UnicodeError",
    "ValueError",
    "ZeroDivisionError",
    "ConnectionError",
    "ConnectionResetError",
    "ConnectionRefusedError",
    "BrokenPipeError",
    "ChildProcessError",
    "Warning",
    "UserWarning",
    "RuntimeWarning",
    "DeprecationWarning",
    "FutureWarning",
)
_NUMPY_SCALARS = (
    "float64",
    "float32",
    "float16",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint64",
    "uint32",
    "uint16",
    "uint8",
    "bool",
    "str_",
    "bytes_",
    "datetime64",
    "timedelta64",
    "complex128",
    "complex64",
    "object_",
    "void",
)

# The STATE rule: RD-Agent's classes are plain objects, rebuilt with cls.__new__(cls) and their __dict__.
RDAGENT_CLASSES = (
    "rdagent.core.proposal.Trace",
    "rdagent.core.proposal.Hypothesis",
    "rdagent.core.proposal.ExperimentFeedback",
    "rdagent.core.proposal.HypothesisFeedback",
    "rdagent.core.evaluation.Feedback",
    "rdagent.core.experiment.Experiment",
    "rdagent.core.experiment.Task",
    "rdagent.core.experiment.FBWorkspace",
    "rdagent.core.experiment.RunningInfo",
    "rdagent.components.coder.CoSTEER.task.CoSTEERTask",
    "rdagent.components.coder.CoSTEER.evaluators.CoSTEERSingleFeedback",
    "rdagent.components.coder.CoSTEER.evaluators.CoSTEERSingleFeedbackDeprecated",
    "rdagent.components.coder.CoSTEER.evaluators.CoSTEERMultiFeedback",
    "rdagent.components.coder.factor_coder.factor.FactorTask",
    "rdagent.components.coder.factor_coder.factor.FactorFBWorkspace",
    "rdagent.components.coder.model_coder.model.ModelTask",
    "rdagent.components.coder.model_coder.model.ModelFBWorkspace",
    "rdagent.scenarios.qlib.experiment.factor_experiment.QlibFactorExperiment",
    "rdagent.scenarios.qlib.experiment.factor_experiment.QlibFactorScenario",
    "rdagent.scenarios.qlib.experiment.model_experiment.QlibModelExperiment",
    "rdagent.scenarios.qlib.experiment.model_experiment.QlibModelScenario",
    "rdagent.scenarios.qlib.experiment.quant_experiment.QlibFactorExperiment",
    "rdagent.scenarios.qlib.experiment.quant_experiment.QlibModelExperiment",
    "rdagent.scenarios.qlib.experiment.quant_experiment.QlibQuantScenario",
    "rdagent.scenarios.qlib.experiment.factor_from_report_experiment.QlibFactorFromReportScenario",
    "rdagent.scenarios.qlib.experiment.workspace.QlibFBWorkspace",
    "rdagent.scenarios.qlib.proposal.quant_proposal.QuantTrace",
    "rdagent.scenarios.qlib.proposal.quant_proposal.QlibQuantHypothesis",
    "rdagent.scenarios.qlib.proposal.bandit.EnvController",
    "rdagent.scenarios.qlib.proposal.bandit.LinearThompsonTwoArm",
    "rdagent.scenarios.qlib.proposal.bandit.Metrics",
)
# RD-Agent's exceptions (a feedback's ``exception``): their constructors only store their arguments.
RDAGENT_EXCEPTIONS = tuple(
    f"rdagent.core.exception.{n}"
    for n in (
        "WorkflowError",
        "FormatError",
        "CodeBlockParseError",
        "CoderError",
        "CodeFormatError",
        "CustomRuntimeError",
        "NoOutputError",
        "RunnerError",
        "KaggleError",
        "PolicyError",
        "EvaluatorDidNotTerminateError",
    )
)

RULES: dict[str, Rule] = {
    # builtins: containers and scalars the pickle writes natively appear only as values (a dtype's type,
    # defaultdict's factory); type(x) with one argument returns x's type (three would create a class)
    # (set, frozenset and range as callables would iterate or build what their argument says: set(range(10**10)))
    **{
        f"builtins.{n}": NAME_ONLY
        for n in (
            "list",
            "dict",
            "tuple",
            "str",
            "int",
            "float",
            "bool",
            "bytes",
            "bytearray",
            "object",
            "set",
            "frozenset",
            "range",
        )
    },
    **{f"builtins.{n}": VALUE for n in ("complex", "slice")},
    "builtins.type": Rule(call=True, check_args=one_arg),
    **{f"builtins.{n}": EXCEPTION for n in _BUILTIN_EXCEPTIONS},
    # the standard library's value types
    **{f"datetime.{n}": VALUE for n in ("date", "datetime", "time", "timedelta", "timezone")},
    "decimal.Decimal": VALUE,
    "uuid.UUID": STATE,
    "uuid.SafeUUID": ENUM,
    **{f"pathlib.{n}": VALUE for n in ("PosixPath", "PurePosixPath", "WindowsPath", "PureWindowsPath")},
    "collections.OrderedDict": Rule(call=True, state=True, items=True, check_args=_no_args),
    "collections.Counter": Rule(call=True, state=True, items=True, check_args=_a_dict),
    "collections.defaultdict": Rule(call=True, state=True, items=True, check_args=_factory),
    "collections.deque": Rule(call=True, state=True, append=True, check_args=_empty_iterable),
    # numpy: arrays, dtypes and scalars through numpy's own reconstructors (numpy 1 and 2 module paths)
    "numpy.ndarray": NAME_ONLY,
    "numpy.dtype": Rule(call=True, state=True, check_args=_dtype_args, check_state=_dtype_state),
    **{f"numpy.{n}": NAME_ONLY for n in _NUMPY_SCALARS},
    **{
        f"{m}.multiarray._reconstruct": Rule(call=True, state=True, check_args=_empty_array, check_state=_array_state)
        for m in ("numpy.core", "numpy._core")
    },
    **{f"{m}.multiarray.scalar": Rule(call=True) for m in ("numpy.core", "numpy._core")},
    **{f"{m}.numeric._frombuffer": Rule(call=True) for m in ("numpy.core", "numpy._core")},
    # pandas objects that Arrow could not hold, pickled with pandas' own reconstructors
    "pandas.core.frame.DataFrame": STATE,
    "pandas.core.series.Series": STATE,
    "pandas.core.internals.managers.BlockManager": Rule(call=True, state=True, check_args=_blocks_and_axes),
    "pandas.core.internals.managers.SingleBlockManager": STATE,
    "pandas._libs.internals._unpickle_block": Rule(call=True),
    "pandas.core.internals.blocks.new_block": Rule(call=True),
    **dict.fromkeys(_INDEXES, NAME_ONLY),
    "pandas.core.indexes.base._new_Index": Rule(call=True, state=True, check_args=_index_args(*_INDEXES)),
    "pandas.core.indexes.datetimes._new_DatetimeIndex": Rule(
        call=True, state=True, check_args=_index_args("pandas.core.indexes.datetimes.DatetimeIndex")
    ),
    **dict.fromkeys(_BACKED_ARRAYS, NAME_ONLY),
    "pandas._libs.arrays.__pyx_unpickle_NDArrayBacked": Rule(call=True, state=True, check_args=_names(*_BACKED_ARRAYS)),
    "pandas.core.dtypes.dtypes.DatetimeTZDtype": STATE,
    "pandas.core.dtypes.dtypes.PeriodDtype": VALUE,
    "pandas.core.arrays.string_.StringDtype": VALUE,
    **{
        f"pandas.core.arrays.{m}.{c}": STATE
        for m, c in (
            ("integer", "IntegerArray"),
            ("floating", "FloatingArray"),
            ("boolean", "BooleanArray"),
            ("integer", "Int64Dtype"),
            ("integer", "Int32Dtype"),
            ("floating", "Float64Dtype"),
            ("boolean", "BooleanDtype"),
        )
    },
    "pandas._libs.missing.NA": NAME_ONLY,
    "pandas._libs.tslibs.timestamps._unpickle_timestamp": Rule(call=True),
    "pandas._libs.tslibs.timedeltas._timedelta_unpickle": Rule(call=True),
    "pandas._libs.tslibs.nattype.__nat_unpickle": Rule(call=True),
    **{f"pandas._libs.tslibs.offsets.{n}": VALUE for n in ("Day", "BusinessDay")},
    # RD-Agent
    **dict.fromkeys(RDAGENT_CLASSES, STATE),
    "rdagent.core.experiment.ExperimentPlan": Rule(new=True, state=True, items=True),  # a dict subclass
    "rdagent.core.experiment.UserInstructions": Rule(new=True, state=True, append=True),  # a list subclass
    **dict.fromkeys(RDAGENT_EXCEPTIONS, EXCEPTION),
}
