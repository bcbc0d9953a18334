"""Both phases end to end, the model phase on real Qlib (``make e2e``):

    factor phase (RD-Agent's FactorRDLoop, offline LLM) -> trace-ckpt save -> a fresh folder ->
    trace-ckpt resume --only model --base-features examples/alpha22/ (MODEL_COSTEER_ENV_TYPE=conda) ->
    RD-Agent's QlibModelRunner runs real `qrun conf_sota_factors_model.yaml` in the Qlib venv ->
    the dataset Qlib builds holds every SOTA factor and base feature -> a model trains -> its IC is in
    the feedback and in the next checkpoint's `inspect`.

    python -m examples.qlib_e2e --workdir /tmp/e2e      # needs `make qlib-env` (.qlib-venv)

Real: RD-Agent (loops, proposals, runners, feedback, session dumps), Qlib (data, datasets, the factor
phase's LightGBM backtests, training of the PyTorch model, backtest) and trace-ckpt. Stood in: the LLM and
the code it writes (examples/offline/), the market (examples/qlib_market.py, synthetic), and conda
(examples/qlib_env/bin/conda, answering RD-Agent's two questions from the venv). ``--factor-backtests
simulated`` keeps the factor phase on the offline rehearsal's simulated backtests (minutes faster; the
tests do that). Ends with one line:
``e2e ok: <N> SOTA factors + <M> base features, <R> rows; model test IC <x>``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from examples.offline.run import SIGNING_KEY, offline_env, run_factor_loop
from examples.qlib_market import make_market, write_daily_pv, write_qlib

REPO = Path(__file__).resolve().parents[1]
STAND_IN_BIN = REPO / "examples" / "qlib_env" / "bin"  # the conda stand-in
DATASET_CHECK = REPO / "examples" / "qlib_env" / "dataset_check.py"
ALPHA22 = REPO / "examples" / "alpha22"
MODEL_CONF = "conf_sota_factors_model.yaml"
TRACE_CKPT = Path(sys.executable).parent / "trace-ckpt"
# Both phases are this script's own: it signs run1.tckpt and the resume verifies it (an unsigned checkpoint
# from elsewhere needs --trust). A key for this rehearsal only.
SIGNING = {
    "TRACE_CKPT_SIGNING_KEY": "trace-ckpt-qlib-e2e-signing-key-0123456789abcdef",
    "ARTIFACT_SIGNING_KEY": os.environ.get("ARTIFACT_SIGNING_KEY", SIGNING_KEY),  # RD-Agent's, of the runs
    "PYTHONPATH": offline_env(REPO)["PYTHONPATH"],
}  # the stand-ins' classes are in the session dumps


class E2EError(RuntimeError):
    """A step of the end-to-end run did not hold."""


def qlib_venv() -> Path:
    """The Qlib venv RD-Agent is given (``TRACE_CKPT_QLIB_VENV``, default .qlib-venv; `make qlib-env`)."""
    return Path(os.environ.get("TRACE_CKPT_QLIB_VENV") or REPO / ".qlib-venv").absolute()


def qlib_env(home: Path) -> dict[str, str]:
    """What RD-Agent's process needs to run Qlib outside Docker: conda mode, the conda stand-in first on
    PATH, the market under ``home`` (~/.qlib/qlib_data/cn_data), mlflow's file store allowed."""
    return {
        "MODEL_COSTEER_ENV_TYPE": "conda",
        "PATH": f"{STAND_IN_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "TRACE_CKPT_QLIB_VENV": str(qlib_venv()),
        "HOME": str(Path(home).absolute()),
        "MLFLOW_ALLOW_FILE_STORE": "true",
        "TRACE_CKPT_RESUME_SETUP": "",  # no simulated backtest: RD-Agent's own QlibCondaEnv runs qrun
    }


def prepare_market(home: Path, factor_workdir: Path, seed: int = 0) -> None:
    """The synthetic market in Qlib's format under ``home``, and the factor phase's daily_pv.h5 from it."""
    market = make_market(seed)
    write_qlib(market, Path(home) / ".qlib" / "qlib_data" / "cn_data")
    env = offline_env(factor_workdir)
    write_daily_pv(market, Path(env["FACTOR_CoSTEER_DATA_FOLDER"]), Path(env["FACTOR_CoSTEER_DATA_FOLDER_DEBUG"]))


