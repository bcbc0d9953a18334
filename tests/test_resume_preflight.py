"""`resume` checks what the chosen phase needs before RD-Agent starts (one line, exit 15, nothing written),
says what it would run with --dry-run, takes an autosave folder's latest checkpoint, and never runs
unbounded without saying so; no documented resume line is unbounded."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from trace_ckpt.errors import NotReadyError

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).parent / "trace-ckpt"


def bare_env(home: Path, **extra: str) -> dict[str, str]:
    """A machine with RD-Agent's defaults and nothing else: no conda, no Docker, no LLM key, no data."""
    home.mkdir(parents=True, exist_ok=True)
    return {
        "HOME": str(home),
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),  # the offline run's classes, which the checkpoint holds
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "ARTIFACT_SIGNING_KEY": os.environ["ARTIFACT_SIGNING_KEY"],
        "DOCKER_HOST": f"unix://{home}/no-docker.sock",
        **extra,
    }


def resume_cli(cwd: Path, env: dict[str, str], ckpt: Path | str, *args: str) -> subprocess.CompletedProcess:
    cwd.mkdir(parents=True, exist_ok=True)
    argv = [str(CLI), "resume", str(ckpt), *args, "--allow-module", "examples", "--trust"]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_model_phase_without_a_qlib_runtime_stops_before_rdagent(factor_ckpt: Path, tmp_path: Path) -> None:
    """Was: `unexpected AttributeError: 'NoneType' object has no attribute 'group'` (exit 1), after the
    restore, with log/ and git_ignore_folder/ left in the folder."""
    cwd = tmp_path / "box"
    r = resume_cli(cwd, bare_env(tmp_path / "home"), factor_ckpt, "--only", "model", "--loop-n", "1")
    assert r.returncode == NotReadyError.exit_code, r.stderr[-2000:]
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("trace-ckpt: error: resume --only model cannot run")
    assert "rdagent4qlib" in r.stderr and "OPENAI_API_KEY" in r.stderr  # the Qlib runtime and the LLM key
    assert list(cwd.iterdir()) == []


def test_factor_phase_without_data_or_docker_stops_before_rdagent(factor_ckpt: Path, tmp_path: Path) -> None:
    """Was: `unexpected DockerException` (RD-Agent builds a missing factor data folder in Docker)."""
    cwd = tmp_path / "box"
    env = bare_env(tmp_path / "home", MODEL_CoSTEER_ENV_TYPE="docker", CONDA_DEFAULT_ENV="base", OPENAI_API_KEY="x")
    r = resume_cli(cwd, env, factor_ckpt, "--only", "factor", "--loop-n", "1")
    assert r.returncode == NotReadyError.exit_code, r.stderr[-2000:]
    assert r.stderr.count("\n") == 1
    assert "no Docker for Qlib" in r.stderr and "daily_pv.h5" in r.stderr and "FACTOR_CoSTEER_DATA_FOLDER" in r.stderr
    assert "OPENAI_API_KEY" not in r.stderr  # what is there is not reported
    assert list(cwd.iterdir()) == []


def offline(workdir: Path) -> dict[str, str]:
    from examples.offline.run import offline_env

    return {**os.environ, **offline_env(workdir, "model")}


