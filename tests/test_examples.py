"""The examples run as documented."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.builders import build_trace, data_folder
from trace_ckpt import read_manifest, save_trace

ROOT = Path(__file__).resolve().parents[1]


def test_custom_loop_example(tmp_path: Path) -> None:
    trace = build_trace([(), (0,), (1,)], [True, False, True], data_folder(tmp_path / "data"), loop_ids=[0, 1, 2])
    save_trace(trace, tmp_path / "run1.tckpt")
    env = {**os.environ, "WORKSPACE_PATH": str(tmp_path / "ws"), "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "custom_loop.py"), str(tmp_path / "run1.tckpt"),
         str(tmp_path / "run2.tckpt"), "--workspace-root", str(tmp_path / "ws"), "--allow-module", "tests"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 accepted experiments become based_experiments" in r.stdout
    m = read_manifest(tmp_path / "run2.tckpt")
    assert m.counts.hist == 4 and m.counts.model_experiments == 1 and m.counts.factor_experiments == 3
    assert m.nodes[-1].loop_id == 3 and m.nodes[-1].parents == [2]


def test_demo_runs_the_two_phase_rehearsal(tmp_path: Path) -> None:
    """What `make demo` runs (after its install step), in a fresh folder."""
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "demo.py"), str(tmp_path / "demo-out")],
                       capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "the first model experiment received 3 SOTA factor experiments" in r.stdout
    assert "conf_sota_factors_model.yaml" in r.stdout and "simulated" in r.stdout
    assert (tmp_path / "demo-out" / "run1.tckpt").exists()
