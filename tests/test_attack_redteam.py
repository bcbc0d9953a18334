"""Red-team attacks on issue 13's defences (written by the attacker, not the defenders).

Each test builds a checksum-valid checkpoint (with the repo's own writer) or a sequence of commands
that tries one hole. A test that FAILS shows a hole in the current code; a passing test covers an
attack that was refused and that the defenders' own attack files do not try.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.forge import (
    EMPTY_DICT,
    MARK,
    REDUCE,
    SETITEMS,
    TUPLE1,
    TUPLE2,
    G,
    U,
    prog,
)
from tests.forge import forge_checkpoint as _forge
from trace_ckpt import CheckpointError, restore_trace
from trace_ckpt.codec.allowlist import Allowlist
from trace_ckpt.codec.opcodes import check_pickle

ROOT = Path(__file__).resolve().parents[1]


def INT(n: int) -> bytes:
    """LONG1: any int."""
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def RANGE(n: int) -> bytes:
    """``range(n)``: builtins.range is a VALUE, so the check lets the pickle call it."""
    return G("builtins range") + INT(n) + TUPLE1 + REDUCE


# --- memory measured in a child process (VmHWM), as tests/test_attack_bombs.py measures the Arrow bomb ---

_MEASURE = """
import json, sys
from trace_ckpt import restore_trace

def peak() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))

path, root = sys.argv[1:3]
try:  # imports warm: a missing file (a warm-up on the bomb itself would hide its growth)
    restore_trace(root + "/missing.tckpt", workspace_root=root + "/warm")
except BaseException:
    pass
before = peak()
try:
    restore_trace(path, workspace_root=root + "/ws")
    outcome = "loaded"
except BaseException as e:
    outcome = type(e).__name__ + ": " + str(e)[:300]
print(json.dumps({"outcome": outcome, "growth": peak() - before}))
"""


def _growth(tmp_path: Path, graph: bytes) -> dict:
    path = tmp_path / "bomb.tckpt"
    _forge(path, graph)
    assert path.stat().st_size < 4096
    run = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path), str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


# HOLE: builtins.set / frozenset / collections.deque / Counter are VALUE or MAPPING (call=True, no check of
# their arguments) and builtins.range is a VALUE, so a ~60-byte graph `set(range(N))` passes check_pickle and
# makes the C unpickler build N objects. With N = 10**10 the restore ate all memory of the machine and was
# SIGKILLed (exit 137) after ~100 s; here N = 10**7 (about 0.5-1 GB) so the test stays safe to run.
@pytest.mark.parametrize(
    "container", ["builtins set", "builtins frozenset", "collections deque", "collections Counter"]
)
def test_value_container_called_on_a_huge_range_is_refused_before_it_allocates(tmp_path: Path, container: str) -> None:
    graph = prog(G(container), RANGE(10**7), TUPLE1, REDUCE)
    result = _growth(tmp_path, graph)
    assert result["outcome"].split(":")[0] in ("CorruptCheckpointError", "UntrustedContentError"), result
    assert result["growth"] < 200 * 1024 * 1024, result


# --- numpy's allowed reconstructors, used the way their rules allow ---

RECONSTRUCT, NDARRAY = G("numpy._core.multiarray _reconstruct"), G("numpy ndarray")
TUPLE, TUPLE3, BUILD, EMPTY_LIST, NEWFALSE = b"t", b"\x87", b"b", b"]", b"\x89"
NEWOBJ_, EMPTY_TUPLE_ = b"\x81", b")"


def DTYPE(spec: str) -> bytes:
    return G("numpy dtype") + U(spec) + TUPLE1 + REDUCE


def _restore_in_child(tmp_path: Path, graph: bytes) -> subprocess.CompletedProcess:
    path = tmp_path / "evil.tckpt"
    _forge(path, graph)
    code = (
        "import sys\nfrom trace_ckpt import CheckpointError, restore_trace\n"
        "try:\n    restore_trace(sys.argv[1], workspace_root=sys.argv[2])\n"
        "except CheckpointError as e:\n    print('refused:', e)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, str(path), str(tmp_path / "ws")],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )


def _object_array_state(dtype: bytes, items: bytes) -> bytes:
    """``_reconstruct(ndarray, (0,), b'b')`` then BUILD with the state (1, (2000,), dtype, False, items), with the
    integer opcodes numpy's own pickles use (BININT1 / BININT2)."""
    return prog(
        RECONSTRUCT,
        NDARRAY,
        b"K\x00",
        TUPLE1,
        U("b"),
        TUPLE3,
        REDUCE,
        MARK,
        b"K\x01",
        b"M\xd0\x07",
        TUPLE1,
        dtype,
        NEWFALSE,
        items,
        TUPLE,
        BUILD,
    )


