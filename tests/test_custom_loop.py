"""examples/custom_loop.py runs as its docstring shows, on a checkpoint like the one `make demo` writes:
`python examples/custom_loop.py demo-out/run1.tckpt run2.tckpt --allow-module examples`, with nothing
else set up (no PYTHONPATH, no allowlist in the environment). It ended in a traceback: the demo's classes
were not importable from a script, then the save refused the classes the restore had been allowed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from trace_ckpt.ckpt import read_manifest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "custom_loop.py"
_SET_BY_TESTS = (
    "PYTHONPATH",
    "TRACE_CKPT_ALLOW_MODULES",
    "WORKSPACE_PATH",
    "LOG_TRACE_PATH",
    "PICKLE_CACHE_FOLDER_PATH_STR",
)


def as_documented(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    cwd.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in _SET_BY_TESTS}
    argv = [sys.executable, str(SCRIPT), *args]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_custom_loop_runs_as_documented_on_a_demo_checkpoint(factor_ckpt: Path, tmp_path: Path) -> None:
    cwd = tmp_path / "user"
    r = as_documented(cwd, str(factor_ckpt), "run2.tckpt", "--allow-module", "examples", "--workspace-root", "ws")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "3 accepted experiments become based_experiments" in r.stdout and "Traceback" not in r.stderr
    m = read_manifest(cwd / "run2.tckpt")
    assert m.counts.hist == 5 and m.counts.model_experiments == 1 and m.nodes[-1].loop_id == 4
    assert sorted(p.name for p in cwd.iterdir()) == ["run2.tckpt", "ws"]  # no RD-Agent log, no other workspace


def test_custom_loop_bad_input_is_one_line(factor_ckpt: Path, tmp_path: Path) -> None:
    r = as_documented(tmp_path / "user", str(factor_ckpt), "run2.tckpt", "--workspace-root", "ws")  # no --allow-module
    assert r.returncode == 6 and r.stderr.startswith("custom_loop: error: ") and r.stderr.count("\n") == 1
    assert "--allow-module examples" in r.stderr
