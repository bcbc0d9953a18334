"""Signed checkpoints: saves sign with the configured key; loads refuse another key; verify reports."""

from __future__ import annotations

import os
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


def test_signed_file_without_a_key_loads_with_a_warning(
    tmp_path: Path, trace, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
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


def test_signing_never_imports_rdagent_for_its_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """TRACE_CKPT_USE_RDAGENT_KEY: trace_ckpt.signing asks trace_ckpt.rdagent (which registers RD-Agent's key on
    import) and imports neither; the CLI loads it, so `verify` in a fresh process checks the signature."""
    import subprocess
    import sys

    env = {**os.environ, "TRACE_CKPT_USE_RDAGENT_KEY": "true"}
    probe = (
        "import sys\n"
        "from trace_ckpt.signing import SigningKeyError, configured_key\n"
        "try:\n    configured_key()\nexcept SigningKeyError as e:\n    print('refused:', e)\n"
        "print('rdagent imported:', 'rdagent' in sys.modules or 'trace_ckpt.rdagent' in sys.modules)\n"
    )
    got = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True).stdout
    assert "refused: TRACE_CKPT_USE_RDAGENT_KEY=true" in got and "rdagent imported: False" in got, got

    trace = build_trace([(), (0,)], [True, False], data_folder(tmp_path / "data"), write_outputs=False)
    monkeypatch.setenv("TRACE_CKPT_USE_RDAGENT_KEY", "true")
    save_trace(trace, tmp_path / "r.tckpt")  # RD-Agent's key: ARTIFACT_SIGNING_KEY (tests/conftest.py)
    cli = Path(sys.executable).parent / "trace-ckpt"
    done = subprocess.run([str(cli), "verify", str(tmp_path / "r.tckpt")], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and "signature ok" in done.stdout, (done.stdout, done.stderr)


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


# ------------------------------------------------------------------------ Ed25519: keys for teams


def _keygen(capsys, path: Path, comment: str) -> Path:
    code, out, _ = _cli(capsys, "keygen", path, "--comment", comment)
    assert code == 0 and comment in out
    return path


def _only_public(monkeypatch: pytest.MonkeyPatch, trusted: Path) -> None:
    """The model box: no secret of any kind in the environment, only trusted public keys."""
    for var in (
        "TRACE_CKPT_SIGNING_KEY",
        "TRACE_CKPT_SIGNING_KEY_FILE",
        "TRACE_CKPT_USE_RDAGENT_KEY",
        "TRACE_CKPT_PRIVATE_KEY_FILE",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TRACE_CKPT_TRUSTED_KEYS", str(trusted))


def test_ed25519_signs_on_one_box_and_verifies_with_the_public_key_only(
    tmp_path: Path, trace, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from trace_ckpt.format.reader import ContainerReader
    from trace_ckpt.signing import load_private_key, public_key_id
    from trace_ckpt.trust import signature_status

    key = _keygen(capsys, tmp_path / "factor-box", "alice@factor-box")
    assert (key.stat().st_mode & 0o777) == 0o600 and key.with_name("factor-box.pub").exists()
    monkeypatch.setenv("TRACE_CKPT_PRIVATE_KEY_FILE", str(key))
    m = save_trace(trace, tmp_path / "s.tckpt")
    kid = public_key_id(load_private_key(key).public_key())
    assert m.signature is not None and (m.signature.algorithm, m.signature.key_id) == ("ed25519", kid)
    assert verify_checkpoint(tmp_path / "s.tckpt").status.signer.startswith("this machine's key")

    _only_public(monkeypatch, tmp_path / "factor-box.pub")
    report = verify_checkpoint(tmp_path / "s.tckpt")
    assert report.ok and report.signature == "ok" and report.status.signer == "alice@factor-box"
    code, out, _ = _cli(capsys, "verify", tmp_path / "s.tckpt", "--require-signature")
    assert code == 0 and "signed by alice@factor-box, signature ok" in out and kid in out
    assert len(restore_trace(tmp_path / "s.tckpt", workspace_root=tmp_path / "ws", require_signature=True).hist) == 2
    with open(tmp_path / "s.tckpt", "rb") as f:  # the one question other code asks
        status = signature_status(ContainerReader(f))
    assert status.verified and status.signer == "alice@factor-box" and status.key_id == kid


def test_trusted_keys_folder_rotation_and_allowed_signers(
    tmp_path: Path, trace, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    old = _keygen(capsys, keys / "old", "team-2025")
    new = _keygen(capsys, keys / "new", "team-2026")
    for k in (old, new):
        monkeypatch.setenv("TRACE_CKPT_PRIVATE_KEY_FILE", str(k))
        save_trace(trace, tmp_path / f"{k.name}.tckpt")
    for k in (old, new):  # a private key in the trusted folder is never read: only *.pub files are
        k.rename(tmp_path / k.name)
    _only_public(monkeypatch, keys)
    signers = [verify_checkpoint(tmp_path / f"{n}.tckpt").status.signer for n in ("old", "new")]
    assert signers == ["team-2025", "team-2026"]
    # one allowed-signers file: "principal ssh-ed25519 KEY"; the principal is the name verify reports
    line = (keys / "new.pub").read_text().split()
    signers = tmp_path / "allowed_signers"
    signers.write_text(f"# team keys\nbob@model-box {line[0]} {line[1]}\n")
    monkeypatch.setenv("TRACE_CKPT_TRUSTED_KEYS", str(signers))
    assert verify_checkpoint(tmp_path / "new.tckpt").status.signer == "bob@model-box"
    assert verify_checkpoint(tmp_path / "old.tckpt").signature == "unknown-key"  # rotated out


def test_hmac_files_still_verify_beside_trusted_keys(
    tmp_path: Path, trace, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("TRACE_CKPT_SIGNING_KEY", KEY)
    save_trace(trace, tmp_path / "h.tckpt")
    monkeypatch.setenv("TRACE_CKPT_TRUSTED_KEYS", str(_keygen(capsys, tmp_path / "k", "x")) + ".pub")
    st = verify_checkpoint(tmp_path / "h.tckpt").status
    assert (st.state, st.algorithm, st.signer) == ("ok", "hmac-sha256", "shared HMAC key")
    assert len(restore_trace(tmp_path / "h.tckpt", workspace_root=tmp_path / "ws", require_signature=True).hist) == 2


def test_format_md_ed25519_snippet_verifies(tmp_path: Path, trace, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import re

    from cryptography.exceptions import InvalidSignature

    key = _keygen(capsys, tmp_path / "k", "alice")
    monkeypatch.setenv("TRACE_CKPT_PRIVATE_KEY_FILE", str(key))
    save_trace(trace, tmp_path / "s.tckpt")
    doc = (Path(__file__).resolve().parents[1] / "docs" / "format.md").read_text()
    code = next(c for c in re.findall(r"```python\n(.*?)```", doc, re.S) if "Ed25519" in c or "ssh_public_key" in c)
    assert len(code.strip().splitlines()) <= 14
    namespace: dict = {}
    exec(code, namespace)  # the snippet in docs/format.md, run as written
    assert (
        namespace["verify_signature"](str(tmp_path / "s.tckpt"), str(tmp_path / "k.pub"))
        == read_manifest(tmp_path / "s.tckpt").signature.key_id
    )
    other = _keygen(capsys, tmp_path / "other", "mallory")
    with pytest.raises(InvalidSignature):
        namespace["verify_signature"](str(tmp_path / "s.tckpt"), str(other) + ".pub")


def test_keygen_refuses_to_overwrite(tmp_path: Path, capsys) -> None:
    key = _keygen(capsys, tmp_path / "k", "first")
    before = key.read_bytes(), (tmp_path / "k.pub").read_bytes()
    code, _, err = _cli(capsys, "keygen", key)
    assert code == 7 and "exists" in err and "--force" in err
    assert (key.read_bytes(), (tmp_path / "k.pub").read_bytes()) == before
    (tmp_path / "lone2.pub").write_text("not mine")  # a stray OUT.pub alone is refused too
    assert _cli(capsys, "keygen", tmp_path / "lone2")[0] == 7 and (tmp_path / "lone2.pub").read_text() == "not mine"
    code, _out, _ = _cli(capsys, "keygen", key, "--force", "--comment", "second")
    assert code == 0 and key.read_bytes() != before[0] and (tmp_path / "k.pub").read_text().strip().endswith("second")
    assert (key.stat().st_mode & 0o777) == 0o600