OBJECT_ARRAY_CRASHES = {
    "object, no items": _object_array_state(DTYPE("O"), EMPTY_LIST),
    "object, one item of 2000": _object_array_state(DTYPE("O"), EMPTY_LIST + MARK + b"N" + b"e"),
    "record with an object field": _object_array_state(
        G("numpy dtype") + MARK + U("a") + U("O") + TUPLE2 + b"l" + TUPLE1 + REDUCE, EMPTY_LIST
    ),
    # a listed list subclass (RD-Agent's UserInstructions, made with __new__ and no items) is a list to numpy
    # (PyList_Check) but not a plain list to the check's model of the state
    "object, items in a UserInstructions": _object_array_state(
        DTYPE("O"), G("rdagent.core.experiment UserInstructions") + EMPTY_TUPLE_ + NEWOBJ_
    ),
}


# HOLE (crash): _reconstruct's rule checks only its first argument (numpy.ndarray), and BUILD may give the array
# any state. An object array (or a record with an object field) of 2000 elements whose pickled item list is
# empty or short: numpy 2.4's ndarray.__setstate__ reads past the list and the reader dies with SIGSEGV
# (exit -11): no CheckpointError, no message. ~110 bytes of graph; restore, prune, merge and resume unpickle it.
# (The check now counts a plain list's items; the UserInstructions case still crashes.)
@pytest.mark.parametrize("graph", OBJECT_ARRAY_CRASHES.values(), ids=list(OBJECT_ARRAY_CRASHES))
def test_object_array_state_with_too_few_items_does_not_crash_the_reader(tmp_path: Path, graph: bytes) -> None:
    run = _restore_in_child(tmp_path, graph)
    assert run.returncode == 0, (run.returncode, run.stderr[-1000:])
    assert run.stdout.startswith("refused:"), run.stdout


# HOLE (crash), the CLI: `trace-ckpt prune` on the same file is killed by SIGSEGV instead of exiting 4.
def test_prune_cli_on_the_object_array_crash_exits_with_a_code(tmp_path: Path) -> None:
    path = tmp_path / "evil.tckpt"
    _forge(path, OBJECT_ARRAY_CRASHES["object, items in a UserInstructions"])
    run = subprocess.run(
        [str(ROOT / ".venv/bin/trace-ckpt"), "prune", str(path), str(tmp_path / "out.tckpt"), "--keep", "sota"],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert run.returncode == 4, (run.returncode, run.stderr[-1000:])
    assert not (tmp_path / "out.tckpt").exists()


# HOLE (memory): _reconstruct(ndarray, shape, dtype) allocates the whole array before any state arrives, and
# an object array is filled with None: shape (10**8,) costs 800 MB (10**10 would be 80 GB) from a graph of
# ~90 bytes. A subarray dtype ('O', (10**8,)) with shape (1,) does the same.
@pytest.mark.parametrize(
    "shape_dtype",
    [
        INT(10**8) + TUPLE1 + DTYPE("O"),
        INT(1) + TUPLE1 + G("numpy dtype") + U("O") + INT(10**8) + TUPLE1 + TUPLE2 + TUPLE1 + REDUCE,
    ],
    ids=["shape", "subarray-dtype"],
)
def test_numpy_reconstruct_of_a_huge_shape_is_refused_before_it_allocates(tmp_path: Path, shape_dtype: bytes) -> None:
    result = _growth(tmp_path, prog(RECONSTRUCT, NDARRAY, shape_dtype, TUPLE3, REDUCE))
    assert result["outcome"].split(":")[0] in ("CorruptCheckpointError", "UntrustedContentError"), result
    assert result["growth"] < 200 * 1024 * 1024, result


# --- a table's labels travel in the persistent id, which the class check does not look into ---


def _forge_with_table(path: Path, graph_of: Callable[[int], bytes]) -> None:
    """Like _forge, plus one honest Arrow table blob (a one-column frame); the graph gets the blob's number."""
    import pandas as pd

    from trace_ckpt.codec import tables

    data, _ = tables.to_arrow(pd.DataFrame({"a": ["x", "y"]}))
    _forge(path, lambda refs: graph_of(refs[0]), [data])


HUGE_LABELS = {
    "range": RANGE(10**8),
    "RangeIndex": (
        G("pandas.core.indexes.base _new_Index")
        + G("pandas.core.indexes.range RangeIndex")
        + EMPTY_DICT
        + MARK
        + U("start")
        + INT(0)
        + U("stop")
        + INT(10**8)
        + SETITEMS
        + TUPLE2
        + REDUCE
    ),
}


# HOLE (memory): a table reference is the persistent id ("t", serial, blob number, labels); BINPERSID's argument is
# not simulated, and tables.from_arrow trusts labels["columns"]: pd.Index(labels["columns"], dtype="float64") of a
# lazily huge range/RangeIndex (both buildable under the rules) materialises it before the length check fails.
# A 2.2 KB file grew the restore by 1.6 GB (10**8 labels); 10**10 would ask for 80 GB.
@pytest.mark.parametrize("columns", HUGE_LABELS.values(), ids=list(HUGE_LABELS))
def test_table_labels_from_the_pickle_cannot_allocate_gigabytes(tmp_path: Path, columns: bytes) -> None:
    def graph(ref: int) -> bytes:
        labels = (
            EMPTY_DICT
            + MARK
            + U("type")
            + U("frame")
            + U("columns")
            + columns
            + U("column_names")
            + b"N"
            + TUPLE1
            + U("multi")
            + NEWFALSE
            + U("columns_dtype")
            + U("float64")
            + SETITEMS
        )
        return b"\x80\x05" + MARK + U("t") + INT(0) + INT(ref) + labels + TUPLE + b"Q" + b"."

    path = tmp_path / "labels.tckpt"
    _forge_with_table(path, graph)
    assert path.stat().st_size < 4096
    run = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path), str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["outcome"].split(":")[0] == "CorruptCheckpointError", result
    assert "missing blob" not in result["outcome"], result  # the labels are refused, not the reference
    assert result["growth"] < 200 * 1024 * 1024, result


