"""Loading never runs code the file chose: only allowlisted classes and known reconstructors resolve."""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.builders import ALLOW, build_trace, data_folder
from tests.forge import forge_checkpoint
from trace_ckpt import CorruptCheckpointError, UntrustedContentError, restore_trace, save_trace
from trace_ckpt.codec.allowlist import Allowlist
from trace_ckpt.codec.opcodes import unsafe_opcode


class _Call:
    """Pickles as ``func(*args)``: what an attacker puts in a pickle."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize(
    "payload",
    [
        lambda marker: _Call(os.system, f"touch {marker}"),
        lambda marker: _Call(eval, f"open({str(marker)!r}, 'w').write('x')"),
        lambda marker: _Call(exec, f"open({str(marker)!r}, 'w').write('x')"),
        lambda marker: _Call(__import__("subprocess").Popen, ["touch", str(marker)]),
    ],
    ids=["os.system", "eval", "exec", "subprocess.Popen"],
)
def test_hostile_pickle_is_refused_and_never_runs(tmp_path: Path, payload) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.tckpt"
    forge_checkpoint(path, pickle.dumps(payload(marker), protocol=5))
    with pytest.raises(UntrustedContentError, match="not on the allowlist"):
        restore_trace(path, workspace_root=tmp_path / "ws")
    assert not marker.exists()


# Small pickles that make CPython's C unpickler allocate far more than they hold. The first one is what
# the fuzz test found: a LONG_BINPUT memo index of ~0.8e9 made 3.11's unpickler allocate and zero 12 GB
# (CPython gh-115952). An index of 2**31 - 1 asks for 34 GB (a table of twice the index, 8 bytes each).
MEMORY_BOMBS = {
    "LONG_BINPUT index": b"\x80\x05]r" + struct.pack("<I", 779_317_097) + b".",
    "LONG_BINPUT 2**31": b"\x80\x05]r\xff\xff\xff\x7f.",
    "PUT index": b"(lp2000000000\n.",
    "BYTEARRAY8 length": b"\x80\x05\x96" + struct.pack("<Q", 1 << 34) + b"abc.",
    "BINBYTES8 length": b"\x80\x05\x8e" + struct.pack("<Q", 1 << 34) + b"abc.",
    "FRAME length": b"\x80\x05\x95" + struct.pack("<Q", 1 << 40) + b"N.",
}


@pytest.mark.parametrize("bomb", MEMORY_BOMBS, ids=list(MEMORY_BOMBS))
def test_memory_bomb_pickles_never_reach_the_unpickler(tmp_path: Path, bomb: str) -> None:
    path = tmp_path / "bomb.tckpt"
    forge_checkpoint(path, MEMORY_BOMBS[bomb])
    with pytest.raises(CorruptCheckpointError, match="the graph is damaged or crafted") as e:
        restore_trace(path, workspace_root=tmp_path / "ws")
    assert "\n" not in str(e.value)


_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
    | st.binary().map(bytearray)
    | st.integers(-(2**200), 2**200),
    lambda inner: (
        st.lists(inner)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(), inner)
        | st.frozensets(st.integers())
        | st.sets(st.text())
    ),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(_values, st.integers(0, pickle.HIGHEST_PROTOCOL))
def test_the_opcode_scan_passes_every_pickle_pickle_writes(value: object, protocol: int) -> None:
    shared = [value, value]  # memo references too
    assert unsafe_opcode(pickle.dumps(shared, protocol=protocol)) is None
    if protocol == 5:  # the pure-Python writer (dill's base) at the protocol a graph is written with; below it,
        # with dill imported, it writes frozenset() or bytearray() as a call of a type dill looks up at load time
        # (a call of a computed value, which the check refuses)
        assert unsafe_opcode(pickle._dumps(shared, protocol=protocol)) is None


def test_the_opcode_scan_passes_real_checkpoint_graphs(tmp_path: Path) -> None:
    """The graph of a saved trace (RD-Agent objects, blobs, tables) loads, so the scan passed it."""
    trace = build_trace([(), (0,), (1,)], [True, False, True], data_folder(tmp_path / "data"))
    save_trace(trace, tmp_path / "t.tckpt")
    assert len(restore_trace(tmp_path / "t.tckpt", workspace_root=tmp_path / "ws").hist) == 3


def _global_pickle(module: str, name: str) -> bytes:
    """A pickle that only resolves ``module.name`` (protocol 0 GLOBAL opcode) and returns it."""
    return f"c{module}\n{name}\n.".encode()


@pytest.mark.parametrize(
    "module, name",
    [
        ("pathlib", "os.system"),  # a function reached through an allowed module
        ("rdagent.utils.env", "subprocess.Popen"),  # a dangerous class re-exported by an allowed module
        ("rdagent.core.proposal", "Trace.__init__.__globals__"),  # dunder traversal
        ("builtins", "getattr"),
        ("builtins", "__import__"),
        ("numpy.testing._private.utils", "runstring"),
        ("pandas", "eval"),
        ("rdagent.utils.env", "LocalEnv.run"),
    ],
)
def test_refused_names(tmp_path: Path, module: str, name: str) -> None:
    path = tmp_path / "evil.tckpt"
    forge_checkpoint(path, _global_pickle(module, name))
    with pytest.raises(UntrustedContentError) as e:
        restore_trace(path, workspace_root=tmp_path / "ws")
    assert module in str(e.value)


def test_allowlist_resolves_what_traces_need() -> None:
    allow = Allowlist()
    from rdagent.core.proposal import Trace

    assert allow.resolve("rdagent.core.proposal", "Trace") is Trace
    assert allow.resolve("pathlib", "PosixPath") is type(Path("/"))
    assert allow.resolve("builtins", "ValueError") is ValueError
    # protocol 0/1's reconstructor calls base.__new__ and base.__init__ with what the file says: never needed
    # by a protocol-5 checkpoint, so not listed
    with pytest.raises(UntrustedContentError, match="copyreg._reconstructor"):
        allow.resolve("copyreg", "_reconstructor")


def test_own_modules_need_allow_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trace = build_trace([()], [True], data_folder(tmp_path / "data"), write_outputs=False)
    save_trace(trace, tmp_path / "run.tckpt")
    monkeypatch.delenv("TRACE_CKPT_ALLOW_MODULES")
    with pytest.raises(UntrustedContentError, match=r"tests\.builders\.TinyScenario.*--allow-module tests"):
        restore_trace(tmp_path / "run.tckpt", workspace_root=tmp_path / "ws")
    restored = restore_trace(tmp_path / "run.tckpt", workspace_root=tmp_path / "ws", allow_modules=ALLOW)
    assert len(restored.hist) == 1


def test_allow_modules_from_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trace = build_trace([()], [True], data_folder(tmp_path / "data"), write_outputs=False)
    save_trace(trace, tmp_path / "run.tckpt")
    monkeypatch.delenv("TRACE_CKPT_ALLOW_MODULES")
    with pytest.raises(UntrustedContentError):
        restore_trace(tmp_path / "run.tckpt", workspace_root=tmp_path / "ws0")
    monkeypatch.setenv("TRACE_CKPT_ALLOW_MODULES", '["tests"]')
    assert len(restore_trace(tmp_path / "run.tckpt", workspace_root=tmp_path / "ws").hist) == 1


def test_pandas_kept_in_the_pickle_still_loads_under_the_allowlist(tmp_path: Path) -> None:
    trace = build_trace([()], [True], data_folder(tmp_path / "data"), write_outputs=False)
    odd = pd.Series([{"nested": 1}, [2, 3], "text"], index=["a", "b", "c"])
    trace.hist[0][0].running_info.result = odd
    m = save_trace(trace, tmp_path / "run.tckpt")
    assert m.pandas_pickled == 1
    restored = restore_trace(tmp_path / "run.tckpt", workspace_root=tmp_path / "ws", allow_modules=ALLOW)
    pd.testing.assert_series_equal(restored.hist[0][0].result, odd)


class _Foreign:
    """An object of a module (tests.test_security) the default allowlist does not know."""


def test_save_refuses_what_a_load_would_refuse_and_names_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace = build_trace([(), (0,)], [True, True], data_folder(tmp_path / "data"), write_outputs=False)
    monkeypatch.setenv("TRACE_CKPT_ALLOW_MODULES", '["tests.builders"]')
    trace.hist[1][0].sub_workspace_list[0].target_task.extra = _Foreign()
    (tmp_path / "run.tckpt").write_bytes(b"previous")
    with pytest.raises(UntrustedContentError) as e:
        save_trace(trace, tmp_path / "run.tckpt")
    msg = str(e.value)
    assert "trace.hist[1][0].sub_tasks[0].extra" in msg  # the same task object, reached first
    assert "tests.test_security._Foreign" in msg and "--allow-module tests" in msg
    assert (tmp_path / "run.tckpt").read_bytes() == b"previous"
    save_trace(trace, tmp_path / "run.tckpt", allow_modules=["tests.test_security"])  # the user vouches for it


def test_save_refuses_a_function_value(tmp_path: Path) -> None:
    trace = build_trace([()], [True], data_folder(tmp_path / "data"), write_outputs=False)
    trace.hist[0][0].plan = {"hook": os.path.join}
    with pytest.raises(UntrustedContentError, match="posixpath.join"):
        save_trace(trace, tmp_path / "run.tckpt")
