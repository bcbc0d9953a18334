"""An output that appears while a writing command runs is not replaced either (issue 14, "no command replaces an
existing file unless asked"): the early check passes, the file appears during the slow part, and the commit at
the end refuses it (exit 7), leaving the file as it was."""

from __future__ import annotations

from pathlib import Path

import pytest

import trace_ckpt.storage
from tests.clirun import WRITING_COMMANDS, saved_run, writing_command
from tests.clirun import run_cli as run
from trace_ckpt.errors import OutputExistsError


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return saved_run(tmp_path_factory.mktemp("race"))


@pytest.mark.parametrize("command", WRITING_COMMANDS)
def test_an_output_appearing_during_the_command_is_kept(
    capsys: pytest.CaptureFixture[str], ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    out = tmp_path / ("out.parquet" if command == "export-factors" else "out.tckpt")
    real = trace_ckpt.storage.check_output

    def check_then_someone_writes(path: object, *, overwrite: bool = False) -> None:
        real(path, overwrite=overwrite)
        out.write_bytes(b"written by another process meanwhile")

    monkeypatch.setattr(trace_ckpt.storage, "check_output", check_then_someone_writes)
    code, _, err = run(capsys, *writing_command(command, ckpt, out))
    assert code == OutputExistsError.exit_code and err.count("\n") == 1, err
    assert out.read_bytes() == b"written by another process meanwhile"
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temporary file left beside it


def test_force_replaces_it(capsys: pytest.CaptureFixture[str], ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.tckpt"
    out.write_bytes(b"old")
    code, _, err = run(capsys, "prune", ckpt, out, "--keep", "sota", "--force")
    assert code == 0 and out.read_bytes()[:8] == b"TRACECKP", err