# --- a graph the class rules allow, shaped like a Trace, whose values are of the wrong kind ---

APPENDS_, NEWTRUE = b"e", b"\x88"


def OBJ(where: str, state_items: bytes) -> bytes:
    """``cls.__new__(cls)`` then BUILD with a dict of ``state_items`` (the STATE rule)."""
    return G(where) + EMPTY_TUPLE_ + NEWOBJ_ + EMPTY_DICT + MARK + state_items + SETITEMS + BUILD


def TRACE(exp: bytes, fb: bytes, parents: bytes = EMPTY_TUPLE_) -> bytes:
    """A Trace with one node (exp, fb): hist, dag_parent and idx2loop_id as check_trace_shape wants them."""
    return prog(
        OBJ(
            "rdagent.core.proposal Trace",
            U("hist")
            + EMPTY_LIST
            + MARK
            + exp
            + fb
            + TUPLE2
            + APPENDS_
            + U("dag_parent")
            + EMPTY_LIST
            + MARK
            + parents
            + APPENDS_
            + U("idx2loop_id")
            + EMPTY_DICT,
        )
    )


def EXP(extra: bytes = b"") -> bytes:
    return OBJ(
        "rdagent.core.experiment Experiment",
        U("based_experiments") + EMPTY_LIST + U("sub_workspace_list") + EMPTY_LIST + extra,
    )


ACCEPTED = OBJ("rdagent.core.proposal HypothesisFeedback", U("decision") + NEWTRUE)
BARE_FRAME = G("pandas.core.frame DataFrame") + EMPTY_TUPLE_ + NEWOBJ_  # DataFrame.__new__ with no state: no _mgr

WRONG_KINDS = {
    # str(workspace_path) of a DataFrame without state: AttributeError '_mgr' (restore, prune, merge)
    "workspace_path is a bare DataFrame": TRACE(
        EXP(U("experiment_workspace") + OBJ("rdagent.core.experiment FBWorkspace", U("workspace_path") + BARE_FRAME)),
        ACCEPTED,
    ),
    # dag_parent entry an int: TypeError in prune's/merge's parent walk
    "dag_parent entry is an int": TRACE(EXP(), ACCEPTED, INT(5)),
    # dag_parent entry a str: TypeError '<=' between int and str
    "dag_parent entry is a str": TRACE(EXP(), ACCEPTED, U("ab")),
    # getattr(hyp, "action") on a bare DataFrame: RecursionError in pandas' __getattr__
    "hypothesis is a bare DataFrame": TRACE(EXP(U("hypothesis") + BARE_FRAME), ACCEPTED),
    # sub_tasks an int: TypeError in summarize's factor list
    "sub_tasks is an int": TRACE(EXP(U("sub_tasks") + INT(3)), ACCEPTED),
}


