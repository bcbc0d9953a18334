"""Attacks on Ed25519 signatures (issue 13, class 8): a checkpoint from elsewhere claims a signer; only a trusted
public key may vouch for it. Every file here is made as an attacker would, with valid checksums."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zstandard
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.builders import build_trace, data_folder
from tests.clirun import run_cli
from tests.reseal import manifest_text
from trace_ckpt import (
    CorruptCheckpointError,
    UnsupportedVersionError,
    UntrustedContentError,
    read_manifest,
    restore_trace,
    save_trace,
    verify_checkpoint,
)
from trace_ckpt.signing import generate_key_pair, public_key_id

FOOTER = struct.Struct("<QQ32s32s8s")


@pytest.fixture()
def signed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Alice signs on the factor box; the test then runs on the model box, which trusts only alice.pub."""
    for var in ("TRACE_CKPT_SIGNING_KEY", "TRACE_CKPT_SIGNING_KEY_FILE", "TRACE_CKPT_USE_RDAGENT_KEY"):
        monkeypatch.delenv(var, raising=False)
    generate_key_pair(tmp_path / "alice", comment="alice@factor-box")
    monkeypatch.setenv("TRACE_CKPT_PRIVATE_KEY_FILE", str(tmp_path / "alice"))
    trace = build_trace([(), (0,)], [True, False], data_folder(tmp_path / "data"), write_outputs=False)
    save_trace(trace, tmp_path / "s.tckpt")
    monkeypatch.delenv("TRACE_CKPT_PRIVATE_KEY_FILE")
    monkeypatch.setenv("TRACE_CKPT_TRUSTED_KEYS", str(tmp_path / "alice.pub"))
    assert verify_checkpoint(tmp_path / "s.tckpt").status.signer == "alice@factor-box"
    return tmp_path / "s.tckpt"


def _forge(
    src: Path,
    out: Path,
    *,
    edit: Callable[[dict[str, Any]], None] | None = None,
    sign: Ed25519PrivateKey | None = None,
    signature: bytes | None = None,
    slot: bytes | None = None,
) -> Path:
    """``src`` with its manifest edited and the footer's checksum made right again; the 64 bytes before the
    manifest are re-signed with ``sign`` or replaced by ``signature``; ``slot`` replaces the footer's signature slot."""
    data = src.read_bytes()
    m_off, _, _, old_slot, magic = FOOTER.unpack(data[-FOOTER.size :])
    doc = json.loads(manifest_text(data))
    if edit:
        edit(doc)
    body = zstandard.ZstdCompressor().compress(json.dumps(doc).encode())  # as format v3 stores it
    head = data[:m_off]
    if sign is not None:
        signature = sign.sign(body)
    if signature is not None:
        head = head[:-64] + signature
        old_slot = hashlib.sha256(signature).digest()
    out.write_bytes(
        head
        + body
        + FOOTER.pack(m_off, len(body), hashlib.sha256(body).digest(), old_slot if slot is None else slot, magic)
    )
    return out


def _hypothesis(doc: dict[str, Any]) -> None:
    doc["nodes"][0]["hypothesis"] = "trust me"
    doc["metadata"]["plan"] = {"feature_codes": {"evil.py": "import os; os.system('touch pwned')"}}


def _one_line_error(capsys, *args: Any) -> tuple[int, str]:
    code, out, err = run_cli(capsys, *args)
    assert "Traceback" not in out + err and err.count("\n") == 1 and err.startswith("trace-ckpt: error: "), err
    return code, err


def test_tampered_manifest_is_refused_even_without_require_signature(signed: Path, tmp_path: Path, capsys) -> None:
    bad = _forge(signed, tmp_path / "bad.tckpt", edit=_hypothesis)
    assert verify_checkpoint(bad).signature == "bad" and not verify_checkpoint(bad).ok
    with pytest.raises(UntrustedContentError, match="bad signature.*alice@factor-box"):
        restore_trace(bad, workspace_root=tmp_path / "ws", require_signature=False)
    assert not (tmp_path / "ws").exists()
    code, err = _one_line_error(capsys, "verify", bad)
    assert code == UntrustedContentError.exit_code and "bad signature" in err


