"""The examples run as documented."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.builders import build_trace, data_folder
from trace_ckpt import read_manifest, save_trace

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_custom_loop_example(tmp_path: Path) -> None:
    trace = build_trace([(), (0,), (1,)], [True, False, True], data_folder(tmp_path / "data"), loop_ids=[0, 1, 2])
    save_trace(trace, tmp_path / "run1.tckpt")
    env = {**os.environ, "WORKSPACE_PATH": str(tmp_path / "ws"), "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "custom_loop.py"),
            str(tmp_path / "run1.tckpt"),
            str(tmp_path / "run2.tckpt"),
            "--workspace-root",
            str(tmp_path / "ws"),
            "--allow-module",
            "tests",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 accepted experiments become based_experiments" in r.stdout
    m = read_manifest(tmp_path / "run2.tckpt")
    assert m.counts.hist == 4 and m.counts.model_experiments == 1 and m.counts.factor_experiments == 3
    assert m.nodes[-1].loop_id == 3 and m.nodes[-1].parents == [2]


@pytest.mark.slow
def test_demo_runs_the_two_phase_rehearsal(tmp_path: Path) -> None:
    """What `make demo` runs (after its install step), in a fresh folder."""
    r = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py"), str(tmp_path / "demo-out")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=900,
    )
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "the first model experiment received 3 SOTA factor experiments" in r.stdout
    assert "conf_sota_factors_model.yaml" in r.stdout and "simulated" in r.stdout
    assert (tmp_path / "demo-out" / "run1.tckpt").exists()
    # the commands it prints for the user were each run through demo.env by the demo itself (it exits 1 otherwise)
    assert ". demo-out/demo.env" in r.stdout and "trace-ckpt prune demo-out/run1.tckpt" in r.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["demo-out"]  # no RD-Agent log/ in the folder it ran in

    # the picture: a valid PNG of the both-phases checkpoint, one point per node with an IC
    from matplotlib.image import imread

    from tests.pictures import PNG_MAGIC, points
    from trace_ckpt.plot import KEY_IC, plot_manifest

    png, both = tmp_path / "demo-out" / "trace.png", read_manifest(tmp_path / "demo-out" / "run2.tckpt")
    assert png.read_bytes()[:8] == PNG_MAGIC
    fig = plot_manifest(both)
    assert imread(png).shape[:2] == (round(fig.get_figheight() * 100), round(fig.get_figwidth() * 100))
    phase1 = read_manifest(tmp_path / "demo-out" / "run1.tckpt")
    expected = [n.index for n in both.nodes if KEY_IC in n.metrics]
    assert len(both.nodes) == phase1.counts.hist + 2 and len(expected) == len(both.nodes)  # every node was backtested
    assert sorted(points(fig, KEY_IC)) == expected
    assert {n.kind for n in both.nodes} == {"factor", "model"}
    assert f"plot: {png} ({len(expected)} nodes with an IC" in r.stdout


def test_two_phase_script_parses_and_uses_real_options() -> None:
    """examples/two_phase.sh needs a real LLM, so it is not run here: it must parse, and every trace-ckpt
    command and option it uses must exist."""
    import re

    import typer.main

    from trace_ckpt.cli import app

    script = ROOT / "examples" / "two_phase.sh"
    r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert "set -euo pipefail" in text
    commands = typer.main.get_command(app).commands
    used = set(re.findall(r"^\s*trace-ckpt ([a-z-]+)", text, flags=re.M))
    assert used >= {"save", "verify", "inspect", "resume"} and used <= set(commands), used
    options = {o for name in used for p in commands[name].params for o in p.opts if o.startswith("--")}
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())  # options in code, not comments
    assert set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", code)) <= options
