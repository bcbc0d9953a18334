"""`trace-ckpt resume` without `--only` on a real RD-Agent factor run: RD-Agent's own mixed quant loop
(`QuantRDLoop`, its bandit action choice and `QlibQuantHypothesis`) continues the restored fin_factor
trace, whose hypotheses have no `.action` of their own."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.resumerun import resume_in_fresh_folder, save_run
from trace_ckpt.rdagent.sessions import list_dumps

RESTORED = 4  # nodes of the factor_run fixture


@pytest.fixture(scope="module")
def quant_phase(factor_run: Path, tmp_path_factory: pytest.TempPathFactory):
    from rdagent.utils.workflow.loop import LoopBase

    from trace_ckpt import restore_trace

    ckpt = save_run(factor_run, tmp_path_factory.mktemp("ckpt") / "run1.tckpt")
    before = restore_trace(ckpt, workspace_root=tmp_path_factory.mktemp("ws"), allow_modules=["examples"])
    workdir = tmp_path_factory.mktemp("quant-phase")
    proc, log_dir = resume_in_fresh_folder(workdir, ckpt, "--loop-n", "1", data=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    loop = LoopBase.load(log_dir, checkout=False)  # RD-Agent's own loader, latest step of the new run
    return workdir, log_dir, before, loop, proc


def test_the_quant_loop_ran_on_the_restored_trace(quant_phase) -> None:
    from rdagent.app.qlib_rd_loop.quant import QuantRDLoop
    from rdagent.scenarios.qlib.proposal.quant_proposal import QuantTrace

    _, _, before, loop, proc = quant_phase
    assert type(loop) is QuantRDLoop and type(loop.trace) is QuantTrace
    assert len(loop.trace.hist) == RESTORED + 1 and "1 new nodes from loop id 4" in proc.stdout
    restored_results = [exp.result["IC"] for exp, _ in before.hist]
    assert [exp.result["IC"] for exp, _ in loop.trace.hist[:RESTORED]] == restored_results


def test_restored_factor_hypotheses_got_an_action(quant_phase) -> None:
    _, _, before, loop, _ = quant_phase
    assert len(before.hist) == RESTORED
    assert not any(hasattr(exp.hypothesis, "action") for exp, _ in before.hist)  # fin_factor: none of its own
    for exp, _ in loop.trace.hist[:RESTORED]:
        assert type(exp).__name__ == "QlibFactorExperiment" and exp.hypothesis.action == "factor"


def test_the_new_node_is_a_quant_node_with_a_fresh_loop_id(quant_phase) -> None:
    from rdagent.scenarios.qlib.proposal.quant_proposal import QlibQuantHypothesis

    workdir, log_dir, _, loop, _ = quant_phase
    trace = loop.trace
    ids = [trace.idx2loop_id[i] for i in range(len(trace.hist))]
    assert ids == [0, 1, 2, 3, 4] and trace.dag_parent[-1] == (RESTORED - 1,)
    assert sorted({d.loop for d in list_dumps(log_dir / "__session__")}) == [4]  # no restored loop's folder

    exp, feedback = trace.hist[-1]
    assert type(exp.hypothesis) is QlibQuantHypothesis and exp.hypothesis.action in ("factor", "model")
    assert isinstance(feedback.decision, bool)
    backtests = [json.loads(line)["entry"] for line in (workdir / "backtest_calls.jsonl").read_text().splitlines()]
    if exp.hypothesis.action == "factor":  # the bandit's choice: RD-Agent's factor branch ran
        assert type(exp).__name__ == "QlibFactorExperiment" and backtests[0] == "qrun conf_combined_factors.yaml"
        assert (workdir / "FACTOR_CODE_RAN").exists()  # only the new factor's code (the SOTA ones were seeded)
    else:  # its model branch, trained on the restored SOTA factors
        assert type(exp).__name__ == "QlibModelExperiment" and backtests[0] == "qrun conf_sota_factors_model.yaml"
        assert not (workdir / "FACTOR_CODE_RAN").exists()
    assert exp.result is not None


def test_the_quant_proposal_saw_the_restored_history(quant_phase) -> None:
    workdir, _, _, loop, _ = quant_phase
    records = [json.loads(line) for line in (workdir / "prompts.jsonl").read_text().splitlines()]
    proposals = [r for r in records if '"action"' in r["prompt"] and r["reply"].startswith('{"hypothesis"')]
    assert len(proposals) == 1
    assert json.loads(proposals[0]["reply"])["action"] == loop.trace.hist[-1][0].hypothesis.action
    # history split by .action: the restored factor nodes (factor action) or the SOTA factor node (model action)
    assert "[factor round 3]" in proposals[0]["prompt"]


def test_the_bandit_state_is_in_the_session(quant_phase) -> None:
    from rdagent.scenarios.qlib.proposal.bandit import EnvController

    _, _, _, loop, _ = quant_phase
    controller = loop.trace.controller
    assert isinstance(controller, EnvController)
    prior = np.eye(controller.bandit.dim) / 10.0
    # the proposal recorded the last restored node (a factor node) into the bandit before choosing
    assert not np.allclose(controller.bandit.precision["factor"], prior)
    assert np.allclose(controller.bandit.precision["model"], prior)