def test_resigned_by_another_key_claiming_alices_id_is_bad(signed: Path, tmp_path: Path) -> None:
    mallory = Ed25519PrivateKey.generate()
    bad = _forge(signed, tmp_path / "bad.tckpt", edit=_hypothesis, sign=mallory)  # key_id still alice's
    with pytest.raises(UntrustedContentError, match="bad signature"):
        restore_trace(bad, workspace_root=tmp_path / "ws")


def test_signed_by_an_untrusted_key_is_refused_when_a_signature_is_required(
    signed: Path, tmp_path: Path, capsys, caplog
) -> None:
    mallory = Ed25519PrivateKey.generate()
    mid = public_key_id(mallory.public_key())

    def own_id(doc: dict[str, Any]) -> None:
        _hypothesis(doc)
        doc["signature"]["key_id"] = mid

    bad = _forge(signed, tmp_path / "bad.tckpt", edit=own_id, sign=mallory)
    st = verify_checkpoint(bad).status
    assert (st.state, st.key_id, st.verified) == ("unknown-key", mid, False)
    with pytest.raises(UntrustedContentError, match="unknown key"):
        restore_trace(bad, workspace_root=tmp_path / "ws", require_signature=True)
    assert not (tmp_path / "ws").exists()
    code, err = _one_line_error(capsys, "verify", bad, "--require-signature")
    assert code == UntrustedContentError.exit_code and "unknown key" in err and mid in err
    code, out, _ = run_cli(capsys, "verify", bad)  # reported, not hidden
    assert code == 0 and "unknown key" in out
    # without require: it loads, as an unsigned file does, but says so
    with caplog.at_level("WARNING", logger="trace_ckpt"):
        restore_trace(bad, workspace_root=tmp_path / "ws2")
    assert "unknown key" in caplog.text


def test_stripped_or_downgraded_signature_is_refused_when_required(signed: Path, tmp_path: Path) -> None:
    def strip(doc: dict[str, Any]) -> None:
        _hypothesis(doc)
        doc["signature"] = None

    def downgrade(doc: dict[str, Any]) -> None:
        _hypothesis(doc)
        doc["signature"] = {"algorithm": "hmac-sha256", "key_id": "0" * 16}

    stripped = _forge(signed, tmp_path / "u.tckpt", edit=strip, slot=bytes(32))
    hmac_claim = _forge(signed, tmp_path / "h.tckpt", edit=downgrade, slot=os.urandom(32))
    for path, state in ((stripped, "unsigned"), (hmac_claim, "unchecked")):
        assert verify_checkpoint(path).signature == state
        with pytest.raises(UntrustedContentError):
            restore_trace(path, workspace_root=tmp_path / "ws", require_signature=True)
    assert not (tmp_path / "ws").exists()


@pytest.mark.parametrize("garbage", ["random", "zeros", "footer-disagrees"])
def test_ed25519_claim_with_garbage_signature_is_a_one_line_error(
    signed: Path, tmp_path: Path, capsys, garbage: str
) -> None:
    if garbage == "footer-disagrees":
        bad = _forge(signed, tmp_path / "bad.tckpt", slot=os.urandom(32))
        expected = CorruptCheckpointError
    else:
        bad = _forge(signed, tmp_path / "bad.tckpt", signature=os.urandom(64) if garbage == "random" else bytes(64))
        expected = UntrustedContentError
    with pytest.raises(expected):
        restore_trace(bad, workspace_root=tmp_path / "ws")
    code, _ = _one_line_error(capsys, "verify", bad)
    assert code == expected.exit_code


