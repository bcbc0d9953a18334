"""Phase 2 on real Qlib: `trace-ckpt resume --only model --base-features examples/alpha22/` with RD-Agent's
QlibModelRunner running real `qrun conf_sota_factors_model.yaml` in the Qlib venv (`make qlib-env`), reached
through RD-Agent's own conda path (MODEL_COSTEER_ENV_TYPE=conda, examples/qlib_env/bin/conda).

Real: RD-Agent, Qlib (data, dataset, PyTorch training, backtest), trace-ckpt. Stood in: the LLM and the code
it writes (examples/offline/), the market (examples/qlib_market.py) and conda (a script answering RD-Agent's
two calls from the venv). `make test` builds the venv first; without it the tests here are skipped on a
developer's machine and fail in CI (CI set), so a CI run never counts them as passed unrun.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from examples import qlib_e2e as e2e
from examples.qlib_market import FIELDS, make_market, write_daily_pv, write_qlib

FACTOR_LOOPS = 4  # rounds 0, 2, 3 are accepted by the offline LLM: 3 SOTA factors


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


def test_the_market_is_deterministic_and_in_qlibs_layout(tmp_path: Path) -> None:
    a, b, c = (tmp_path / n for n in "abc")
    write_qlib(make_market(0), a)
    write_qlib(make_market(0), b)
    write_qlib(make_market(1), c)
    assert _digest(a) == _digest(b) != _digest(c)
    days = (a / "calendars" / "day.txt").read_text().split()
    assert days[0] == "2008-01-02" and days[-1] == "2020-12-31"
    csi300 = [line.split("\t")[0] for line in (a / "instruments" / "csi300.txt").read_text().splitlines()]
    assert "SH600000" in csi300 and "SH000300" not in csi300 and len(csi300) == 30
    assert "SH000300" in (a / "instruments" / "all.txt").read_text()
    for field in FIELDS:
        raw = np.fromfile(a / "features" / "sh600000" / f"{field}.day.bin", dtype="<f4")
        assert raw[0] == 0 and len(raw) == len(days) + 1 and np.isfinite(raw).all()


def test_daily_pv_lines_up_with_the_qlib_features(tmp_path: Path) -> None:
    import pandas as pd

    market = make_market(0)
    write_qlib(market, tmp_path / "qlib")
    write_daily_pv(market, tmp_path / "pv")
    pv = pd.read_hdf(tmp_path / "pv" / "daily_pv.h5", key="data")
    assert pv.index.names == ["datetime", "instrument"] and "SH000300" not in pv.index.get_level_values(1)
    close = np.fromfile(tmp_path / "qlib" / "features" / "sh600000" / "close.day.bin", dtype="<f4")[1:]
    assert np.array_equal(pv.xs("SH600000", level="instrument")["$close"].to_numpy(), close)


def test_examples_alpha22_is_the_guides_alpha22() -> None:
    import re

    from rdagent.utils.qlib import ALPHA20, ALPHA158

    text = (Path(__file__).resolve().parents[1] / "docs" / "guide.md").read_text()
    shown = [b for b in re.findall(r"^```json\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL) if '"RESI5"' in b]
    ours = json.loads((e2e.ALPHA22 / "base_factors.json").read_text())
    assert ours == json.loads(shown[0]) and len(ours) == 22
    assert all(ours[k] == v for k, v in ALPHA20.items()) and ours["KMID"] == ALPHA158["KMID"]


@pytest.fixture(scope="module")
def qlib_venv() -> Path:
    venv = e2e.qlib_venv()
    if not (venv / "bin" / "qrun").exists():
        message = f"no Qlib venv at {venv}: run `make qlib-env` (make test builds it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return venv


@pytest.fixture(scope="module")
def phase1(qlib_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The market (in a HOME of its own) and a factor phase on it, saved: (home, run1.tckpt)."""
    work = tmp_path_factory.mktemp("qlib-real")
    home = work / "home"
    e2e.prepare_market(home, work / "phase1")
    log = e2e.run_factor_loop(work / "phase1", FACTOR_LOOPS, run_name="factor")
    return home, e2e.save(log, work / "run1.tckpt")


