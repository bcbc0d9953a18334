"""check_trace_shape: a loaded graph that is a Trace with values of the wrong kind is a CorruptCheckpointError.

Each case takes a real trace (tests/builders.py: RD-Agent's own classes) and damages one field the way a
crafted, checksum-valid checkpoint could; the check names the field in one line. The old check looked at
hist, dag_parent and idx2loop_id only, so every case below passed it (and crashed a reader later).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.builders import build_trace, data_folder
from trace_ckpt import restore_trace, save_trace
from trace_ckpt.errors import CorruptCheckpointError
from trace_ckpt.rdagent.shape import check_trace_shape

_DATA = data_folder(Path(os.environ["WORKSPACE_PATH"]).parent / "shape-data")  # in the session's temp folder


class FsPath:
    """An os.PathLike that is no path RD-Agent makes: str() of it is not the folder."""

    def __fspath__(self) -> str:
        return "/tmp/elsewhere"


class Holder:
    """Something outside hist (a knowledge base, say) that holds a workspace."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws


def _trace(quant: bool = True) -> Any:
    # node 1 is accepted, so node 2's based_experiments hold [baseline, node 1]
    return build_trace([(), (0,), (1,)], [False, True, False], _DATA, quant=quant, write_outputs=False)


def _exp(t: Any, i: int = 2) -> Any:
    return t.hist[i][0]


def _ws(t: Any, i: int = 2) -> Any:
    return t.hist[i][0].sub_workspace_list[0]


def _set(obj: Any, name: str, value: Any) -> None:
    obj.__dict__[name] = value  # as BUILD sets a state: no property, no __setattr__


# field -> (damage, the start of what the message says is wrong)
CASES: dict[str, tuple[Callable[[Any], None], str]] = {
    "dag_parent entry an int": (lambda t: t.dag_parent.__setitem__(1, 5), "dag_parent[1] is a int, not a tuple"),
    "dag_parent entry a str": (lambda t: t.dag_parent.__setitem__(1, "ab"), "dag_parent[1] is a str, not a tuple"),
    "dag_parent index a str": (lambda t: t.dag_parent.__setitem__(1, ("a",)), "dag_parent[1] holds a str"),
    "dag_parent index a bool": (lambda t: t.dag_parent.__setitem__(1, (True,)), "dag_parent[1] holds a bool"),
    "dag_parent index out of range": (lambda t: t.dag_parent.__setitem__(1, (7,)), "dag_parent[1] holds 7"),
    "dag_parent index negative": (lambda t: t.dag_parent.__setitem__(1, (-1,)), "dag_parent[1] holds -1"),
    # 0 -> 1 -> 0: RD-Agent's Trace.get_parents would follow it for ever
    "dag_parent cycle": (lambda t: t.dag_parent.__setitem__(0, (1,)), "dag_parent[0] holds 1"),
    "idx2loop_id key a str": (lambda t: t.idx2loop_id.__setitem__("0", 0), "idx2loop_id has the key a str"),
    "idx2loop_id key out of range": (lambda t: t.idx2loop_id.__setitem__(9, 0), "idx2loop_id has the key 9"),
    "idx2loop_id value a list": (lambda t: t.idx2loop_id.__setitem__(0, [0]), "idx2loop_id[0] is a list, not an int"),
    "current_selection a list": (lambda t: _set(t, "current_selection", [0]), "current_selection is a list"),
    "current_selection a str index": (lambda t: _set(t, "current_selection", ("x",)), "current_selection[0] is a str"),
    "current_selection out of range": (lambda t: _set(t, "current_selection", (3,)), "current_selection[0] is 3"),
    "controller": (
        lambda t: _set(t, "controller", pd.DataFrame()),
        "controller is a pandas.DataFrame, not an EnvController",
    ),
    "feedback not a feedback": (
        lambda t: t.hist.__setitem__(1, (t.hist[1][0], "yes")),
        "hist[1][1] is a str, not an ExperimentFeedback",
    ),
    "decision an int": (lambda t: _set(t.hist[1][1], "decision", 1), "hist[1][1].decision is a int, not a bool"),
    "decision a numpy bool": (
        lambda t: _set(t.hist[1][1], "decision", np.bool_(True)),
        "hist[1][1].decision is a numpy.bool, not a bool",
    ),
    "decision missing": (lambda t: t.hist[1][1].__dict__.pop("decision"), "hist[1][1].decision is missing"),
    "sub_tasks an int": (lambda t: _set(_exp(t), "sub_tasks", 3), "hist[2][0].sub_tasks is a int, not a list"),
    "sub_tasks entry": (
        lambda t: _set(_exp(t), "sub_tasks", [pd.DataFrame()]),
        "hist[2][0].sub_tasks[0] is a pandas.DataFrame",
    ),
    "task name": (lambda t: _set(_exp(t).sub_tasks[0], "name", pd.DataFrame()), "hist[2][0].sub_tasks[0].name is a"),
    "task factor_name": (lambda t: _set(_exp(t).sub_tasks[0], "factor_name", 5), "hist[2][0].sub_tasks[0].factor_name"),
    "sub_workspace_list length": (
        lambda t: _set(_exp(t), "sub_workspace_list", []),
        "hist[2][0] has 0 sub-workspaces for 1 sub-tasks",
    ),
    "sub_workspace_list entry": (
        lambda t: _set(_exp(t), "sub_workspace_list", [3]),
        "hist[2][0].sub_workspace_list[0] is a int, not an FBWorkspace",
    ),
    "experiment_workspace": (
        lambda t: _set(_exp(t), "experiment_workspace", "ws"),
        "hist[2][0].experiment_workspace is a str, not an FBWorkspace",
    ),
    "workspace_path a DataFrame": (
        lambda t: _set(_ws(t), "workspace_path", pd.DataFrame()),
        "hist[2][0].sub_workspace_list[0].workspace_path is a pandas.DataFrame",
    ),
    "workspace_path an os.PathLike": (
        lambda t: _set(_ws(t), "workspace_path", FsPath()),
        ".workspace_path is a tests.FsPath",
    ),
    "workspace_path a PurePath": (
        lambda t: _set(_ws(t), "workspace_path", PurePosixPath("/a")),
        "is a pathlib.PurePosixPath",
    ),
    "workspace_path missing": (lambda t: _ws(t).__dict__.pop("workspace_path"), ".workspace_path is missing"),
    "file_dict a list": (lambda t: _set(_ws(t), "file_dict", ["factor.py"]), ".file_dict is a list, not a dict"),
    "file_dict value bytes": (
        lambda t: _set(_ws(t), "file_dict", {"factor.py": b"x"}),
        ".file_dict holds a str -> a bytes",
    ),
    "workspace target_task": (
        lambda t: _set(_ws(t), "target_task", pd.DataFrame()),
        ".target_task is a pandas.DataFrame",
    ),
    "based_experiments entry": (
        lambda t: _set(_exp(t), "based_experiments", [5]),
        "hist[2][0].based_experiments[0] is a int, not an Experiment",
    ),
    "nested based experiment": (
        lambda t: _set(_exp(t).based_experiments[0], "sub_tasks", 1),
        "hist[0][0].based_experiments[0].sub_tasks is a int",
    ),
    "hypothesis a DataFrame": (
        lambda t: _set(_exp(t), "hypothesis", pd.DataFrame()),
        "hist[2][0].hypothesis is a pandas.DataFrame, not a Hypothesis",
    ),
    "hypothesis text": (
        lambda t: _set(_exp(t).hypothesis, "hypothesis", pd.DataFrame()),
        "hist[2][0].hypothesis.hypothesis",
    ),
    "hypothesis action": (
        lambda t: _set(_exp(t).hypothesis, "action", pd.DataFrame()),
        "hist[2][0].hypothesis.action is",
    ),
    "running_info": (lambda t: _set(_exp(t), "running_info", {"result": 1}), "hist[2][0].running_info is a dict"),
    "local_selection": (lambda t: _set(_exp(t), "local_selection", [0]), "hist[2][0].local_selection is a list"),
}


