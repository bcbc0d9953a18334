"""Checkpoint.open, the one way to read a checkpoint, and Options, the settings resolved once and passed down."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.builders import build_trace, data_folder
from trace_ckpt import Checkpoint, CorruptCheckpointError, Options, UntrustedContentError, read_manifest, save_trace


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("open")
    save_trace(build_trace([(), (0,), (0,)], [True, False, True], data_folder(d / "data")), d / "run.tckpt")
    return d / "run.tckpt"


def _flip(src: Path, dst: Path, kind: str) -> Path:
    s = next(s for s in read_manifest(src).sections if s.kind == kind)
    data = bytearray(src.read_bytes())
    data[s.offset + s.length // 2] ^= 0x01
    dst.write_bytes(bytes(data))
    return dst


def test_each_part_is_read_when_asked_and_once(ckpt: Path, tmp_path: Path) -> None:
    bad = _flip(ckpt, tmp_path / "bad-graph.tckpt", "graph")
    with Checkpoint.open(bad) as ck:  # the graph is not read: the manifest, files index and blobs are fine
        assert ck.manifest.counts.hist == 3 and ck.signature == "unsigned"
        assert ck.files is ck.files and ck.files.workspaces
        with pytest.raises(CorruptCheckpointError, match="fail their checksum"):
            _ = ck.root
    with Checkpoint.open(ckpt) as ck:
        assert ck.root is ck.root and len(ck.root.hist) == 3


def test_the_signature_is_checked_at_open_with_the_options_given(ckpt: Path) -> None:
    required = Options.resolve(require_signature=True)
    with (
        pytest.raises(UntrustedContentError, match="unsigned and a signature is required"),
        Checkpoint.open(ckpt, required),
    ):
        pass
    with Checkpoint.open(ckpt, required, check=False) as ck:  # what inspect and verify do: report, not refuse
        assert ck.manifest.signature is None


def test_options_are_resolved_once_and_a_calls_choices_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACE_CKPT_LEVEL", "7")
    monkeypatch.setenv("TRACE_CKPT_ALLOW_CLASSES", '["pkg.Cls"]')
    monkeypatch.setenv("TRACE_CKPT_RESUME_SETUP", "pkg.hooks:setup")
    opts = Options.resolve(allow_modules=["extra"])
    monkeypatch.setenv("TRACE_CKPT_LEVEL", "9")  # read once: a later change does not reach these options
    assert opts.level == 7 and opts.settings.resume_setup == "pkg.hooks:setup"
    assert opts.allowed[-2:] == ("pkg.Cls", "extra")
    chosen = opts.with_choices(level=1, require_signature=True)
    assert (chosen.level, chosen.require_signature, opts.require_signature) == (1, True, False)
    assert opts.with_choices() is opts


def test_reading_the_manifest_needs_no_settings(ckpt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`inspect` reads the manifest only: settings it does not use (here one that does not parse) are not read."""
    monkeypatch.setenv("TRACE_CKPT_LEVEL", "not-a-number")
    assert read_manifest(ckpt).counts.hist == 3
