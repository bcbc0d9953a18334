"""Signed checkpoints: saves sign with the configured key; loads refuse another key; verify reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.builders import build_trace, data_folder
from tests.clirun import run_cli as _cli
from trace_ckpt import (
    CorruptCheckpointError,
    UntrustedContentError,
    read_manifest,
    restore_trace,
    save_trace,
    verify_checkpoint,
)
from trace_ckpt.signing import SigningKeyError, key_id

KEY = "a-signing-key-of-at-least-32-bytes-long!"
OTHER = "another-signing-key-of-32-bytes-or-more"


@pytest.fixture()
def trace(tmp_path: Path):
    return build_trace([(), (0,)], [True, False], data_folder(tmp_path / "data"), write_outputs=False)


def test_signed_roundtrip_and_wrong_key(tmp_path: Path, trace, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("TRACE_CKPT_SIGNING_KEY", KEY)
    m = save_trace(trace, tmp_path / "s.tckpt")
    assert m.signature is not None and read_manifest(tmp_path / "s.tckpt").signature.key_id == m.signature.key_id
    assert verify_checkpoint(tmp_path / "s.tckpt").signature == "ok"
    assert len(restore_trace(tmp_path / "s.tckpt", workspace_root=tmp_path / "ws1").hist) == 2
    code, out, _ = _cli(capsys, "verify", tmp_path / "s.tckpt", "--require-signature")
    assert code == 0 and "signature ok" in out

    monkeypatch.setenv("TRACE_CKPT_SIGNING_KEY", OTHER)
    assert verify_checkpoint(tmp_path / "s.tckpt").signature == "bad"
    with pytest.raises(UntrustedContentError, match="signed with another key"):
        restore_trace(tmp_path / "s.tckpt", workspace_root=tmp_path / "ws2")
    assert not (tmp_path / "ws2").exists()
    code, _, err = _cli(capsys, "verify", tmp_path / "s.tckpt")
    assert code == UntrustedContentError.exit_code and "bad signature" in err


def test_unsigned_file_and_require_signature(tmp_path: Path, trace, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    save_trace(trace, tmp_path / "u.tckpt")
    assert verify_checkpoint(tmp_path / "u.tckpt").signature == "unsigned"
    with pytest.raises(UntrustedContentError, match="unsigned"):
        restore_trace(tmp_path / "u.tckpt", workspace_root=tmp_path / "ws", require_signature=True)
    code, out, _ = _cli(capsys, "verify", tmp_path / "u.tckpt")
    assert code == 0 and "unsigned" in out
    code, _, err = _cli(capsys, "verify", tmp_path / "u.tckpt", "--require-signature")
    assert code == UntrustedContentError.exit_code and "unsigned" in err
    monkeypatch.setenv("TRACE_CKPT_REQUIRE_SIGNATURE", "true")
    with pytest.raises(UntrustedContentError):
        restore_trace(tmp_path / "u.tckpt", workspace_root=tmp_path / "ws")


def test_signed_file_without_a_key_loads_with_a_warning(tmp_path: Path, trace, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    monkeypatch.setenv("TRACE_CKPT_SIGNING_KEY", KEY)
    save_trace(trace, tmp_path / "s.tckpt")
    monkeypatch.delenv("TRACE_CKPT_SIGNING_KEY")
    assert verify_checkpoint(tmp_path / "s.tckpt").signature == "unchecked"
    with caplog.at_level("WARNING", logger="trace_ckpt"):
        restore_trace(tmp_path / "s.tckpt", workspace_root=tmp_path / "ws")
    assert "not checked" in caplog.text
    with pytest.raises(UntrustedContentError, match="no key is configured"):
        restore_trace(tmp_path / "s.tckpt", workspace_root=tmp_path / "ws", require_signature=True)


def test_key_file_and_rdagent_key(tmp_path: Path, trace, monkeypatch: pytest.MonkeyPatch) -> None:
    key_file = tmp_path / "k.key"
    key_file.write_bytes(b"k" * 40)
    monkeypatch.setenv("TRACE_CKPT_SIGNING_KEY_FILE", str(key_file))
    m = save_trace(trace, tmp_path / "f.tckpt")
    assert m.signature.key_id == key_id(b"k" * 40)
    monkeypatch.delenv("TRACE_CKPT_SIGNING_KEY_FILE")
    from rdagent.core.conf import RD_AGENT_SETTINGS

    monkeypatch.setattr(RD_AGENT_SETTINGS, "artifact_signing_key", "rdagent-artifact-key-with-32-bytes-or-more")
    monkeypatch.setenv("TRACE_CKPT_USE_RDAGENT_KEY", "true")
    m2 = save_trace(trace, tmp_path / "r.tckpt")
    assert m2.signature is not None and m2.signature.key_id != m.signature.key_id
    assert verify_checkpoint(tmp_path / "r.tckpt").signature == "ok"


def test_short_key_is_a_clear_error(tmp_path: Path, trace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACE_CKPT_SIGNING_KEY", "short")
    with pytest.raises(SigningKeyError, match="at least 32 bytes"):
        save_trace(trace, tmp_path / "x.tckpt")
    assert not (tmp_path / "x.tckpt").exists()


def test_stripping_the_signature_is_detected(tmp_path: Path, trace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACE_CKPT_SIGNING_KEY", KEY)
    save_trace(trace, tmp_path / "s.tckpt")
    data = bytearray((tmp_path / "s.tckpt").read_bytes())
    data[-40:-8] = bytes(32)  # zero the HMAC, leave the manifest saying "signed"
    (tmp_path / "x.tckpt").write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match="disagree"):
        read_manifest(tmp_path / "x.tckpt")
