"""Two real RD-Agent factor runs -> checkpoints -> `trace-ckpt merge` -> `resume --only model`: RD-Agent's
own model loop trains on the SOTA factors of both runs.

Run 1 is the session's `factor_run`; run 2 is the offline stand-in with TRACE_CKPT_OFFLINE_SEED=1 (another
simulated LLM sample): its even rounds propose factors named as in run 1 with other code (renamed by the
merge), its odd rounds factors of other names. A third input, run 1 at loop 0, holds exactly run 1's first
factor (stored and counted once).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from rdagent.core.serialization import loads

from tests.resumerun import backtests, resume_in_fresh_folder, save_run
from trace_ckpt.cli import main
from trace_ckpt.rdagent.sessions import list_dumps


def _last_trace(log_dir: Path) -> Any:
    return loads(list_dumps(log_dir / "__session__")[-1].path.read_bytes()).trace


def _sota_factors(trace: Any) -> dict[str, str]:
    """name -> factor.py of every implemented factor of an accepted node."""
    return {
        task.factor_name: ws.file_dict["factor.py"]
        for exp, fb in trace.hist
        if fb.decision
        for task, ws in zip(exp.sub_tasks, exp.sub_workspace_list)
        if ws is not None
    }


@pytest.fixture(scope="module")
def runs(factor_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from examples.offline.run import run_factor_loop

    run2 = run_factor_loop(tmp_path_factory.mktemp("offline-seed1"), 4, seed=1)
    d = tmp_path_factory.mktemp("merge-e2e")
    a, b, c = (
        save_run(factor_run, d / "a.tckpt"),
        save_run(run2, d / "b.tckpt"),
        save_run(factor_run, d / "c.tckpt", "--loop", "0"),
    )
    with pytest.raises(SystemExit) as e:
        main(["merge", str(a), str(b), str(c), str(d / "merged.tckpt"), "--allow-module", "examples"])
    assert e.value.code == 0
    return {"dir": d, "merged": d / "merged.tckpt", "t1": _last_trace(factor_run), "t2": _last_trace(run2)}


def test_the_two_runs_differ_as_the_stand_in_says(runs: dict[str, Any]) -> None:
    f1, f2 = _sota_factors(runs["t1"]), _sota_factors(runs["t2"])
    same_name = f1.keys() & f2.keys()
    assert same_name and all(f1[n] != f2[n] for n in same_name)  # clashes to rename
    assert f2.keys() - f1.keys()  # and factors only run 2 has


def test_model_phase_on_the_merged_checkpoint_trains_on_both_runs_sota_factors(
    runs: dict[str, Any], tmp_path: Path
) -> None:
    proc, log_dir = resume_in_fresh_folder(tmp_path, runs["merged"], "--only", "model", "--loop-n", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    trace = _last_trace(log_dir)
    n1, n2 = len(runs["t1"].hist), len(runs["t2"].hist)
    assert len(trace.hist) == n1 + n2 + 1 + 1  # run 1, run 2, run 1 at loop 0, the new model node
    assert [i for i, p in enumerate(trace.dag_parent[:-1]) if p == ()] == [0, n1, n1 + n2]

    model = trace.hist[-1][0]
    assert type(model).__name__ == "QlibModelExperiment"
    sota1 = [exp for exp, fb in trace.hist[:n1] if fb.decision]
    sota2 = [exp for exp, fb in trace.hist[n1 : n1 + n2] if fb.decision]
    assert len(sota1) == sum(fb.decision for _, fb in runs["t1"].hist) > 0
    assert len(sota2) == sum(fb.decision for _, fb in runs["t2"].hist) > 0
    assert all(any(b is exp for b in model.based_experiments) for exp in sota1 + sota2)  # by identity

    # what the model trained on: every SOTA factor of both runs once; run 2's clashing names renamed
    f1, f2 = _sota_factors(runs["t1"]), _sota_factors(runs["t2"])
    expected = set(f1) | {n if n not in f1 or f1[n] == f2[n] else f"{n}_in2" for n in f2}
    combined = pd.read_parquet(model.experiment_workspace.workspace_path / "combined_factors_df.parquet")
    columns = [c[-1] for c in combined.columns]
    assert sorted(columns) == sorted(expected) and len(expected) == len(f1) + len(f2)
    assert combined.notna().any().all()
    based_names = {t.factor_name for b in model.based_experiments for t in getattr(b, "sub_tasks", [])}
    assert expected <= based_names
    assert backtests(tmp_path)[0] == "qrun conf_sota_factors_model.yaml"
    assert not (tmp_path / "FACTOR_CODE_RAN").exists()  # the captured (renamed) values answered from the cache


def test_identical_factor_is_one_implementation(runs: dict[str, Any], tmp_path: Path) -> None:
    from trace_ckpt import read_manifest, restore_trace

    merged = restore_trace(runs["merged"], workspace_root=tmp_path / "ws", allow_modules=["examples"])
    n = len(runs["t1"].hist) + len(runs["t2"].hist)
    # the loop-0 checkpoint's only node is run 1's node 0: same factor.py, so the same workspace object
    assert merged.hist[n][0].sub_workspace_list[0] is merged.hist[0][0].sub_workspace_list[0]
    meta = read_manifest(runs["merged"]).metadata
    assert meta["merge"]["duplicates"] == [
        {"node": n, "name": merged.hist[0][0].sub_tasks[0].factor_name, "same_as": 0}
    ]
    assert [x["nodes"] for x in meta["merged_from"]] == [len(runs["t1"].hist), len(runs["t2"].hist), 1]


def test_diff_finds_each_runs_nodes_in_the_merge(runs: dict[str, Any]) -> None:
    from trace_ckpt import diff, read_manifest

    d, merged = runs["dir"], runs["merged"]
    n1, n2 = len(runs["t1"].hist), len(runs["t2"].hist)
    total = n1 + n2 + 1
    # run 1 is the merge's first input: its nodes are there unchanged, everything else is only in the merge
    da = diff(d / "a.tckpt", merged)
    assert da.nodes == [] and da.files == [] and da.only_a == [], da.lines()
    assert da.only_b == list(range(n1, total))
    # run 2's nodes are found at n1 + k (their loop ids shifted), also those whose factor the merge renamed
    db = diff(d / "b.tckpt", merged)
    assert db.only_a == [] and db.only_b == [*range(n1), total - 1], db.lines()
    assert {(c.index, c.index_b) for c in [*db.nodes, *db.files]} <= {(k, n1 + k) for k in range(n2)}
    renamed = {r["node"] - n1 for r in read_manifest(merged).metadata["merge"]["renamed"]}
    assert renamed and {c.index for c in db.nodes if c.what == "factors"} == renamed
    assert {c.index for c in db.files} == renamed
    assert {c.what for c in db.nodes} == {"loop id", "factors"}
