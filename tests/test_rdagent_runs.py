"""trace-ckpt on a real RD-Agent run: RD-Agent's own FactorRDLoop, its session dumps and signing,
then save -> inspect -> verify -> restore, compared with the trace loaded from the session file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rdagent.core.serialization import loads

from tests.clirun import run_cli as _cli
from tests.compare import assert_same_graph, snapshot_folder
from trace_ckpt import read_manifest, restore_trace
from trace_ckpt.rdagent.sessions import list_dumps
from trace_ckpt.rdagent.trace import iter_workspaces


def test_the_run_is_a_real_rdagent_run(factor_run: Path) -> None:
    dumps = list_dumps(factor_run / "__session__")
    assert [d.loop for d in dumps if d.name == "record"] == [0, 1, 2, 3]
    assert dumps[-1].path.read_bytes().startswith(b"RDAGENT_SIGNED_PICKLE_V1\n")


def test_restore_equals_the_trace_of_the_session_file(factor_ckpt: Path, factor_run: Path, tmp_path: Path) -> None:
    loop = loads(list_dumps(factor_run / "__session__")[-1].path.read_bytes())
    original = loop.trace
    before = {str(ws.workspace_path): snapshot_folder(ws.workspace_path) for ws in iter_workspaces(original)}
    restored = restore_trace(factor_ckpt, workspace_root=tmp_path / "ws", allow_modules=["examples"])
    path_map = {old: str((tmp_path / "ws" / Path(old).name).absolute()) for old in before}
    assert assert_same_graph(original, restored, path_map=path_map) > 500
    for old, snap in before.items():
        assert snap and snapshot_folder(path_map[old]) == snap
    # every accepted node is the same object in the later nodes' based_experiments, as in the original
    accepted = [exp for exp, fb in restored.hist if fb.decision]
    last = restored.hist[-1][0]
    assert all(any(b is a for b in last.based_experiments) for a in accepted[:-1])


def test_inspect_and_verify(capsys: pytest.CaptureFixture[str], factor_ckpt: Path) -> None:
    code, out, _ = _cli(capsys, "inspect", factor_ckpt, "--json")
    doc = json.loads(out)
    assert code == 0 and doc["counts"]["hist"] == 4 and doc["counts"]["accepted"] == 3
    assert [n["decision"] for n in doc["nodes"]] == [True, False, True, True]
    assert all("IC" in n["metrics"] for n in doc["nodes"])
    assert len(doc["metadata"]["plan"]["features"]) == 20  # RD-Agent's ALPHA20 base features
    assert doc["metadata"]["components"]["runner"].endswith("QlibFactorRunner")
    assert doc["metadata"]["components"]["coder"] == "examples.offline.coders.OfflineFactorCoder"
    code, out, _ = _cli(capsys, "verify", factor_ckpt)
    assert code == 0 and out.startswith("ok:")


def test_export_factors_from_a_real_run(capsys: pytest.CaptureFixture[str], factor_ckpt: Path, tmp_path: Path) -> None:
    import pandas as pd

    code, _, _ = _cli(capsys, "export-factors", factor_ckpt, tmp_path / "sota.parquet")
    values = pd.read_parquet(tmp_path / "sota.parquet")
    m = read_manifest(factor_ckpt)
    expected = [f for n in m.nodes if n.decision for f in n.factors]
    assert code == 0 and list(values.columns) == expected and values.notna().to_numpy().any()
