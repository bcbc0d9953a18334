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

from trace_ckpt.codec.allowlist import ENUM, EXCEPTION, NAME_ONLY, STATE, VALUE, Rule, one_arg
from trace_ckpt.codec.reconstructors import (
    a_dict,
    array_state,
    blocks_and_axes,
    dtype_args,
    dtype_state,
    empty_array,
    empty_iterable,
    factory,
    index_args,
    names,
    no_args,
)

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
    "collections.OrderedDict": Rule(call=True, state=True, items=True, check_args=no_args),
    "collections.Counter": Rule(call=True, state=True, items=True, check_args=a_dict),
    "collections.defaultdict": Rule(call=True, state=True, items=True, check_args=factory),
    "collections.deque": Rule(call=True, state=True, append=True, check_args=empty_iterable),
    # numpy: arrays, dtypes and scalars through numpy's own reconstructors (numpy 1 and 2 module paths)
    "numpy.ndarray": NAME_ONLY,
    "numpy.dtype": Rule(call=True, state=True, check_args=dtype_args, check_state=dtype_state),
    **{f"numpy.{n}": NAME_ONLY for n in _NUMPY_SCALARS},
    **{
        f"{m}.multiarray._reconstruct": Rule(call=True, state=True, check_args=empty_array, check_state=array_state)
        for m in ("numpy.core", "numpy._core")
    },
    **{f"{m}.multiarray.scalar": Rule(call=True) for m in ("numpy.core", "numpy._core")},
    **{f"{m}.numeric._frombuffer": Rule(call=True) for m in ("numpy.core", "numpy._core")},
    # pandas objects that Arrow could not hold, pickled with pandas' own reconstructors
    "pandas.core.frame.DataFrame": STATE,
    "pandas.core.series.Series": STATE,
    "pandas.core.internals.managers.BlockManager": Rule(call=True, state=True, check_args=blocks_and_axes),
    "pandas.core.internals.managers.SingleBlockManager": STATE,
    "pandas._libs.internals._unpickle_block": Rule(call=True),
    "pandas.core.internals.blocks.new_block": Rule(call=True),
    **dict.fromkeys(_INDEXES, NAME_ONLY),
    "pandas.core.indexes.base._new_Index": Rule(call=True, state=True, check_args=index_args(*_INDEXES)),
    "pandas.core.indexes.datetimes._new_DatetimeIndex": Rule(
        call=True, state=True, check_args=index_args("pandas.core.indexes.datetimes.DatetimeIndex")
    ),
    **dict.fromkeys(_BACKED_ARRAYS, NAME_ONLY),
    "pandas._libs.arrays.__pyx_unpickle_NDArrayBacked": Rule(call=True, state=True, check_args=names(*_BACKED_ARRAYS)),
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
