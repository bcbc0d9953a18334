"""The fidelity comparator itself must catch what it is there to catch."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import pandas as pd
import pytest

from tests.builders import build_trace, data_folder
from tests.compare import GraphMismatch, assert_same_graph


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory):
    return build_trace(
        [(), (0,), (1,)], [True, True, False], data_folder(tmp_path_factory.mktemp("d")), write_outputs=False
    )


def test_equal_copy_passes(trace) -> None:
    assert assert_same_graph(trace, pickle.loads(pickle.dumps(trace))) > 100


def test_deep_field_change_is_caught(trace) -> None:
    other = pickle.loads(pickle.dumps(trace))
    other.hist[2][0].sub_tasks[0].factor_formulation += " "
    with pytest.raises(GraphMismatch, match="factor_formulation"):
        assert_same_graph(trace, other)


def test_result_change_is_caught(trace) -> None:
    other = pickle.loads(pickle.dumps(trace))
    other.hist[0][0].result.iloc[0] += 1e-12
    with pytest.raises(AssertionError):
        assert_same_graph(trace, other)


def test_lost_sharing_is_caught(trace) -> None:
    other = pickle.loads(pickle.dumps(trace))
    other.hist[2][0].based_experiments[1] = copy.deepcopy(other.hist[0][0])
    with pytest.raises(GraphMismatch, match="two objects"):
        assert_same_graph(trace, other)


def test_unrelocated_path_is_caught(trace) -> None:
    other = pickle.loads(pickle.dumps(trace))
    ws = str(trace.hist[0][0].experiment_workspace.workspace_path)
    with pytest.raises(GraphMismatch, match="path"):
        assert_same_graph(trace, other, path_map={ws: str(Path("/elsewhere") / Path(ws).name)})


def test_series_name_type_is_caught() -> None:
    with pytest.raises(AssertionError):
        assert_same_graph(pd.Series([1.0], name="0"), pd.Series([1.0], name=0))