@pytest.mark.parametrize(
    "signature",
    [
        {"algorithm": "ed25519", "key_id": "SHA256:\x1b[31mred"},  # terminal escapes are not a key id
        {"algorithm": "ed25519", "key_id": "x" * 10_000},
        {"algorithm": ["ed25519"], "key_id": ""},
        {"algorithm": "Ed25519 ", "key_id": ""},
        "ed25519",
    ],
)
def test_garbage_signature_field_is_corrupt(signed: Path, tmp_path: Path, capsys, signature: Any) -> None:
    bad = _forge(signed, tmp_path / "bad.tckpt", edit=lambda doc: doc.update(signature=signature))
    with pytest.raises(CorruptCheckpointError, match="manifest is not valid"):
        read_manifest(bad)
    code, _ = _one_line_error(capsys, "verify", bad)
    assert code == CorruptCheckpointError.exit_code


def test_unknown_algorithm_is_named_clearly(signed: Path, tmp_path: Path, capsys, caplog) -> None:
    bad = _forge(signed, tmp_path / "pq.tckpt", edit=lambda doc: doc["signature"].update(algorithm="ml-dsa-65"))
    assert read_manifest(bad).signature.algorithm == "ml-dsa-65"  # inspect still works
    assert verify_checkpoint(bad).signature == "unsupported"
    code, out, _ = run_cli(capsys, "verify", bad)
    assert code == 0 and "'ml-dsa-65', which this trace-ckpt does not know" in out and "upgrade" in out
    code, err = _one_line_error(capsys, "verify", bad, "--require-signature")
    assert code == UnsupportedVersionError.exit_code and "ml-dsa-65" in err
    with pytest.raises(UnsupportedVersionError, match="ml-dsa-65"):
        restore_trace(bad, workspace_root=tmp_path / "ws", require_signature=True)
    with caplog.at_level("WARNING", logger="trace_ckpt"):
        restore_trace(bad, workspace_root=tmp_path / "ws")
    assert "does not know" in caplog.text


def test_signature_block_cannot_overlap_the_header(tmp_path: Path, capsys) -> None:
    doc = {
        "format": "trace-ckpt",
        "format_version": 2,
        "hash_algorithm": "blake3",
        "created_at": "2026-01-01T00:00:00Z",
        "producer": {"trace_ckpt": "0", "python": "3"},
        "trace_class": "x",
        "signature": {"algorithm": "ed25519", "key_id": "SHA256:x"},
    }
    body = json.dumps(doc).encode()
    path = tmp_path / "tiny.tckpt"
    path.write_bytes(
        struct.pack("<8sII", b"TRACECKP", 2, 0)
        + body
        + FOOTER.pack(16, len(body), hashlib.sha256(body).digest(), os.urandom(32), b"TRACECKP")
    )
    with pytest.raises(CorruptCheckpointError, match="too short for the Ed25519 signature"):
        read_manifest(path)
    assert _one_line_error(capsys, "verify", path)[0] == CorruptCheckpointError.exit_code


def test_a_private_key_among_trusted_keys_is_a_clear_error(signed: Path, tmp_path: Path, monkeypatch) -> None:
    from trace_ckpt.signing import SigningKeyError

    monkeypatch.setenv("TRACE_CKPT_TRUSTED_KEYS", str(tmp_path / "alice"))  # the private file, by mistake
    with pytest.raises(SigningKeyError, match="PRIVATE key"):
        verify_checkpoint(signed)


def test_keygen_never_writes_through_a_planted_link(tmp_path: Path, capsys) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "k.pub").symlink_to(victim)
    code, _err = _one_line_error(capsys, "keygen", tmp_path / "k", "--comment", "x")
    assert code == 7 and victim.read_text() == "precious" and not (tmp_path / "k").exists()
    code, _, _ = run_cli(capsys, "keygen", tmp_path / "k", "--comment", "x", "--force")  # --force replaces the link
    assert code == 0 and victim.read_text() == "precious" and not (tmp_path / "k.pub").is_symlink()