@pytest.mark.parametrize("damage,message", CASES.values(), ids=list(CASES))
def test_a_wrongly_shaped_field_is_a_corrupt_checkpoint(damage: Callable[[Any], None], message: str) -> None:
    t = _trace()
    check_trace_shape(t, "x.tckpt")  # the builder's trace is fine
    damage(t)
    with pytest.raises(CorruptCheckpointError) as e:
        check_trace_shape(t, "x.tckpt")
    text = str(e.value)
    assert "\n" not in text and text.startswith("x.tckpt: ")
    assert message in text, text


def test_real_traces_pass() -> None:
    for quant in (True, False):
        t = _trace(quant)
        t.hist[0] = (t.hist[0][0], None)  # a node without feedback: trace-ckpt reads it as undecided
        t.dag_parent[2] = (2,)  # a node its own parent: RD-Agent's get_parents reads it as a root
        check_trace_shape(t, "x.tckpt")


def test_a_workspace_held_outside_hist_needs_a_path_too() -> None:
    """restore_trace moves every workspace in the graph (held_workspaces): one held by a knowledge base too."""
    t = _trace()
    ws = type(_ws(t)).__new__(type(_ws(t)))
    ws.__dict__.update(_ws(t).__dict__, workspace_path=FsPath())
    t.knowledge_base = Holder(ws)
    check_trace_shape(t, "x.tckpt")  # not reached from an experiment
    with pytest.raises(
        CorruptCheckpointError, match="a FactorFBWorkspace in the trace has a workspace_path that is a tests.FsPath"
    ):
        check_trace_shape(t, "x.tckpt", held=True)


def test_restore_refuses_a_saved_trace_whose_decision_is_no_bool(tmp_path: Path) -> None:
    """End to end: a checksum-valid file (written by save_trace) whose decision is an int: RD-Agent would take it
    for a bool; restore refuses it instead of handing it on."""
    t = _trace()
    _set(t.hist[1][1], "decision", 1)
    save_trace(t, tmp_path / "odd.tckpt")
    with pytest.raises(CorruptCheckpointError, match=r"hist\[1\]\[1\]\.decision is a int, not a bool"):
        restore_trace(tmp_path / "odd.tckpt", workspace_root=tmp_path / "ws")


def test_prune_of_a_cyclic_dag_exits_4(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A dag_parent cycle (0 -> 1 -> 0) is refused by prune with the corrupt-checkpoint exit code."""
    from tests.clirun import run_cli

    t = _trace()
    t.dag_parent[0] = (1,)
    save_trace(t, tmp_path / "cycle.tckpt")
    code, _, err = run_cli(capsys, "prune", tmp_path / "cycle.tckpt", tmp_path / "out.tckpt", "--keep", "sota")
    assert code == 4 and "dag_parent[0] holds 1" in err, (code, err)
    assert not (tmp_path / "out.tckpt").exists()