def test_dry_run_says_what_would_run_and_starts_nothing(factor_ckpt: Path, tmp_path: Path) -> None:
    from trace_ckpt.ckpt import read_manifest

    cwd = tmp_path / "box"
    r = resume_cli(cwd, offline(cwd), factor_ckpt, "--only", "model", "--loop-n", "2", "--dry-run", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    plan = json.loads(r.stdout)
    m = read_manifest(factor_ckpt)
    assert plan["checkpoint"] == str(factor_ckpt) and plan["phase"] == "model"
    assert plan["restored_nodes"] == len(m.nodes) == 4 and plan["restored_loop_ids"] == [0, 1, 2, 3]
    assert plan["new_loop_ids"] == [4, 5] and plan["not_ready"] is None
    accepted = [n for n in m.nodes if n.decision and n.kind == "factor"]
    assert plan["sota_factor_experiments"] == len(accepted) == 3 and len(plan["sota_factors"]) == 3
    assert len(plan["base_features"]) == 20 and plan["base_features_from"] == "the checkpoint's plan"
    assert not cwd.exists() or list(cwd.iterdir()) == []  # no log folder, no workspaces, no cache

    text = resume_cli(cwd, offline(cwd), factor_ckpt, "--only", "model", "--dry-run")
    assert text.returncode == 0, text.stderr[-2000:]
    assert "dry run: nothing started" in text.stdout and "bound: none: RD-Agent runs until you stop it" in text.stdout
    assert "SOTA factors: 3" in text.stdout and "new loop ids: from 4, no loop count" in text.stdout


def test_dry_run_of_an_unready_machine_prints_the_plan_and_exits_15(factor_ckpt: Path, tmp_path: Path) -> None:
    r = resume_cli(tmp_path / "box", bare_env(tmp_path / "home"), factor_ckpt, "--only", "model", "--dry-run")
    assert r.returncode == NotReadyError.exit_code
    assert "restored nodes: 4" in r.stdout and "NOT ready:" in r.stdout and r.stderr.count("\n") == 1


def test_resume_of_an_autosave_folder_takes_its_latest_checkpoint(factor_ckpt: Path, tmp_path: Path) -> None:
    folder = tmp_path / "ckpts"
    folder.mkdir()
    for name in ("loop-0001.tckpt", "loop-0003.tckpt", "notes.tckpt"):
        shutil.copy(factor_ckpt, folder / name)
    r = resume_cli(tmp_path / "box", offline(tmp_path / "box"), folder, "--only", "model", "--dry-run", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout)["checkpoint"] == str(folder / "loop-0003.tckpt")
    empty = tmp_path / "empty"
    empty.mkdir()
    r = resume_cli(tmp_path / "box", offline(tmp_path / "box"), empty, "--only", "model", "--dry-run")
    assert r.returncode == 3 and "autosave" in r.stderr and r.stderr.count("\n") == 1


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.text = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.text += record.getMessage() + "\n"


def test_an_unbounded_resume_says_so_when_it_starts(
    factor_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trace_ckpt.rdagent import resume as resume_mod

    class Started(Exception):
        pass

    def no_loop(only: object) -> None:
        raise Started  # the point where RD-Agent's loop would be built

    monkeypatch.setattr(resume_mod, "_settings_and_loop", no_loop)
    monkeypatch.setattr(resume_mod, "check_ready", lambda only, setup=None: ["stand-in"])
    seen = _Records()
    logging.getLogger("trace_ckpt").addHandler(seen)
    kwargs = {"log_dir": tmp_path / "log", "workspace_root": tmp_path / "ws", "trust": True}
    try:
        with pytest.raises(Started):
            resume_mod.resume(factor_ckpt, loop_n=3, allow_modules=["examples"], **kwargs)
        assert "until you stop it" not in seen.text
        with pytest.raises(Started):
            resume_mod.resume(factor_ckpt, allow_modules=["examples"], **kwargs)
    finally:
        logging.getLogger("trace_ckpt").removeHandler(seen)
    assert "no --loop-n, --step-n or --all-duration: RD-Agent runs until you stop it (Ctrl-C)" in seen.text


_RESUME_LINE = re.compile(r"^\s*(?:[A-Z_]+=\S+\s+)*(?:dotenv run -- )?trace-ckpt resume\b(.*)$")


def test_no_documented_resume_line_runs_unbounded() -> None:
    """README's `resume run1.tckpt --only model --base-features alpha22/` ran 110+ loops offline."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "examples").rglob("*.md"))]
    shown, unbounded = 0, []
    for page in pages:
        for line in page.read_text().splitlines():
            m = _RESUME_LINE.match(line)
            if m:
                shown += 1
                if not re.search(r"--(loop-n|step-n|all-duration|dry-run)\b", m.group(1)):
                    unbounded.append(f"{page.relative_to(ROOT)}: {line.strip()}")
    assert shown >= 5 and not unbounded, unbounded
    script = (ROOT / "examples" / "two_phase.sh").read_text()
    assert re.search(r"args=\(.*--loop-n", script)  # its resume line takes the bound from this array