def _cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 1800
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(TRACE_CKPT), *args],
        env={**os.environ, **SIGNING, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise E2EError(f"trace-ckpt {args[0]} failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-4000:]}")
    return proc


def save(log_dir: Path, ckpt: Path) -> Path:
    """`trace-ckpt save` of a run (the offline stand-ins' classes are allowed by name)."""
    _cli("save", str(log_dir), str(ckpt), "--allow-module", "examples")
    return ckpt


def model_phase(
    ckpt: Path, workdir: Path, home: Path, *extra: str, loop_n: int = 1, base_features: Path | None = ALPHA22
) -> tuple[subprocess.CompletedProcess, Path]:
    """`trace-ckpt resume --only model` in a fresh folder, RD-Agent running real qrun; (process, log folder)."""
    workdir = Path(workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    env = {
        **offline_env(workdir, "model"),
        **qlib_env(home),
        **SIGNING,
        "TRACE_CKPT_OFFLINE_PROMPT_LOG": str(workdir / "prompts.jsonl"),
    }
    args = ["resume", str(ckpt), "--only", "model", "--loop-n", str(loop_n), "--allow-module", "examples", *extra]
    if base_features is not None:
        args += ["--base-features", str(base_features)]
    proc = subprocess.run(
        [str(TRACE_CKPT), *args],
        env={**os.environ, **env},
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    (workdir / "resume.out").write_text(proc.stdout + proc.stderr)
    return proc, Path(env["LOG_TRACE_PATH"])


def last_loop(log_dir: Path) -> Any:
    """The loop of the newest session dump under ``log_dir`` (RD-Agent's own loader)."""
    from rdagent.utils.workflow.loop import LoopBase

    return LoopBase.load(log_dir, checkout=False)


def model_run_env(exp: Any) -> dict[str, str]:
    """The variables RD-Agent's QlibModelRunner rendered the model config with (those the dataset reads)."""
    from rdagent.app.qlib_rd_loop.conf import ModelBasePropSetting

    mbps = ModelBasePropSetting()
    env = {
        k: str(getattr(mbps, k))
        for k in ("train_start", "train_end", "valid_start", "valid_end", "test_start", "test_end")
        if getattr(mbps, k, None) is not None
    }
    return {
        **env,
        "feature_names": str(list(exp.base_features.keys())),
        "feature_expressions": str(list(exp.base_features.values())),
    }


def dataset_report(exp: Any, home: Path) -> dict[str, Any]:
    """Build, with Qlib in the Qlib venv, the dataset of the config qrun ran in ``exp``'s workspace."""
    env = {**os.environ, **qlib_env(home), **model_run_env(exp)}
    proc = subprocess.run(
        [
            str(qlib_venv() / "bin" / "python"),
            str(DATASET_CHECK),
            str(exp.experiment_workspace.workspace_path),
            MODEL_CONF,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    if proc.returncode != 0:
        raise E2EError(f"Qlib could not build the dataset:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def check_dataset(report: dict[str, Any], factors: list[str], base: list[str]) -> None:
    """Every SOTA factor and every base feature is a column of the dataset, with values."""
    filled = report["filled"]
    missing = [c for c in factors + base if c not in filled]
    empty = [c for c in factors + base if filled.get(c, 0.0) == 0.0]
    if missing or empty:
        raise E2EError(f"dataset columns missing {missing}, all-NaN {empty}; it has {sorted(filled)}")


def sota_factor_names(loop: Any) -> list[str]:
    """Names of the factors of the accepted factor experiments (the SOTA factors the model trains on)."""
    names = []
    for exp, fb in loop.trace.hist:
        if fb and type(exp).__name__ == "QlibFactorExperiment":
            names += [t.factor_name for t in exp.sub_tasks]
    return names


def feedback_saw_ic(prompt_log: Path, ic: float) -> bool:
    """True when a feedback prompt of the offline LLM's log shows the result's IC (as pandas prints it)."""
    for line in Path(prompt_log).read_text().splitlines():
        prompt = json.loads(line)["prompt"]
        if "Current Round Information" in prompt:
            shown = re.findall(r"^(?:Result: )?IC\s+(-?[0-9.]+(?:e-?[0-9]+)?)$", prompt, flags=re.MULTILINE)
            if any(abs(float(v) - ic) <= 5e-7 + 1e-6 * abs(ic) for v in shown):
                return True
    return False


def inspect_ic(ckpt: Path) -> float | None:
    """The IC `trace-ckpt inspect --json` shows for the last model node of ``ckpt``."""
    manifest = json.loads(_cli("inspect", str(ckpt), "--json").stdout)
    ics = [n["metrics"].get("IC") for n in manifest["nodes"] if n["kind"] == "model"]
    return ics[-1] if ics else None


def run(workdir: Path, factor_loops: int = 4, factor_backtests: str = "real") -> str:
    """The whole run; returns the closing line. ``factor_backtests``: "real" (qrun) or "simulated"."""
    workdir = Path(workdir).absolute()
    home = workdir / "home"
    os.environ.update(SIGNING)  # RD-Agent's loader below checks the session dumps with the runs' key
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price-map fetch when rdagent is imported
    t0 = time.monotonic()

    def step(msg: str) -> None:
        print(f"[{time.monotonic() - t0:6.1f}s] {msg}", flush=True)

    prepare_market(home, workdir / "phase1")
    step(f"market written: {home}/.qlib/qlib_data/cn_data and phase 1's daily_pv.h5")
    real = {**qlib_env(home), "TRACE_CKPT_OFFLINE_BACKTEST": "real"} if factor_backtests == "real" else None
    factor_log = run_factor_loop(workdir / "phase1", factor_loops, run_name="factor", extra_env=real, timeout=3600)
    runs = len(list((workdir / "phase1").glob("RD-Agent_workspace/*/qlib_res.csv")))
    if real and runs < factor_loops:
        raise E2EError(f"the factor phase ran qrun {runs} times for {factor_loops} loops")
    step(f"factor phase: {factor_loops} loops of RD-Agent's FactorRDLoop, {runs} real qrun backtests, log {factor_log}")
    ckpt = save(factor_log, workdir / "run1.tckpt")
    step(f"saved {ckpt}")

    proc, model_log = model_phase(ckpt, workdir / "phase2", home)  # a fresh folder: no factor data, no cache
    if proc.returncode != 0:
        raise E2EError(f"resume failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-6000:]}")
    step(proc.stdout.strip().splitlines()[-1])
    loop = last_loop(model_log)
    exp, feedback = loop.trace.hist[-1]
    if type(exp).__name__ != "QlibModelExperiment" or exp.result is None:
        raise E2EError(f"the last node is {type(exp).__name__} with result {exp.result!r}: no model ran")
    ic = float(exp.result["IC"])
    factors, base = sota_factor_names(loop), list(exp.base_features)
    if sorted(base) != sorted(json.loads((ALPHA22 / "base_factors.json").read_text())):
        raise E2EError(f"the model trained on base features {base}, not alpha22's")
    log_text = (Path(exp.experiment_workspace.workspace_path) / "qlib_res.csv").read_text()
    step(f"qrun wrote qlib_res.csv: IC {ic:.6f}, {len(log_text.splitlines())} metrics")

    report = dataset_report(exp, home)
    check_dataset(report, factors, base)
    step(f"dataset: {report['rows']} rows, {report['instruments']} instruments, {report['start']}..{report['end']}")

    if not feedback_saw_ic(workdir / "phase2" / "prompts.jsonl", ic):
        raise E2EError(f"the feedback prompt did not see the IC {ic}")
    step(f"feedback: decision {feedback.decision}, its prompt held the IC")

    ckpt2 = save(model_log, workdir / "run2.tckpt")
    shown = inspect_ic(ckpt2)
    if shown is None or abs(shown - ic) > 1e-12:
        raise E2EError(f"inspect of {ckpt2} shows IC {shown}, the run had {ic}")
    print(_cli("inspect", str(ckpt2)).stdout, end="")
    return (
        f"e2e ok: {len(factors)} SOTA factors + {len(base)} base features, {report['rows']} rows; "
        f"model test IC {ic:.4f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description="Factor phase -> save -> model phase on real Qlib (see module doc).")
    ap.add_argument("--workdir", type=Path, default=Path("e2e-out"))
    ap.add_argument("--factor-loops", type=int, default=4)
    ap.add_argument(
        "--factor-backtests",
        choices=["real", "simulated"],
        default="real",
        help="the factor phase's backtests: real qrun (default) or the offline rehearsal's simulation",
    )
    args = ap.parse_args()
    if not (qlib_venv() / "bin" / "qrun").exists():
        sys.exit(f"no Qlib venv at {qlib_venv()}: run `make qlib-env` first")
    try:
        line = run(args.workdir, args.factor_loops, args.factor_backtests)
    except E2EError as e:
        sys.exit(f"e2e FAILED: {e}")
    print(line)


if __name__ == "__main__":
    main()
