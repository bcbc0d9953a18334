"""What the writing commands do with their output (issue 14): an existing OUT is refused unless --force, a bad
OUT fails before the slow part, the extension names the format, and save says what a non-dump is."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.clirun import WRITING_COMMANDS, saved_run, writing_command
from tests.clirun import run_cli as run
from trace_ckpt.errors import CorruptCheckpointError, OutputExistsError, SaveError


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return saved_run(tmp_path_factory.mktemp("outputs"))


@pytest.mark.parametrize("command", WRITING_COMMANDS)
def test_an_existing_output_is_replaced_only_with_force(
    capsys: pytest.CaptureFixture[str], ckpt: Path, tmp_path: Path, command: str
) -> None:
    out = tmp_path / ("out.parquet" if command == "export-factors" else "out.tckpt")
    out.write_bytes(b"precious")
    args = writing_command(command, ckpt, out)
    code, _, err = run(capsys, *args)
    assert code == OutputExistsError.exit_code and "--force" in err and err.count("\n") == 1, err
    assert out.read_bytes() == b"precious"
    code, _, err = run(capsys, *args, "--force")
    assert code == 0 and out.read_bytes() != b"precious", err


@pytest.mark.parametrize("command", WRITING_COMMANDS)
def test_a_folder_as_output_fails_before_the_slow_part(
    capsys: pytest.CaptureFixture[str], ckpt: Path, tmp_path: Path, command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The output is checked first: the loading and writing (seconds on a real run) never start."""

    def slow(*a: object, **k: object) -> None:
        raise AssertionError("the slow part started before the output was checked")

    for target in (
        "trace_ckpt.rdagent.sessions.load_session",
        "trace_ckpt.rdagent.surgery.prune",
        "trace_ckpt.rdagent.surgery.merge",
        "trace_ckpt.export.export_factors",
    ):
        monkeypatch.setattr(target, slow)
    folder = tmp_path / ("folder.parquet" if command == "export-factors" else "folder.tckpt")
    folder.mkdir()
    code, _, err = run(capsys, *writing_command(command, ckpt, folder))
    assert code == SaveError.exit_code and "folder" in err and err.count("\n") == 1, err
    code, _, err = run(capsys, *writing_command(command, ckpt, tmp_path / "no" / "such" / folder.name))
    assert code == SaveError.exit_code and "does not exist" in err, err


@pytest.mark.parametrize("ext", ["csv", "feather"])
def test_export_writes_the_format_the_extension_names(
    capsys: pytest.CaptureFixture[str], ckpt: Path, tmp_path: Path, ext: str
) -> None:
    out = tmp_path / f"f.{ext}"
    code, _, err = run(capsys, "export-factors", ckpt, out)
    assert code == 0, err
    values = pd.read_csv(out) if ext == "csv" else pd.read_feather(out)
    assert list(values.columns) == ["datetime", "instrument", "factor_0", "factor_2", "factor_3"]
    assert len(values) > 0 and not out.read_bytes().startswith(b"PAR1")


@pytest.mark.parametrize(
    "option", [["export-factors", "{ckpt}", "{tmp}/f.xlsx"], ["inspect", "{ckpt}", "--plot", "{tmp}/p.jpg"]]
)
def test_an_unknown_extension_is_refused(
    capsys: pytest.CaptureFixture[str], ckpt: Path, tmp_path: Path, option: list[str]
) -> None:
    args = [a.format(ckpt=ckpt, tmp=tmp_path) for a in option]
    code, out, err = run(capsys, *args)
    assert code == 2 and out == "" and "extension" in err and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("ext", "magic"), [("svg", b"<?xml"), ("pdf", b"%PDF"), ("png", b"\x89PNG")])
def test_plot_writes_the_format_the_extension_names(
    capsys: pytest.CaptureFixture[str], ckpt: Path, tmp_path: Path, ext: str, magic: bytes
) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / f"trace.{ext}"
    code, _, err = run(capsys, "inspect", ckpt, "--plot", out)
    assert code == 0 and out.read_bytes().startswith(magic), err


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (None, "is a trace-ckpt checkpoint"),
        (b"", "is empty"),
        (b"loop: 3\nnot a dump\n", "is a text file"),
    ],
)
def test_save_says_what_a_non_dump_is(
    capsys: pytest.CaptureFixture[str], ckpt: Path, tmp_path: Path, content: bytes | None, said: str
) -> None:
    source = tmp_path / "input"
    source.write_bytes(ckpt.read_bytes() if content is None else content)
    code, _, err = run(capsys, "save", source, tmp_path / "out.tckpt")
    assert code == CorruptCheckpointError.exit_code and said in err and "--trust-legacy" not in err, err
    assert err.count("\n") == 1
