"""Checkpoint signing keys: HMAC-SHA256, in the spirit of RD-Agent 1.0's artifact signing.

The key comes from ``TRACE_CKPT_SIGNING_KEY`` (a string of at least 32 bytes), a key file
(``TRACE_CKPT_SIGNING_KEY_FILE``), or, when asked (``TRACE_CKPT_USE_RDAGENT_KEY=true``), RD-Agent's own
artifact key (``ARTIFACT_SIGNING_KEY`` or ``~/.rdagent/artifact_signing.key``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from trace_ckpt.errors import CheckpointError
from trace_ckpt.settings import TraceCkptSettings, get_settings

MIN_KEY_BYTES = 32


class SigningKeyError(CheckpointError):
    """The configured signing key cannot be used."""

    exit_code = 6


def key_id(key: bytes) -> str:
    """A short public name for a key (safe to print and to store)."""
    return hashlib.sha256(b"trace-ckpt key id" + key).hexdigest()[:16]


def _from_string(text: str, what: str) -> bytes:
    if len(text.encode()) < MIN_KEY_BYTES:
        raise SigningKeyError(f"{what} must hold at least {MIN_KEY_BYTES} bytes")
    return hashlib.sha256(text.encode()).digest()


def _from_file(path: Path, what: str) -> bytes:
    try:
        key = Path(path).expanduser().read_bytes()
    except OSError as e:
        raise SigningKeyError(f"cannot read {what} {path}: {e.strerror}") from None
    if len(key) < MIN_KEY_BYTES:
        raise SigningKeyError(f"{what} {path} must hold at least {MIN_KEY_BYTES} bytes")
    return key


def rdagent_key() -> bytes:
    """RD-Agent's artifact signing key, derived as rdagent.core.serialization derives it (never created here)."""
    from rdagent.core.conf import RD_AGENT_SETTINGS

    if RD_AGENT_SETTINGS.artifact_signing_key:
        return _from_string(RD_AGENT_SETTINGS.artifact_signing_key, "ARTIFACT_SIGNING_KEY")
    return _from_file(Path(RD_AGENT_SETTINGS.artifact_signing_key_path), "RD-Agent's key file")


def configured_key(settings: TraceCkptSettings | None = None) -> bytes | None:
    """The signing key the settings name, or None when no key is configured."""
    s = settings or get_settings()
    if s.signing_key:
        return _from_string(s.signing_key.get_secret_value(), "TRACE_CKPT_SIGNING_KEY")
    if s.signing_key_file:
        return _from_file(s.signing_key_file, "TRACE_CKPT_SIGNING_KEY_FILE")
    if s.use_rdagent_key:
        return rdagent_key()
    return None
