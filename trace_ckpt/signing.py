"""Checkpoint signing keys: a shared HMAC-SHA256 key, or an Ed25519 key pair for teams.

HMAC: the key comes from ``TRACE_CKPT_SIGNING_KEY`` (a string of at least 32 bytes), a key file
(``TRACE_CKPT_SIGNING_KEY_FILE``), or, when asked (``TRACE_CKPT_USE_RDAGENT_KEY=true``), RD-Agent's own
artifact key (``ARTIFACT_SIGNING_KEY`` or ``~/.rdagent/artifact_signing.key``). Whoever verifies holds the
secret that signs.

Ed25519: the factor box signs with a private key (``TRACE_CKPT_PRIVATE_KEY_FILE``, made by
``trace-ckpt keygen``); other machines verify with public keys only (``TRACE_CKPT_TRUSTED_KEYS``: a file or
a folder of OpenSSH ``.pub`` lines or PEM public keys). A key's id is its OpenSSH fingerprint, as
``ssh-keygen -lf KEY.pub`` prints it.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from trace_ckpt.errors import CheckpointError, SaveError
from trace_ckpt.settings import get_settings

if TYPE_CHECKING:
    from trace_ckpt.settings_schema import TraceCkptSettings

log = logging.getLogger("trace_ckpt")

MIN_KEY_BYTES = 32
# OpenSSH key types: a line of a trusted-keys file is read at the first of these tokens
_SSH_KEY_TYPE = re.compile(r"^(ssh-[a-z0-9-]+|ecdsa-sha2-[a-z0-9-]+|sk-[a-z0-9@.-]+)$")


class SigningKeyError(CheckpointError):
    """The configured signing key cannot be used."""

    exit_code = 6


def key_id(key: bytes) -> str:
    """A short public name for an HMAC key (safe to print and to store)."""
    return hashlib.sha256(b"trace-ckpt key id" + key).hexdigest()[:16]


def key_from_text(text: str, what: str) -> bytes:
    """An HMAC key from a text secret (hashed with SHA-256, as RD-Agent does with ARTIFACT_SIGNING_KEY)."""
    if len(text.encode()) < MIN_KEY_BYTES:
        raise SigningKeyError(f"{what} must hold at least {MIN_KEY_BYTES} bytes")
    return hashlib.sha256(text.encode()).digest()


def key_from_file(path: Path, what: str) -> bytes:
    """An HMAC key: the bytes of a key file (at least 32)."""
    try:
        key = Path(path).expanduser().read_bytes()
    except OSError as e:
        raise SigningKeyError(f"cannot read {what} {path}: {e.strerror}") from None
    if len(key) < MIN_KEY_BYTES:
        raise SigningKeyError(f"{what} {path} must hold at least {MIN_KEY_BYTES} bytes")
    return key


def configured_key(settings: TraceCkptSettings | None = None) -> bytes | None:
    """The HMAC signing key the settings name, or None when no key is configured."""
    s = settings or get_settings()
    if s.signing_key:
        return key_from_text(s.signing_key.get_secret_value(), "TRACE_CKPT_SIGNING_KEY")
    if s.signing_key_file:
        return key_from_file(s.signing_key_file, "TRACE_CKPT_SIGNING_KEY_FILE")
    if s.use_rdagent_key:
        if _rdagent_key is None:
            raise SigningKeyError(
                "TRACE_CKPT_USE_RDAGENT_KEY=true, but RD-Agent's key is read by trace_ckpt.rdagent, which is not "
                "loaded: import trace_ckpt.rdagent first (the CLI does), or set TRACE_CKPT_SIGNING_KEY"
            )
        return _rdagent_key()
    return None


_rdagent_key: Callable[[], bytes] | None = None


def provide_rdagent_key(source: Callable[[], bytes]) -> None:
    """Name the function that reads RD-Agent's artifact key (``trace_ckpt.rdagent`` does, on import): only
    ``trace_ckpt.rdagent`` imports rdagent, so this module asks it instead of importing it."""
    global _rdagent_key
    _rdagent_key = source


# ------------------------------------------------------------------------------------------------ Ed25519


def public_key_id(public_key: Ed25519PublicKey) -> str:
    """The key's OpenSSH fingerprint (``SHA256:<base64>``, what ``ssh-keygen -lf`` prints): its id in manifests."""
    line = public_key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    blob = base64.b64decode(line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


@dataclass(frozen=True)
class TrustedKey:
    """A public key that verifies checkpoints, with the name it carries (comment or principal)."""

    name: str
    key_id: str
    public_key: Ed25519PublicKey


def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as e:
        raise SigningKeyError(f"cannot read {what} {path}: {e.strerror or e}") from None


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in an OpenSSH or PEM (PKCS#8) file, unencrypted, as ``trace-ckpt keygen`` writes it."""
    what = "TRACE_CKPT_PRIVATE_KEY_FILE"
    data = _read(path, what)
    if data.lstrip().startswith((b"ssh-", b"-----BEGIN PUBLIC KEY")):
        raise SigningKeyError(f"{what} {path} holds a public key: name the private key (keygen's OUT, not OUT.pub)")
    try:
        if b"-----BEGIN OPENSSH PRIVATE KEY-----" in data:
            key = serialization.load_ssh_private_key(data, password=None)
        else:
            key = serialization.load_pem_private_key(data, password=None)
    except TypeError:  # cryptography: "Password was not given but private key is encrypted"
        raise SigningKeyError(
            f"{what} {path} is encrypted; trace-ckpt reads unencrypted keys only (keep it mode 0600)"
        ) from None
    except (ValueError, UnsupportedAlgorithm) as e:
        raise SigningKeyError(f"{what} {path} is not an OpenSSH or PEM private key ({e})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(
            f"{what} {path} is a {type(key).__name__.lstrip('_')}; trace-ckpt signs with Ed25519 keys "
            "(make one with trace-ckpt keygen)"
        )
    try:
        mode = Path(path).expanduser().stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("%s %s can be read by other users (mode %o): chmod 600 it", what, path, mode & 0o777)
    except OSError:
        pass
    return key


def _parse_public_keys(path: Path, data: bytes) -> list[TrustedKey]:
    """The Ed25519 keys of one file: PEM, or lines of OpenSSH public keys (``[principal] ssh-ed25519 KEY [comment]``,
    as ``.pub`` and allowed-signers files hold them). Keys of other types are skipped with a warning."""
    what = "trusted key file"
    if b"-----BEGIN PUBLIC KEY-----" in data:
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, UnsupportedAlgorithm) as e:
            raise SigningKeyError(f"{what} {path} is not a PEM public key ({e})") from None
        if not isinstance(key, Ed25519PublicKey):
            raise SigningKeyError(f"{what} {path} holds a {type(key).__name__.lstrip('_')}, not an Ed25519 key")
        return [TrustedKey(path.stem, public_key_id(key), key)]
    if b"PRIVATE KEY-----" in data:
        raise SigningKeyError(
            f"{what} {path} holds a PRIVATE key: trust only public keys (.pub), never copy a private key"
        )
    keys = []
    for n, raw in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        tokens = raw.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        at = next((i for i, t in enumerate(tokens) if _SSH_KEY_TYPE.match(t)), None)
        if at is None or at + 1 >= len(tokens):
            raise SigningKeyError(f"{what} {path} line {n} is not an OpenSSH public key ('ssh-ed25519 AAAA... name')")
        if tokens[at] != "ssh-ed25519":
            log.warning(
                "%s %s line %d is an %s key, skipped: trace-ckpt trusts Ed25519 keys", what, path, n, tokens[at]
            )
            continue
        try:
            key = serialization.load_ssh_public_key(f"ssh-ed25519 {tokens[at + 1]}".encode())
        except (ValueError, UnsupportedAlgorithm) as e:
            raise SigningKeyError(f"{what} {path} line {n} is not a valid ssh-ed25519 key ({e})") from None
        name = tokens[0] if at > 0 else " ".join(tokens[at + 2 :]) or path.stem
        keys.append(TrustedKey(name, public_key_id(key), key))  # type: ignore[arg-type]
    return keys


def load_trusted_keys(path: Path) -> dict[str, TrustedKey]:
    """The trusted public keys of a file, or of every ``*.pub`` file in a folder, by key id (the first name wins)."""
    p = Path(path).expanduser()
    if p.is_dir():
        files = sorted(f for f in p.glob("*.pub") if f.is_file())
    elif p.exists():
        files = [p]
    else:
        raise SigningKeyError(f"TRACE_CKPT_TRUSTED_KEYS {path} does not exist: name a .pub file or a folder of them")
    keys: dict[str, TrustedKey] = {}
    for f in files:
        for k in _parse_public_keys(f, _read(f, "trusted key file")):
            keys.setdefault(k.key_id, k)
    return keys


def configured_private_key(settings: TraceCkptSettings | None = None) -> Ed25519PrivateKey | None:
    """The Ed25519 key saves sign with (``TRACE_CKPT_PRIVATE_KEY_FILE``), or None."""
    s = settings or get_settings()
    return load_private_key(s.private_key_file) if s.private_key_file else None


def configured_trusted_keys(settings: TraceCkptSettings | None = None) -> dict[str, TrustedKey]:
    """The public keys that verify checkpoints here: ``TRACE_CKPT_TRUSTED_KEYS``, plus the public half of this
    machine's own private key (a signer trusts itself, as an HMAC key checks its own files)."""
    s = settings or get_settings()
    keys = load_trusted_keys(s.trusted_keys) if s.trusted_keys else {}
    if s.private_key_file:
        own = configured_private_key(s).public_key()  # type: ignore[union-attr]
        kid = public_key_id(own)
        keys.setdefault(kid, TrustedKey(f"this machine's key ({s.private_key_file})", kid, own))
    return keys


def generate_key_pair(out: Path, *, comment: str, force: bool = False) -> str:
    """Write a new Ed25519 private key to ``out`` (OpenSSH format, mode 0600) and its public key to ``out.pub``;
    return the key id. Existing files are refused unless ``force``."""
    out = Path(out)
    pub = out.with_name(out.name + ".pub")
    for p in (out, pub):
        if not force and (p.exists() or p.is_symlink()):
            raise SaveError(f"{p} exists: pass --force to replace it (the old key can no longer sign)")
    if not out.parent.is_dir():
        raise SaveError(f"cannot write {out}: folder {out.parent} does not exist")
    if "\n" in comment or "\r" in comment:
        raise SaveError("the key comment must be one line")
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    try:
        public_line = public + (f" {comment}" if comment else "").encode() + b"\n"
        for p, data, mode in ((out, private, 0o600), (pub, public_line, 0o644)):
            if force:
                p.unlink(missing_ok=True)
            # O_EXCL | O_NOFOLLOW: never through a link someone left at the path, never onto another file
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
    except OSError as e:
        raise SaveError(f"cannot write {e.filename or out}: {e.strerror}") from None
    return public_key_id(key.public_key())
