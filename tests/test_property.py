"""Random DAG shapes and accept/reject patterns survive save -> restore."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.builders import ALLOW, build_trace, data_folder
from tests.compare import assert_same_graph
from tests.strategies import dags
from trace_ckpt import read_manifest, restore_trace, save_trace

_DATA = data_folder(Path(os.environ["WORKSPACE_PATH"]).parent / "prop-data")  # inside the session's temp folder


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dag=dags(), quant=st.booleans())
def test_random_dags_roundtrip(dag, quant: bool) -> None:
    parents, decisions, loop_ids = dag
    trace = build_trace(parents, decisions, _DATA, quant=quant, loop_ids=loop_ids, write_outputs=False)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "t.tckpt"
        save_trace(trace, path)
        m = read_manifest(path)
        restored = restore_trace(path, workspace_root=Path(d) / "ws", allow_modules=ALLOW)

    assert restored.dag_parent == parents
    assert restored.idx2loop_id == dict(enumerate(loop_ids))
    assert [bool(fb) for _, fb in restored.hist] == decisions
    old_ws = {str(e.experiment_workspace.workspace_path) for e, _ in trace.hist}
    path_map = {p: str((Path(d) / "ws" / Path(p).name).absolute()) for p in old_ws}
    base = trace.hist[0][0].based_experiments[0].experiment_workspace.workspace_path
    path_map[str(base)] = str((Path(d) / "ws" / base.name).absolute())
    for e, _ in trace.hist:
        for ws in e.sub_workspace_list:
            path_map[str(ws.workspace_path)] = str((Path(d) / "ws" / ws.workspace_path.name).absolute())
    assert_same_graph(trace, restored, path_map=path_map)

    # the manifest agrees with counts computed here, independently of the codec
    assert m.counts.hist == len(parents)
    assert m.counts.accepted == sum(decisions) and m.counts.rejected == len(decisions) - sum(decisions)
    assert m.counts.roots == sum(1 for p in parents if p == ())
    assert m.sota_index == (max(i for i, d in enumerate(decisions) if d) if any(decisions) else None)
    assert [n.parents for n in m.nodes] == [list(p) for p in parents]
    # every accepted node is one shared object in the based_experiments of the nodes after it
    accepted = [i for i, d in enumerate(decisions) if d]
    for j, (exp, _) in enumerate(restored.hist):
        expected = [restored.hist[i][0] for i in accepted if i < j]
        assert all(a is b for a, b in zip(exp.based_experiments[1:], expected, strict=True))
