"""`trace-ckpt resume --only model` on a real RD-Agent factor run: RD-Agent's own model loop trains on
the restored SOTA factors, in a fresh folder with no factor data and no cache."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from rdagent.core.serialization import loads

from tests.resumerun import TRACE_CKPT, backtests, resume_in_fresh_folder, save_run
from trace_ckpt.cli import main
from trace_ckpt.errors import ResumeError, SaveError
from trace_ckpt.rdagent.sessions import list_dumps


@pytest.fixture(scope="module")
def ckpts(factor_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("ckpts")
    return {"all": save_run(factor_run, d / "run1.tckpt"), "one": save_run(factor_run, d / "one.tckpt", "--loop", "0")}


@pytest.fixture(scope="module")
def model_phase(ckpts: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("model-phase")
    proc, log_dir = resume_in_fresh_folder(workdir, ckpts["all"], "--only", "model", "--loop-n", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    loop = loads(list_dumps(log_dir / "__session__")[-1].path.read_bytes())
    return workdir, log_dir, loop, proc


def test_model_experiments_train_on_the_restored_sota_factors(model_phase) -> None:
    workdir, _, loop, proc = model_phase
    trace = loop.trace
    assert len(trace.hist) == 6 and "resumed" in proc.stdout
    accepted_factors = [exp for exp, fb in trace.hist[:4] if fb.decision]
    first_model = trace.hist[4][0]
    assert type(first_model).__name__ == "QlibModelExperiment"
    assert all(any(b is a for b in first_model.based_experiments) for a in accepted_factors)  # by identity
    assert backtests(workdir).count("qrun conf_sota_factors_model.yaml") == 2
    combined = pd.read_parquet(first_model.experiment_workspace.workspace_path / "combined_factors_df.parquet")
    names = [t.factor_name for a in accepted_factors for t in a.sub_tasks]
    assert sorted(c[-1] for c in combined.columns) == sorted(names)
    assert not (workdir / "FACTOR_CODE_RAN").exists()  # the seeded cache answered: no factor code ran


def test_loop_ids_are_unique_and_dumps_land_in_new_loop_folders(model_phase) -> None:
    _, log_dir, loop, _ = model_phase
    ids = [loop.trace.idx2loop_id[i] for i in range(len(loop.trace.hist))]
    assert ids == [0, 1, 2, 3, 4, 5]
    assert sorted({d.loop for d in list_dumps(log_dir / "__session__")}) == [4, 5]


def test_rdagent_own_loader_opens_the_new_session(model_phase) -> None:
    from rdagent.utils.workflow.loop import LoopBase

    _, log_dir, _, _ = model_phase
    loaded = LoopBase.load(log_dir, checkout=False)
    assert len(loaded.trace.hist) == 6


def test_model_prompts_show_model_history_and_factor_context(model_phase) -> None:
    workdir, _, _, _ = model_phase
    records = [json.loads(line) for line in (workdir / "prompts.jsonl").read_text().splitlines()]
    hypothesis_prompts = [r["prompt"] for r in records if r["reply"].startswith('{"hypothesis"')]
    assert len(hypothesis_prompts) == 2
    for prompt in (r["prompt"] for r in records):
        assert "[factor round" not in prompt  # no factor hypothesis shown as a model attempt or SOTA model
    first, second = hypothesis_prompts
    assert "SOTA factors, found in an earlier factor-evolution phase" in first and "Mom3_r0" in first
    assert "No previous hypothesis and feedback available" in first
    assert "[model round 0]" in second  # the first model round is the model history of the second


def test_exactly_one_sota_factor_experiment_is_still_trained_on(ckpts: dict[str, Path], tmp_path: Path) -> None:
    proc, log_dir = resume_in_fresh_folder(tmp_path, ckpts["one"], "--only", "model", "--loop-n", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    trace = loads(list_dumps(log_dir / "__session__")[-1].path.read_bytes()).trace
    model = trace.hist[-1][0]
    assert trace.hist[0][1].decision and len(trace.hist) == 2
    assert any(b is trace.hist[0][0] for b in model.based_experiments)
    assert backtests(tmp_path)[0] == "qrun conf_sota_factors_model.yaml"
    combined = pd.read_parquet(model.experiment_workspace.workspace_path / "combined_factors_df.parquet")
    assert [c[-1] for c in combined.columns] == [trace.hist[0][0].sub_tasks[0].factor_name]


def test_custom_base_features(ckpts: dict[str, Path], tmp_path: Path) -> None:
    from rdagent.utils.qlib import ALPHA20

    alpha22 = dict(ALPHA20)
    alpha22.update({"HLRATIO": "$high/$low - 1", "VSTD5X": "Std($volume, 5)/($volume+1e-12)"})
    assert len(alpha22) == 22
    folder = tmp_path / "alpha22"
    folder.mkdir()
    (folder / "base_factors.json").write_text(json.dumps(alpha22))
    proc, log_dir = resume_in_fresh_folder(
        tmp_path / "w", ckpts["all"], "--only", "model", "--loop-n", "1", "--base-features", str(folder)
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "could NOT be validated" in proc.stderr
    model = loads(list_dumps(log_dir / "__session__")[-1].path.read_bytes()).trace.hist[-1][0]
    assert model.base_features == alpha22


def test_factor_phase_continues(ckpts: dict[str, Path], tmp_path: Path) -> None:
    from examples.offline.run import offline_env, prepare_data

    prepare_data(tmp_path)  # more factor loops run factor code, so they need the data folder
    env = {**os.environ, **offline_env(tmp_path, "factor2")}
    proc = subprocess.run(
        [
            str(TRACE_CKPT),
            "resume",
            str(ckpts["all"]),
            "--only",
            "factor",
            "--loop-n",
            "1",
            "--allow-module",
            "examples",
            "--trust",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    trace = loads(list_dumps(Path(env["LOG_TRACE_PATH"]) / "__session__")[-1].path.read_bytes()).trace
    assert len(trace.hist) == 5 and type(trace.hist[-1][0]).__name__ == "QlibFactorExperiment"
    assert trace.idx2loop_id[4] == 4


@pytest.mark.slow
def test_no_sota_factor_runs_with_a_warning(tmp_path: Path) -> None:
    from tests.builders import build_trace, data_folder
    from trace_ckpt import save_trace

    trace = build_trace([(), (0,)], [False, False], data_folder(tmp_path / "data"), write_outputs=False)
    save_trace(trace, tmp_path / "none.tckpt")
    proc, log_dir = resume_in_fresh_folder(
        tmp_path / "w", tmp_path / "none.tckpt", "--only", "model", "--loop-n", "1", "--allow-module", "tests"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no accepted factor experiment" in proc.stderr
    model = loads(list_dumps(log_dir / "__session__")[-1].path.read_bytes()).trace.hist[-1][0]
    assert backtests(tmp_path / "w")[0] == "qrun conf_baseline_factors_model.yaml"
    assert not any(type(b).__name__ == "QlibFactorExperiment" for b in model.based_experiments)


def test_bad_input(capsys: pytest.CaptureFixture[str], ckpts: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as e:
        main(["resume", str(ckpts["all"]), "--only", "portfolio"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "portfolio" in err and err.count("\n") == 1
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(SystemExit) as e:
        main(["resume", str(ckpts["all"]), "--only", "model", "--workspace-root", str(blocker / "ws"), "--trust"])
    err = capsys.readouterr().err
    assert e.value.code == SaveError.exit_code and "not writable" in err and err.count("\n") == 1
    with pytest.raises(SystemExit) as e:
        main(["resume", str(tmp_path / "missing.tckpt"), "--only", "model"])
    assert e.value.code == 3 and "no checkpoint" in capsys.readouterr().err
    (tmp_path / "feats").mkdir()
    (tmp_path / "feats" / "base_factors.json").write_text("[1, 2]")
    with pytest.raises(SystemExit) as e:
        main(["resume", str(ckpts["all"]), "--only", "model", "--base-features", str(tmp_path / "feats"), "--trust"])
    err = capsys.readouterr().err
    assert e.value.code == ResumeError.exit_code and "base_factors.json" in err and err.count("\n") == 1
