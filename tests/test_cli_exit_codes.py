"""``ls`` and the URL errors get the codes docs/cli.md's table promises (issue 14): an empty prefix lists like an
empty folder, ``ls FILE`` lists that file, an unknown protocol and an unreachable server are one line each."""

from __future__ import annotations

import socket
from pathlib import Path

import fsspec
import pytest

from tests.clirun import run_cli as run
from tests.clirun import saved_run
from tests.s3server import s3_server
from trace_ckpt.errors import CheckpointNotFoundError, CorruptCheckpointError, MissingExtraError, StorageAccessError


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return saved_run(tmp_path_factory.mktemp("codes"))


@pytest.fixture(scope="module")
def s3_env():
    with s3_server() as server, pytest.MonkeyPatch.context() as mp:
        for k, v in server.env.items():
            mp.setenv(k, v)
        fsspec.filesystem("s3").clear_instance_cache()
        yield server
        fsspec.filesystem("s3").clear_instance_cache()


def test_an_empty_prefix_lists_like_an_empty_folder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, s3_env: object
) -> None:
    code, out, err = run(capsys, "ls", tmp_path)
    assert (code, out, err) == (0, f"no checkpoints in {tmp_path}\n", "")
    code, out, err = run(capsys, "ls", "s3://research/nothing-here/")
    assert (code, out, err) == (0, "no checkpoints in s3://research/nothing-here/\n", "")
    code, _, err = run(capsys, "ls", "s3://no-such-bucket/runs/")
    assert code == CheckpointNotFoundError.exit_code and err.count("\n") == 1, err
    code, _, err = run(capsys, "ls", tmp_path / "no-such-folder")
    assert code == CheckpointNotFoundError.exit_code and err.count("\n") == 1, err


def test_ls_of_a_file_lists_that_file(capsys: pytest.CaptureFixture[str], ckpt: Path, tmp_path: Path) -> None:
    code, out, err = run(capsys, "ls", ckpt)
    assert code == 0 and err == "" and out.splitlines()[1].startswith(str(ckpt))
    junk = tmp_path / "notes.txt"
    junk.write_text("not a checkpoint\n")
    code, _, err = run(capsys, "ls", junk)
    assert code == CorruptCheckpointError.exit_code and "not a trace-ckpt checkpoint" in err


def test_an_unknown_protocol_and_an_unreachable_server(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["ls", "foo://bucket/runs/"], ["inspect", "foo://bucket/run.tckpt"]):
        code, _, err = run(capsys, *args)
        assert code == MissingExtraError.exit_code and "foo://" in err and err.count("\n") == 1, err
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for args in (["ls", f"http://127.0.0.1:{port}/runs/"], ["inspect", f"http://127.0.0.1:{port}/run.tckpt"]):
        code, _, err = run(capsys, *args)
        assert code == StorageAccessError.exit_code and err.count("\n") == 1, (args, err)