# HOLE (foreign exceptions): check_trace_shape checks hist/dag_parent/idx2loop_id only; the values below pass the
# class rules, and prune and merge then die in summarize/_root/_workspace_keys with TypeError, AttributeError or
# RecursionError: CLI exit 1 "unexpected ..." instead of a documented CheckpointError exit code.
@pytest.mark.parametrize("command", ["prune", "merge"])
@pytest.mark.parametrize("graph", WRONG_KINDS.values(), ids=list(WRONG_KINDS))
def test_prune_and_merge_of_a_wrongly_shaped_trace_exit_with_a_code(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, graph: bytes, command: str
) -> None:
    from tests.clirun import run_cli

    path = tmp_path / "odd.tckpt"
    _forge(path, graph)
    out = tmp_path / "out.tckpt"
    args = ["prune", path, out, "--keep", "accepted"] if command == "prune" else ["merge", path, path, out]
    code, _, err = run_cli(capsys, *args)
    assert code != 1 and "unexpected" not in err, (code, err)


# HOLE (foreign exception, Python API): restore_trace of the same kind of file raises AttributeError (str() of a
# bare DataFrame held as a workspace_path, while computing the relocation), not a CheckpointError.
def test_restore_of_a_workspace_path_that_is_no_path_is_a_checkpoint_error(tmp_path: Path) -> None:
    path = tmp_path / "odd.tckpt"
    _forge(path, WRONG_KINDS["workspace_path is a bare DataFrame"])
    with pytest.raises(CheckpointError):
        restore_trace(path, workspace_root=tmp_path / "ws")


# --- numpy.dtype may be given any state (Rule(call=True, state=True)) ---

# dtype('V8') given the state (3, '|', None, ('a',), {'a': (dtype('O'), 0)}, 8, 1, 0): a record with an object field
# whose flags say "no objects" (numpy keeps the flags the state gives). An array of it is then built from 8 bytes of
# the file (bytes, not a list, so numpy's object-list path and the check's item count never apply), and any read of
# the field treats those bytes as a PyObject pointer.
VOID_WITH_HIDDEN_OBJECT = (
    DTYPE("V8")
    + MARK
    + b"K\x03"
    + U("|")
    + b"N"
    + U("a")
    + TUPLE1
    + EMPTY_DICT
    + MARK
    + U("a")
    + DTYPE("O")
    + b"K\x00"
    + TUPLE2
    + SETITEMS
    + b"K\x08"
    + b"K\x01"
    + b"K\x00"
    + TUPLE
    + BUILD
)
POINTER_ARRAY = (
    RECONSTRUCT
    + NDARRAY
    + b"K\x00"
    + TUPLE1
    + U("b")
    + TUPLE3
    + REDUCE
    + MARK
    + b"K\x01"
    + b"K\x01"
    + TUPLE1
    + VOID_WITH_HIDDEN_OBJECT
    + NEWFALSE
    + b"C\x08"
    + b"\x41" * 8
    + TUPLE
    + BUILD
)


# HOLE (crash; arbitrary pointer dereference): that array held as a workspace_path. restore_trace computes
# str(ws.workspace_path) for the relocation, numpy formats the field as an object and dereferences
# 0x4141414141414141: SIGSEGV (exit -11). The pointer is 8 bytes of the attacker's file.
def test_a_dtype_state_that_hides_an_object_field_does_not_crash_restore(tmp_path: Path) -> None:
    graph = TRACE(
        EXP(
            U("experiment_workspace") + OBJ("rdagent.core.experiment FBWorkspace", U("workspace_path") + POINTER_ARRAY)
        ),
        b"N",
    )
    run = _restore_in_child(tmp_path, graph)
    assert run.returncode == 0, (run.returncode, run.stderr[-1000:])
    assert run.stdout.startswith("refused:"), run.stdout