@pytest.fixture(scope="module")
def model_phase(phase1: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory):
    home, ckpt = phase1
    workdir = tmp_path_factory.mktemp("phase2")
    proc, log_dir = e2e.model_phase(ckpt, workdir, home)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    loop = e2e.last_loop(log_dir)
    return workdir, log_dir, loop, proc


def test_the_conda_stand_in_gives_rdagent_the_venv(qlib_venv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rdagent.utils.env import QlibCondaConf

    from trace_ckpt.rdagent.qlib_env import qlib_env_available

    for key, value in e2e.qlib_env(Path("/nonexistent")).items():
        if key != "HOME":
            monkeypatch.setenv(key, value)
    assert qlib_env_available()
    assert QlibCondaConf().bin_path.split(os.pathsep)[0] == str(qlib_venv / "bin")  # RD-Agent's own query


def test_a_model_trains_on_real_qlib(model_phase) -> None:
    workdir, _, loop, _ = model_phase
    exp, _ = loop.trace.hist[-1]
    assert type(exp).__name__ == "QlibModelExperiment" and len(loop.trace.hist) == FACTOR_LOOPS + 1
    assert exp.result is not None and math.isfinite(float(exp.result["IC"]))
    assert "1day.excess_return_with_cost.annualized_return" in exp.result
    assert "Epoch1: train" in (workdir / "resume.out").read_text()  # Qlib's GeneralPTNN trained 2 epochs
    sota = [a for a, fb in loop.trace.hist[:FACTOR_LOOPS] if fb.decision]
    assert len(sota) == 3 and all(any(b is a for b in exp.based_experiments) for a in sota)


def test_alpha22_was_validated_by_rdagent_and_used(model_phase) -> None:
    _, _, loop, proc = model_phase
    exp, _ = loop.trace.hist[-1]
    assert "could NOT be validated" not in proc.stderr  # RD-Agent's validate_qlib_features ran and passed
    assert exp.base_features == json.loads((e2e.ALPHA22 / "base_factors.json").read_text())
    assert len(exp.base_features) == 22


def test_the_dataset_holds_every_sota_factor_and_base_feature(model_phase, phase1) -> None:
    _, _, loop, _ = model_phase
    exp, _ = loop.trace.hist[-1]
    report = e2e.dataset_report(exp, phase1[0])
    factors = e2e.sota_factor_names(loop)
    assert len(factors) == 3
    e2e.check_dataset(report, factors, list(exp.base_features))  # present and not all NaN
    assert len(report["filled"]) == 25 and report["instruments"] == 30
    assert all(v > 0.9 for v in report["filled"].values())  # upper-case codes join: values, not Fillna zeros


def test_the_ic_is_in_the_feedback_and_the_next_checkpoint(model_phase, tmp_path: Path) -> None:
    workdir, log_dir, loop, _ = model_phase
    ic = float(loop.trace.hist[-1][0].result["IC"])
    assert e2e.feedback_saw_ic(workdir / "prompts.jsonl", ic)
    assert e2e.inspect_ic(e2e.save(log_dir, tmp_path / "run2.tckpt")) == pytest.approx(ic, abs=1e-12)


def test_a_bad_base_feature_is_refused_by_name_before_any_loop(phase1, tmp_path: Path) -> None:
    home, ckpt = phase1
    folder = tmp_path / "bad"
    folder.mkdir()
    features = {"KMID": "($close-$open)/$open", "BROKEN": "Foo($close, 5)", "MA5": "Mean($close, 5)/$close"}
    (folder / "base_factors.json").write_text(json.dumps(features))
    proc, log_dir = e2e.model_phase(ckpt, tmp_path / "w", home, base_features=folder)
    assert proc.returncode == 11, (proc.stdout + proc.stderr)[-3000:]
    assert "BROKEN = Foo($close, 5)" in proc.stderr and "KMID" not in proc.stderr.split("cannot compute")[-1]
    assert not (log_dir / "__session__").exists()  # no loop step ran
