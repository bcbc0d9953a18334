"""Run RD-Agent's own factor or model loop offline, in a fresh process, inside one work folder.

    python -m examples.offline.run factor --loops 4 --workdir /tmp/rehearsal
    python -m examples.offline.run model  --loops 1 --workdir /tmp/rehearsal

The folder gets the synthetic data, RD-Agent's workspaces, caches and logs; the log folder of the run
(the one holding ``__session__``) is printed. See README.md beside this file for what is simulated.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SIGNING_KEY = "trace-ckpt-offline-rehearsal-signing-key-0123456789"  # only for these rehearsals


def offline_env(workdir: Path, run_name: str = "run") -> dict[str, str]:
    """The environment (on top of os.environ) for RD-Agent to run offline in ``workdir``."""
    w = Path(workdir).absolute()
    data = w / "data"
    env = {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "WORKSPACE_PATH": str(w / "RD-Agent_workspace"),
        "PICKLE_CACHE_FOLDER_PATH_STR": str(w / "pickle_cache"),
        "LOG_TRACE_PATH": str(w / "log" / run_name),
        "FACTOR_CoSTEER_DATA_FOLDER": str(data / "factor_implementation_source_data"),
        "FACTOR_CoSTEER_DATA_FOLDER_DEBUG": str(data / "factor_implementation_source_data_debug"),
        "FACTOR_CoSTEER_PYTHON_BIN": sys.executable,
        "BACKEND": "examples.offline.llm.OfflineBackend",
        "QLIB_FACTOR_SCEN": "examples.offline.scenarios.OfflineQlibFactorScenario",
        "QLIB_FACTOR_CODER": "examples.offline.coders.OfflineFactorCoder",
        "QLIB_MODEL_SCEN": "examples.offline.scenarios.OfflineQlibModelScenario",
        "QLIB_MODEL_CODER": "examples.offline.coders.OfflineModelCoder",
        "QLIB_QUANT_SCEN": "examples.offline.scenarios.OfflineQlibQuantScenario",
        "QLIB_QUANT_FACTOR_CODER": "examples.offline.coders.OfflineFactorCoder",
        "QLIB_QUANT_MODEL_CODER": "examples.offline.coders.OfflineModelCoder",
        "ARTIFACT_SIGNING_KEY": os.environ.get("ARTIFACT_SIGNING_KEY", SIGNING_KEY),
        "TRACE_CKPT_OFFLINE_STATE": str(w / "offline_llm_state.json"),
        "TRACE_CKPT_OFFLINE_BACKTEST_LOG": str(w / "backtest_calls.jsonl"),
        "TRACE_CKPT_RESUME_SETUP": "examples.offline.backtest:install",
    }
    path = os.environ.get("PYTHONPATH", "")
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + path if path else "")
    return env


def prepare_data(workdir: Path) -> None:
    """Write the synthetic panel into the factor data folders of ``workdir`` (once)."""
    from examples.offline.panel import write_data_folders

    env = offline_env(workdir)
    full, debug = Path(env["FACTOR_CoSTEER_DATA_FOLDER"]), Path(env["FACTOR_CoSTEER_DATA_FOLDER_DEBUG"])
    if not (full / "daily_pv.h5").exists():
        write_data_folders(full, debug)


def _run(
    kind: str,
    workdir: Path,
    loop_n: int,
    run_name: str,
    setup: str | None,
    timeout: float,
    seed: int = 0,
    extra_env: dict[str, str] | None = None,
) -> Path:
    workdir = Path(workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    if kind == "factor":
        prepare_data(workdir)
    env = {**os.environ, **offline_env(workdir, run_name), "TRACE_CKPT_OFFLINE_SEED": str(seed), **(extra_env or {})}
    cmd = [sys.executable, "-m", "examples.offline.run", "_child", kind, "--loops", str(loop_n)]
    if setup:
        cmd += ["--setup", setup]
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    (workdir / f"{run_name}.out").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-4000:]
        raise RuntimeError(f"offline {kind} loop failed (exit {proc.returncode}); log tail:\n{tail}")
    return Path(env["LOG_TRACE_PATH"])


def run_factor_loop(
    workdir: Path,
    loop_n: int,
    *,
    run_name: str = "factor",
    timeout: float = 600,
    seed: int = 0,
    extra_env: dict[str, str] | None = None,
) -> Path:
    """Run RD-Agent's factor loop (fin_factor) for ``loop_n`` loops; return its log folder.

    ``seed`` != 0 simulates another LLM sample (see llm.py): other factor code, partly other factor names.
    """
    return _run("factor", workdir, loop_n, run_name, None, timeout, seed, extra_env)


def run_model_loop(
    workdir: Path, loop_n: int, *, setup: str | None = None, run_name: str = "model", timeout: float = 600
) -> Path:
    """Run RD-Agent's model loop (fin_model); ``setup`` ("module:function") gets the loop before it starts."""
    return _run("model", workdir, loop_n, run_name, setup, timeout)


def _child(kind: str, loop_n: int, setup: str | None) -> None:
    from examples.offline.backtest import install

    if os.environ.get("TRACE_CKPT_OFFLINE_BACKTEST", "simulated") == "simulated":
        install()  # otherwise RD-Agent's own Qlib environment runs qrun (examples/qlib_e2e.py)
    if kind == "factor":
        from rdagent.app.qlib_rd_loop.conf import FACTOR_PROP_SETTING as setting
        from rdagent.app.qlib_rd_loop.factor import FactorRDLoop as Loop
    else:
        from rdagent.app.qlib_rd_loop.conf import MODEL_PROP_SETTING as setting
        from rdagent.app.qlib_rd_loop.model import ModelRDLoop as Loop
    loop = Loop(setting)
    if setup:
        module, _, func = setup.partition(":")
        getattr(importlib.import_module(module), func)(loop)
    loop._init_base_features(None)
    asyncio.run(loop.run(loop_n=loop_n))


def main() -> None:
    ap = argparse.ArgumentParser(description="Run RD-Agent's own loop offline (simulated LLM and Qlib backtest).")
    ap.add_argument("kind", choices=["factor", "model", "_child"])
    ap.add_argument("child_kind", nargs="?", choices=["factor", "model"])
    ap.add_argument("--loops", type=int, default=4)
    ap.add_argument("--workdir", type=Path, default=Path("offline-run"))
    ap.add_argument("--setup", default=None)
    ap.add_argument("--seed", type=int, default=0, help="factor runs: simulate another LLM sample (see llm.py)")
    args = ap.parse_args()
    if args.kind == "_child":
        _child(args.child_kind, args.loops, args.setup)
        return
    if args.kind == "factor":
        print(run_factor_loop(args.workdir, args.loops, seed=args.seed))
    else:
        print(run_model_loop(args.workdir, args.loops))


if __name__ == "__main__":
    main()