def _categorical_with_codes_past_its_categories() -> bytes:
    """The pickle body (no PROTO/FRAME/STOP) of pandas' own Categorical pickle (200 categories, so int16 codes)
    with one code patched to 32767: pandas' reconstructor (__pyx_unpickle_NDArrayBacked) never checks codes."""
    import pickle

    import numpy as np
    import pandas as pd

    data = pickle.dumps(pd.Categorical.from_codes([0, 1], categories=[f"c{i}" for i in range(200)]), protocol=5)
    codes = np.array([0, 1], dtype=np.int16).tobytes()
    assert data.count(codes) == 1 and data[2] == 0x95 and data.endswith(b".")
    at = data.find(codes)
    data = data[:at] + np.array([0, 32767], dtype=np.int16).tobytes() + data[at + len(codes) :]
    return data[11:-1]  # PROTO (2 bytes) and FRAME (9 bytes) off the front, STOP off the end; its memo starts at 0


# HOLE (crash; out-of-bounds read): a Categorical whose code points 32767 entries past its 200 categories, held as a
# workspace_path. Every name and call is allowed; restore_trace's str(ws.workspace_path) makes pandas take the
# categories at those codes without a bounds check: SIGSEGV (exit -11).
def test_a_categorical_with_codes_past_its_categories_does_not_crash_restore(tmp_path: Path) -> None:
    graph = TRACE(
        EXP(
            U("experiment_workspace")
            + OBJ(
                "rdagent.core.experiment FBWorkspace",
                U("workspace_path") + _categorical_with_codes_past_its_categories(),
            )
        ),
        b"N",
    )
    run = _restore_in_child(tmp_path, graph)
    assert run.returncode == 0, (run.returncode, run.stderr[-1000:])
    assert run.stdout.startswith("refused:"), run.stdout


