"""Commands leave in the current folder only what they promised: RD-Agent's logger writes its
`log/<timestamp>/debug_tpl/...pkl` files on import of rdagent.utils.env, which unpickling a trace does;
only `resume` and `run` may write RD-Agent logs, where the user said."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).parent / "trace-ckpt"
# RD-Agent's defaults, as a user has them: everything relative to the current folder
_CWD_DEFAULTS = ("LOG_TRACE_PATH", "WORKSPACE_PATH", "PICKLE_CACHE_FOLDER_PATH_STR")


def user_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _CWD_DEFAULTS}
    env["PYTHONPATH"] = str(ROOT)  # the offline stand-in classes the checkpoints hold
    return env


def run_in(cwd: Path, *argv: str) -> subprocess.CompletedProcess:
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(list(argv), cwd=cwd, env=user_env(), capture_output=True, text=True, timeout=300)


def held(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("command", ["save", "prune", "merge", "restore_trace"])
def test_command_leaves_only_its_output(command: str, factor_run: Path, factor_ckpt: Path, tmp_path: Path) -> None:
    cwd = tmp_path / command
    argv = {
        "save": [str(CLI), "save", str(factor_run), "out.tckpt", "--allow-module", "examples"],
        "prune": [str(CLI), "prune", str(factor_ckpt), "out.tckpt", "--keep", "sota", "--allow-module", "examples"],
        "merge": [str(CLI), "merge", str(factor_ckpt), str(factor_ckpt), "out.tckpt", "--allow-module", "examples"],
        "restore_trace": [
            sys.executable,
            "-c",
            "import sys; from trace_ckpt import restore_trace; "
            "restore_trace(sys.argv[1], workspace_root='ws', allow_modules=['examples'])",
            str(factor_ckpt),
        ],
    }[command]
    r = run_in(cwd, *argv)
    assert r.returncode == 0, r.stderr[-2000:]
    assert held(cwd) == (["ws"] if command == "restore_trace" else ["out.tckpt"])
