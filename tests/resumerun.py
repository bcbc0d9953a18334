"""Saving an RD-Agent run and resuming a checkpoint as a user would (the CLI in a fresh, offline folder),
for the resume, merge and attack tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trace_ckpt.cli import main

TRACE_CKPT = Path(sys.executable).parent / "trace-ckpt"


def save_run(run: Path, out: Path, *extra: str) -> Path:
    """`trace-ckpt save RUN OUT` of a run made with the offline examples; asserts it succeeded."""
    with pytest.raises(SystemExit) as e:
        main(["save", str(run), str(out), "--allow-module", "examples", *extra])
    assert e.value.code == 0
    return out


def resume_in_fresh_folder(
    workdir: Path, ckpt: Path, *args: str, data: bool = False, trust: bool = True
) -> tuple[subprocess.CompletedProcess, Path]:
    """Run the CLI as a user would, offline, in a folder with no cache and no data folder (with the
    factor data folder if ``data``: RD-Agent's quant scenario reads it, its factor rounds run factor code).
    The test's checkpoints are unsigned, so ``--trust`` is passed unless ``trust`` is False."""
    from examples.offline.run import offline_env, prepare_data

    workdir.mkdir(parents=True, exist_ok=True)
    if data:
        prepare_data(workdir)
    marker = workdir / "FACTOR_CODE_RAN"
    spy = workdir / "python-spy.sh"
    spy.write_text(f'#!/bin/sh\necho "$@" >> {marker}\nexec {sys.executable} "$@"\n')
    spy.chmod(0o755)
    env = {
        **os.environ,
        **offline_env(workdir, "model"),
        "FACTOR_CoSTEER_PYTHON_BIN": str(spy),
        "TRACE_CKPT_OFFLINE_PROMPT_LOG": str(workdir / "prompts.jsonl"),
    }
    proc = subprocess.run(
        [str(TRACE_CKPT), "resume", str(ckpt), *args, "--allow-module", "examples", *(["--trust"] if trust else [])],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert data or not Path(env["FACTOR_CoSTEER_DATA_FOLDER"]).exists()
    return proc, Path(env["LOG_TRACE_PATH"])


def backtests(workdir: Path) -> list[str]:
    """The backtest entries the offline Qlib stand-in was called with in ``workdir``, in order."""
    return [json.loads(line)["entry"] for line in (workdir / "backtest_calls.jsonl").read_text().splitlines()]