# HOLE (foreign exception): hdf.py admits complex numbers ("biufcS") as factor values, but Parquet cannot hold them:
# export-factors of a checkpoint whose result.h5 holds complex128 values ends in pyarrow's ArrowNotImplementedError,
# CLI exit 1 "unexpected ...", instead of a one-line NothingToExportError/CorruptCheckpointError.
def test_export_of_complex_factor_values_exits_with_a_code(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import numpy as np
    import pandas as pd

    from tests.builders import build_trace, data_folder
    from tests.clirun import run_cli
    from trace_ckpt import save_trace

    trace = build_trace([(), (0,)], [True, True], data_folder(tmp_path / "data"))
    h5 = trace.hist[1][0].sub_workspace_list[0].workspace_path / "result.h5"
    values = pd.read_hdf(h5).astype(np.complex128)
    h5.unlink()
    values.to_hdf(h5, key="data")
    save_trace(trace, tmp_path / "c.tckpt")
    code, _, err = run_cli(capsys, "export-factors", tmp_path / "c.tckpt", tmp_path / "o.parquet")
    assert code != 1 and "unexpected" not in err, (code, err)
    assert not (tmp_path / "o.parquet").exists()


def RANGE_INDEX(n: int) -> bytes:
    """``_new_Index(RangeIndex, {"start": 0, "stop": n})``: lazy, a few bytes whatever n is."""
    return (
        G("pandas.core.indexes.base _new_Index")
        + G("pandas.core.indexes.range RangeIndex")
        + EMPTY_DICT
        + MARK
        + U("start")
        + INT(0)
        + U("stop")
        + INT(n)
        + SETITEMS
        + TUPLE2
        + REDUCE
    )


def NEW_INDEX(cls: str, items: bytes) -> bytes:
    return G("pandas.core.indexes.base _new_Index") + G(cls) + EMPTY_DICT + MARK + items + SETITEMS + TUPLE2 + REDUCE


INDEX_BOMBS = {
    # Index(RangeIndex(10**8), dtype="float64"): 1.6 GB
    "Index float64": NEW_INDEX(
        "pandas.core.indexes.base Index", U("data") + RANGE_INDEX(10**8) + U("dtype") + U("float64")
    ),
    # Index(RangeIndex(10**7), dtype=object): 10**7 Python ints, 0.5 GB
    "Index object": NEW_INDEX(
        "pandas.core.indexes.base Index", U("data") + RANGE_INDEX(10**7) + U("dtype") + U("object")
    ),
    # _new_PeriodIndex: PeriodArray(RangeIndex(10**8)): 0.8 GB
    "PeriodIndex": NEW_INDEX(
        "pandas.core.indexes.period PeriodIndex", U("data") + RANGE_INDEX(10**8) + U("freq") + U("D")
    ),
}


# HOLE (memory): _new_Index's rule checks its first argument (an index class) only; its dict goes to cls.__new__(**d).
# A lazy RangeIndex of 10**8 (itself made by _new_Index) as `data` with another dtype, or as a PeriodIndex's data,
# is materialised in full: 0.5-1.6 GB from a file of ~1 KB (10**10 would ask for 80 GB).
@pytest.mark.parametrize("graph", INDEX_BOMBS.values(), ids=list(INDEX_BOMBS))
def test_new_index_of_a_huge_range_is_refused_before_it_allocates(tmp_path: Path, graph: bytes) -> None:
    result = _growth(tmp_path, prog(graph))
    assert result["outcome"].split(":")[0] in ("CorruptCheckpointError", "UntrustedContentError"), result
    assert result["growth"] < 200 * 1024 * 1024, result


def _series_of_a_categorical_with_codes_past_its_categories() -> bytes:
    """pandas' own pickle body of a Series (index IC, x) over a 200-category Categorical, both codes set to 32767."""
    import pickle

    import numpy as np
    import pandas as pd

    cat = pd.Categorical.from_codes([0, 1], categories=[f"c{i}" for i in range(200)])
    data = pickle.dumps(pd.Series(cat, index=["IC", "x"]), protocol=5)
    codes = np.array([0, 1], dtype=np.int16).tobytes()
    assert data.count(codes) == 1 and data[2] == 0x95 and data.endswith(b".")
    at = data.find(codes)
    data = data[:at] + np.array([32767, 32767], dtype=np.int16).tobytes() + data[at + len(codes) :]
    return data[11:-1]


# HOLE (crash; out-of-bounds read), after the trace shape check: an accepted node whose running_info.result is that
# Series. The shape check does not look into running_info.result; restore loads it fine, but prune and merge summarise
# the kept nodes (_metrics: result.items(), float(v)) and pandas reads past the categories: SIGSEGV (exit -11).
@pytest.mark.parametrize("command", ["prune", "merge"])
def test_a_result_series_with_codes_past_its_categories_does_not_crash_prune_or_merge(
    tmp_path: Path, command: str
) -> None:
    exp = OBJ(
        "rdagent.core.experiment Experiment",
        U("based_experiments")
        + EMPTY_LIST
        + U("sub_workspace_list")
        + EMPTY_LIST
        + U("sub_tasks")
        + EMPTY_LIST
        + U("running_info")
        + OBJ(
            "rdagent.core.experiment RunningInfo",
            U("result") + _series_of_a_categorical_with_codes_past_its_categories(),
        ),
    )
    path, out = tmp_path / "evil.tckpt", tmp_path / "out.tckpt"
    _forge(path, TRACE(exp, ACCEPTED))
    args = ["prune", path, out, "--keep", "accepted"] if command == "prune" else ["merge", path, path, out]
    run = subprocess.run(
        [str(ROOT / ".venv/bin/trace-ckpt"), *map(str, args)],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert run.returncode not in (-11, 1), (run.returncode, run.stderr[-1000:])


_PRUNE_AND_SHOW_METRICS = """
import json, sys
from trace_ckpt import CheckpointError, prune, read_manifest
try:
    prune(sys.argv[1], sys.argv[2], keep="accepted")
except CheckpointError as e:
    print(json.dumps({"refused": str(e)}))
else:
    print(json.dumps({"metrics": read_manifest(sys.argv[2]).nodes[0].metrics}))
"""


# HOLE (memory disclosure into an output): the same Series, but over 200 float categories (c + 0.5) with codes 250
# and 260, just past the categories' buffer. prune does not crash: it reads 16 bytes of its own heap as floats and
# writes them into the pruned checkpoint's manifest as the node's metrics (seen: IC = 9.6e-309, 4.6e-310 - heap
# pointers), where `inspect` shows them to anyone. Whoever prunes or merges a hostile file publishes process memory.
def test_prune_does_not_write_process_memory_into_the_manifest(tmp_path: Path) -> None:
    import pickle

    import numpy as np
    import pandas as pd

    categories = [i + 0.5 for i in range(200)]
    data = pickle.dumps(
        pd.Series(pd.Categorical.from_codes([0, 1], categories=categories), index=["IC", "x"]), protocol=5
    )
    codes = np.array([0, 1], dtype=np.int16).tobytes()
    assert data.count(codes) == 1 and data[2] == 0x95
    at = data.find(codes)
    data = data[:at] + np.array([250, 260], dtype=np.int16).tobytes() + data[at + len(codes) :]
    exp = OBJ(
        "rdagent.core.experiment Experiment",
        U("based_experiments")
        + EMPTY_LIST
        + U("sub_workspace_list")
        + EMPTY_LIST
        + U("sub_tasks")
        + EMPTY_LIST
        + U("running_info")
        + OBJ("rdagent.core.experiment RunningInfo", U("result") + data[11:-1]),
    )
    path = tmp_path / "evil.tckpt"
    _forge(path, TRACE(exp, ACCEPTED))
    run = subprocess.run(
        [sys.executable, "-c", _PRUNE_AND_SHOW_METRICS, str(path), str(tmp_path / "out.tckpt")],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert run.returncode == 0, (run.returncode, run.stderr[-1000:])
    result = json.loads(run.stdout.strip().splitlines()[-1])
    leaked = {k: v for k, v in result.get("metrics", {}).items() if v not in categories}
    assert not leaked, result


def _pickle_body(obj: object) -> bytes:
    """What pickle writes for ``obj`` without PROTO/FRAME and STOP (its memo starts at 0: put it first)."""
    import pickle

    data = pickle.dumps(obj, protocol=5)
    assert data[2] == 0x95 and data.endswith(b".")
    return data[11:-1]


def _zero_size_array(n: int) -> bytes:
    """numpy's own pickle of np.empty(n, dtype="V0"): n elements of 0 bytes each, so its data is b"" whatever n is."""
    import numpy as np

    return _pickle_body(np.empty(n, dtype="V0"))


# HOLE (memory), after the fix of _reconstruct/_new_Index: an array of a zero-size dtype (V0) may have any shape, since
# numpy's length check (shape x itemsize == len(data)) holds for b"". Its pickle is numpy's own (~200 bytes). As an
# index's data, pandas builds one value per element: Index(data, dtype=object) is 10**8 pointers (0.8 GB, growth
# measured 805 MB from a 231-byte graph), Index(data) 1.6 GB before it fails; shape 2**31-1 would ask for 17-34 GB.
@pytest.mark.parametrize("dtype", [U("object"), b""], ids=["Index object", "Index"])
def test_an_index_over_a_zero_size_array_of_many_elements_is_refused(tmp_path: Path, dtype: bytes) -> None:
    items = U("data") + _zero_size_array(10**8) + (U("dtype") + dtype if dtype else b"")
    result = _growth(tmp_path, prog(NEW_INDEX("pandas.core.indexes.base Index", items)))
    assert result["outcome"].split(":")[0] in ("CorruptCheckpointError", "UntrustedContentError"), result
    assert result["growth"] < 200 * 1024 * 1024, result


# --- inspect --plot reads only the manifest, but draws what it says ---


def _forge_manifest(path: Path, nodes: list) -> None:
    """A checkpoint whose manifest holds ``nodes`` (NodeSummary), every checksum valid."""
    from datetime import datetime, timezone

    from tests.reseal import seal, split
    from trace_ckpt.codec.blobs import BlobPacker
    from trace_ckpt.codec.files import FilesIndex
    from trace_ckpt.format.container import FORMAT_VERSION, ContainerWriter
    from trace_ckpt.format.manifest import Manifest, Producer
    from trace_ckpt.format.records import to_json

    with open(path, "wb") as f:
        w = ContainerWriter(f)
        BlobPacker(w).finish()
        w.add_bytes("graph", "graph", b"\x80\x05N.")
        w.add_bytes("files", "files", FilesIndex().to_bytes())
        manifest = Manifest(
            format_version=FORMAT_VERSION,
            created_at=datetime.now(timezone.utc),
            producer=Producer(trace_ckpt="0", python="3"),
            trace_class="x",
        )
        w.finish(manifest)
    # the writer refuses what a reader refuses: an attacker writes the JSON itself
    body, doc = split(path.read_bytes())
    doc["nodes"] = to_json(nodes)
    path.write_bytes(seal(body, doc))


def _plot_in_child(tmp_path: Path, nodes: list) -> subprocess.CompletedProcess | None:
    path = tmp_path / "m.tckpt"
    _forge_manifest(path, nodes)
    try:
        return subprocess.run(
            [str(ROOT / ".venv/bin/trace-ckpt"), "inspect", str(path), "--plot", str(tmp_path / "p.png")],
            check=False,
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
    except subprocess.TimeoutExpired:
        return None


# HOLE (foreign exception): metrics of +-1e308 (valid JSON floats, valid for the manifest's schema) make matplotlib's
# tick computation fail: `inspect --plot` ends in "unexpected ValueError: arange: cannot compute length", exit 1.
def test_inspect_plot_of_extreme_metrics_exits_with_a_code(tmp_path: Path) -> None:
    from trace_ckpt.format.manifest import NodeSummary

    run = _plot_in_child(
        tmp_path,
        [
            NodeSummary(index=0, experiment_class="x", metrics={"IC": 1e308}),
            NodeSummary(index=1, parents=[0], experiment_class="x", metrics={"IC": -1e308}),
        ],
    )
    assert run is not None
    assert run.returncode != 1 and "unexpected" not in run.stderr, (run.returncode, run.stderr[-500:])


# HOLE (hang): a node index of 10**30 with a child whose parent it is: the DAG arc from x=5 to x=10**30 is drawn dashed,
# and `inspect --plot` did not finish within 60 s (a few hundred bytes of manifest; inspect without --plot is fine).
def test_inspect_plot_of_a_far_node_index_finishes(tmp_path: Path) -> None:
    from trace_ckpt.format.manifest import NodeSummary

    run = _plot_in_child(
        tmp_path,
        [
            NodeSummary(index=10**30, experiment_class="x", metrics={"IC": 1.0}),
            NodeSummary(index=5, parents=[10**30], experiment_class="x", metrics={"IC": 2.0}),
        ],
    )
    assert run is not None, "inspect --plot did not finish in 120 s"
    assert run.returncode != 1 and "unexpected" not in run.stderr, (run.returncode, run.stderr[-500:])


# --- attacks that were refused (coverage the defenders' files lack) ---


# HELD: NEWOBJ_EX with an empty args tuple but a FILLED kwargs dict: the abstract stack once told only "a dict", so
# cls.__new__(cls, **kwargs) of a STATE class (any user-allowed class with its own __new__) got file-chosen arguments.
def test_newobj_ex_with_keyword_arguments_is_refused_for_a_state_class() -> None:
    graph = prog(G("rdagent.core.proposal Trace"), EMPTY_TUPLE_, EMPTY_DICT, MARK, U("k"), U("v"), SETITEMS, b"\x92")
    assert check_pickle(graph, Allowlist().rule) is not None


# HELD: numpy's scalar(dtype('O'), x) returns x itself, so a state built by it is a tuple the check cannot see; used as
# BUILD's (dict, slots) state it would setattr __class__ on an RD-Agent object. numpy 2.4 refuses object scalars.
def test_an_object_scalar_passthrough_as_slot_state_does_not_load(tmp_path: Path) -> None:
    graph = prog(
        G("rdagent.core.proposal Hypothesis"),
        EMPTY_TUPLE_,
        NEWOBJ_,
        G("numpy._core.multiarray scalar"),
        DTYPE("O"),
        b"N",
        EMPTY_DICT,
        MARK,
        U("__class__"),
        G("rdagent.core.proposal Trace"),
        SETITEMS,
        TUPLE2,
        TUPLE2,
        REDUCE,
        BUILD,
    )
    path = tmp_path / "evil.tckpt"
    _forge(path, graph)
    with pytest.raises(CheckpointError):
        restore_trace(path, workspace_root=tmp_path / "ws")


# HOLE (trust laundering): prune and merge sign what they write with the configured key, whatever signed their input.
# An unsigned checkpoint from elsewhere (reading it only logs a warning) pruned or merged on a machine with a signing
# key comes out "signed, signature ok"; `resume` then trusts it without --trust and runs its factor.py and feature code.
@pytest.mark.parametrize("command", ["prune", "merge"])
def test_prune_or_merge_of_an_unsigned_file_does_not_make_resume_trust_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    from tests.builders import build_trace, data_folder
    from trace_ckpt import UntrustedContentError, merge, prune, save_trace
    from trace_ckpt.rdagent.resume import check_trust

    monkeypatch.delenv("TRACE_CKPT_SIGNING_KEY", raising=False)
    foreign = tmp_path / "foreign.tckpt"
    save_trace(build_trace([(), (0,)], [True, True], data_folder(tmp_path / "data")), foreign)  # unsigned
    monkeypatch.setenv("TRACE_CKPT_SIGNING_KEY", "this-machines-own-signing-key-0123456789abcdef")
    with pytest.raises(UntrustedContentError):
        check_trust(foreign, None)  # resume refuses the foreign file itself
    out = tmp_path / "out.tckpt"
    if command == "prune":
        prune(foreign, out, keep="accepted")
    else:
        merge([foreign, foreign], out)
    with pytest.raises(UntrustedContentError):
        check_trust(out, None)
