"""The conventions of a command line (issue 14): --version, -h, completion, python -m, --quiet/--verbose,
Ctrl-C, and a JSON result from every command."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from tests.clirun import run_cli as run
from tests.clirun import saved_run
from trace_ckpt import __version__
from trace_ckpt.cli import app

ROOT = Path(__file__).resolve().parents[1]
STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return saved_run(tmp_path_factory.mktemp("conv"))


def test_version_and_short_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--version") == (0, f"trace-ckpt {__version__}\n", "")
    for args in (["-h"], ["inspect", "-h"], ["merge", "-h"]):
        code, out, err = run(capsys, *args)
        assert code == 0 and out.startswith("Usage: trace-ckpt") and err == "", args


def test_python_m_trace_ckpt_and_shell_completion() -> None:
    r = subprocess.run([sys.executable, "-m", "trace_ckpt", "--version"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and r.stdout == f"trace-ckpt {__version__}\n"
    exe = Path(sys.executable).parent / "trace-ckpt"
    # typer detects the calling shell and ignores "bash" unless told not to: under make (sh) it refused
    env = {**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    r = subprocess.run([str(exe), "--show-completion", "bash"], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0 and "_TRACE_CKPT_COMPLETE" in r.stdout, r.stderr


def test_quiet_and_verbose(capsys: pytest.CaptureFixture[str], ckpt: Path, tmp_path: Path) -> None:
    code, out, err = run(capsys, "save", ckpt.parent / "run", tmp_path / "q.tckpt", "--quiet")
    assert (code, out, err) == (0, "", "") and (tmp_path / "q.tckpt").exists()
    code, out, err = run(capsys, "verify", tmp_path / "q.tckpt", "-q")
    assert (code, out, err) == (0, "", "")
    code, out, err = run(capsys, "save", ckpt.parent / "run", tmp_path / "v.tckpt", "--verbose")
    assert code == 0 and out.startswith("saved ") and re.search(r"loaded .*4_record in [\d.]+ s", err), err


def test_ctrl_c_says_interrupted(
    capsys: pytest.CaptureFixture[str], ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C is one line and exit 130 (typer turned it into a silent exit 130)."""

    def interrupt(*a: object, **k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("trace_ckpt.rdagent.sessions.load_session", interrupt)
    code, out, err = run(capsys, "save", ckpt.parent / "run", ckpt.parent / "never.tckpt")
    assert (code, out, err) == (130, "", "trace-ckpt: interrupted\n")
    assert not (ckpt.parent / "never.tckpt").exists()


def test_ctrl_c_after_the_file_is_written_says_so(
    capsys: pytest.CaptureFixture[str], ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupt(*a: object, **k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("trace_ckpt.storage.size_of", interrupt)  # save asks the size after writing
    out_file = tmp_path / "done.tckpt"
    code, _, err = run(capsys, "save", ckpt.parent / "run", out_file)
    assert code == 130 and err == f"trace-ckpt: interrupted (after {out_file} was completely written)\n"
    assert out_file.exists()


def test_every_command_has_json_quiet_verbose() -> None:
    """resume, run and diff too (they had none, or --json only)."""
    group = typer.main.get_command(app)
    for name, cmd in group.commands.items():
        opts = {o for p in cmd.params for o in p.opts}
        assert {"--json", "--quiet", "--verbose"} <= opts, name


def test_json_results(capsys: pytest.CaptureFixture[str], ckpt: Path, tmp_path: Path) -> None:
    """A machine-readable result from the commands that write (one JSON object on stdout, nothing else)."""
    run_dir = ckpt.parent / "run"
    results = {}
    for name, args in {
        "save": ["save", run_dir, tmp_path / "a.tckpt"],
        "verify": ["verify", ckpt],
        "prune": ["prune", ckpt, tmp_path / "p.tckpt", "--keep", "sota"],
        "merge": ["merge", ckpt, tmp_path / "p.tckpt", tmp_path / "m.tckpt"],
        "export": ["export-factors", ckpt, tmp_path / "f.parquet"],
        "keygen": ["keygen", tmp_path / "key"],
    }.items():
        code, out, err = run(capsys, *args, "--json")
        assert code == 0 and out.count("\n") == 1, (name, out, err)
        results[name] = json.loads(out)
    assert results["save"]["nodes"] == 5 and STAMP.fullmatch(results["save"]["created_at"])
    assert results["save"]["size"] == (tmp_path / "a.tckpt").stat().st_size
    assert results["verify"]["ok"] is True and results["verify"]["signature"]["state"] == "unsigned"
    assert results["prune"]["kept"] == [2, 3]
    assert results["merge"]["nodes"] == 7 and results["merge"]["first_index"] == [0, 5]
    assert results["export"]["factors"] == ["factor_0", "factor_2", "factor_3"]
    assert results["keygen"]["key_id"].startswith("SHA256:")


def test_one_name_per_idea_with_the_old_spellings_kept(
    capsys: pytest.CaptureFixture[str], ckpt: Path, tmp_path: Path
) -> None:
    """save --loop-id (a loop; --loop-n is a count), run --keep-last (a count; prune --keep is a rule), run
    --base-features as resume has it; --loop, --keep and --base-features-path still work."""
    from trace_ckpt.cli.run import parse_rdagent_args

    for flag in ("--loop-id", "--loop"):
        code, out, _ = run(capsys, "save", ckpt.parent / "run", tmp_path / f"{flag}.tckpt", flag, "0")
        assert code == 0 and "from loop 0 step record" in out, flag
    for flag in ("--base-features", "--base-features-path", "--base_features_path"):
        assert parse_rdagent_args([flag, "alpha22/"])["base_features_path"] == "alpha22/"
    run_opts = {o for p in typer.main.get_command(app).commands["run"].params for o in p.opts}
    assert {"--keep-last", "--keep", "--keep-best"} <= run_opts


@pytest.mark.parametrize("spelling", ["model", "fin_model", "factor", "fin_factor", "quant", "fin_quant"])
def test_only_takes_the_phase_or_the_app_name(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, spelling: str
) -> None:
    """One name for one idea: `resume --only` takes the phase (model, factor) or the app `run` and RD-Agent name
    for it (fin_model, fin_factor; fin_quant is the mixed loop). A parsed option gets as far as the missing file."""
    code, _, err = run(capsys, "resume", tmp_path / "missing.tckpt", "--only", spelling, "--dry-run")
    assert code == 3 and "missing.tckpt" in err, err


def test_only_refuses_other_names(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "resume", tmp_path / "missing.tckpt", "--only", "models")
    assert code == 2 and "fin_model" in err, err
