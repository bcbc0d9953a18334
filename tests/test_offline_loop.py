"""RD-Agent's own factor and model loops, run offline with the stand-ins of ``examples/offline``
(simulated: no LLM, simulated LLM-written code, simulated Qlib backtest, simulated runtime probe).

The runs happen in subprocesses (RD-Agent reads its settings from the environment at import time);
their session dumps are loaded here with RD-Agent's own ``LoopBase.load``, which checks the HMAC with
the same ``ARTIFACT_SIGNING_KEY`` (tests/conftest.py sets it; ``offline_env`` passes it on).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from examples.offline.run import offline_env, run_model_loop

STEPS = ["0_direct_exp_gen", "1_coding", "2_running", "3_feedback", "4_record"]
FACTOR_LOG_ENV = "TRACE_CKPT_TEST_FACTOR_LOG"
RESTORE_N_ENV = "TRACE_CKPT_TEST_RESTORE_N"


# --- setup hooks, called by the offline runner's subprocess with the new loop before it starts ----------


def record_setup(loop: Any) -> None:
    """Leave a note in the work folder (the subprocess's cwd) that the hook saw the loop."""
    Path("setup_called.json").write_text(json.dumps({"loop": type(loop).__name__, "hist": len(loop.trace.hist)}))


def restore_factor_nodes(loop: Any) -> None:
    """A minimal stand-in for a trace restore: the first N nodes of a factor run's trace become the
    model loop's history (as a checkpoint restore will do), before the model loop's first step."""
    from rdagent.utils.workflow.loop import LoopBase

    factor_trace = LoopBase.load(Path(os.environ[FACTOR_LOG_ENV])).trace
    n = int(os.environ[RESTORE_N_ENV])
    loop.trace.hist = factor_trace.hist[:n]
    loop.trace.dag_parent = factor_trace.dag_parent[:n]
    loop.trace.idx2loop_id = {i: lid for i, lid in factor_trace.idx2loop_id.items() if i < n}


# --- the factor run ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def factor_log(factor_run: Path) -> Path:
    """The session's real 4-loop FactorRDLoop run (tests/conftest.py); its log folder."""
    return factor_run


@pytest.fixture(scope="module")
def factor_loop(factor_log: Path) -> Any:
    from rdagent.utils.workflow.loop import LoopBase

    return LoopBase.load(factor_log)  # the latest dump: __session__/3/4_record


def _workspaces(exp: Any) -> list[Path]:
    return [Path(ws.workspace_path) for ws in exp.sub_workspace_list if ws is not None]


def test_session_dumps_are_real_and_signed(factor_log: Path) -> None:
    session = factor_log / "__session__"
    assert sorted(p.name for p in session.iterdir()) == ["0", "1", "2", "3"]
    for loop_dir in session.iterdir():
        assert sorted(p.name for p in loop_dir.iterdir()) == STEPS
    assert (session / "3" / "4_record").read_bytes().startswith(b"RDAGENT_SIGNED_PICKLE_V1\n")


def test_the_signing_key_is_the_one_passed_on(factor_log: Path) -> None:
    env = offline_env(factor_log.parents[1])
    assert env["ARTIFACT_SIGNING_KEY"] == os.environ["ARTIFACT_SIGNING_KEY"]
    assert str(Path(__file__).resolve().parents[1]) in env["PYTHONPATH"].split(os.pathsep)


def test_the_trace_has_accepted_and_rejected_nodes(factor_loop: Any) -> None:
    from rdagent.app.qlib_rd_loop.factor import FactorRDLoop

    assert isinstance(factor_loop, FactorRDLoop)
    trace = factor_loop.trace
    assert len(trace.hist) == 4
    assert trace.idx2loop_id == {0: 0, 1: 1, 2: 2, 3: 3}
    decisions = [fb.decision for _, fb in trace.hist]
    assert all(type(d) is bool for d in decisions)
    assert True in decisions and False in decisions


def test_accepted_experiments_are_qlib_factor_experiments_with_results(factor_loop: Any) -> None:
    import pandas as pd
    from rdagent.scenarios.qlib.experiment.factor_experiment import QlibFactorExperiment

    accepted = [exp for exp, fb in factor_loop.trace.hist if fb.decision]
    assert accepted
    for exp in accepted:
        assert isinstance(exp, QlibFactorExperiment)
        assert isinstance(exp.result, pd.Series) and "IC" in exp.result.index
        assert "1day.excess_return_with_cost.annualized_return" in exp.result.index
        ws = Path(exp.experiment_workspace.workspace_path)
        assert (ws / "qlib_res.csv").is_file() and (ws / "ret.parquet").is_file()
    # the factor proposal: an empty baseline + every accepted experiment so far
    last = factor_loop.trace.hist[-1][0]
    assert len(last.based_experiments[0].sub_tasks) == 0
    assert all(any(b is a for b in last.based_experiments) for a in accepted[:-1])


def test_factor_code_and_data_symlinks_are_on_disk(factor_log: Path, factor_loop: Any) -> None:
    env = offline_env(factor_log.parents[1])
    data = {Path(env[k]).resolve() for k in ("FACTOR_CoSTEER_DATA_FOLDER", "FACTOR_CoSTEER_DATA_FOLDER_DEBUG")}
    for exp, _ in factor_loop.trace.hist:
        folders = _workspaces(exp)
        assert folders
        for ws in folders:
            assert (ws / "factor.py").is_file()
            link = ws / "daily_pv.h5"
            assert link.is_symlink() and link.resolve().parent in data
            assert (ws / "result.h5").is_file()  # written by the real factor code on the synthetic panel


# --- the model loop ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_model_loop_runs_and_produces_a_model_experiment(tmp_path: Path) -> None:
    from rdagent.app.qlib_rd_loop.model import ModelRDLoop
    from rdagent.scenarios.qlib.experiment.model_experiment import QlibModelExperiment
    from rdagent.utils.workflow.loop import LoopBase

    log = run_model_loop(tmp_path, 1, setup=f"{__name__}:record_setup")
    assert json.loads((tmp_path / "setup_called.json").read_text()) == {"loop": "ModelRDLoop", "hist": 0}
    assert sorted(p.name for p in (log / "__session__" / "0").iterdir()) == STEPS
    loop = LoopBase.load(log)
    assert isinstance(loop, ModelRDLoop) and len(loop.trace.hist) == 1
    exp, fb = loop.trace.hist[0]
    assert isinstance(exp, QlibModelExperiment) and type(fb.decision) is bool
    assert "IC" in exp.result.index and exp.based_experiments == []
    assert (_workspaces(exp)[0] / "model.py").is_file()


@pytest.mark.parametrize(
    ("restored", "factor_exps", "config"),
    [
        (4, 3, "conf_sota_factors_model.yaml"),  # 3 accepted factor nodes: combined with the model
        (2, 1, "conf_baseline_factors_model.yaml"),  # 1 accepted: RD-Agent's `> 1` condition ignores it
    ],
)
def test_model_loop_on_restored_factor_nodes(
    factor_log: Path, factor_loop: Any, monkeypatch: pytest.MonkeyPatch, restored: int, factor_exps: int, config: str
) -> None:
    """The restore hook's place: factor nodes put into ``loop.trace`` by ``setup`` become the model
    loop's SOTA (``ModelExperiment`` is an alias of ``Experiment``); new loop ids start again at 0."""
    from rdagent.scenarios.qlib.experiment.factor_experiment import QlibFactorExperiment
    from rdagent.scenarios.qlib.experiment.model_experiment import QlibModelExperiment
    from rdagent.utils.workflow.loop import LoopBase

    accepted = sum(bool(fb.decision) for _, fb in factor_loop.trace.hist[:restored])
    assert accepted == factor_exps
    workdir = factor_log.parents[1]  # same work folder: data folders and the factor execution cache
    calls = workdir / "backtest_calls.jsonl"
    seen = len(calls.read_text().splitlines())
    monkeypatch.setenv(FACTOR_LOG_ENV, str(factor_log))
    monkeypatch.setenv(RESTORE_N_ENV, str(restored))
    log = run_model_loop(workdir, 1, setup=f"{__name__}:restore_factor_nodes", run_name=f"model-on-{restored}")

    trace = LoopBase.load(log).trace
    assert len(trace.hist) == restored + 1 and trace.idx2loop_id[restored] == 0
    exp = trace.hist[-1][0]
    assert isinstance(exp, QlibModelExperiment)
    assert [type(b) for b in exp.based_experiments] == [QlibFactorExperiment] * factor_exps
    entries = [json.loads(line)["entry"] for line in calls.read_text().splitlines()[seen:]]
    assert f"qrun {config}" in entries
    has_combined = (Path(exp.experiment_workspace.workspace_path) / "combined_factors_df.parquet").exists()
    assert has_combined == (factor_exps > 1)
