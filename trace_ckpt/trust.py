"""Who signed a checkpoint, and whether this machine accepts it: the one signature rule every reader applies.

``signature_status`` says what is known (verified, by whom); ``check_signature`` refuses what the options say
to refuse (a bad signature always, an unverifiable one with ``require_signature``). ``Checkpoint.open`` calls it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from trace_ckpt.errors import UnsupportedVersionError, UntrustedContentError
from trace_ckpt.format.container import ED25519, HMAC_SHA256
from trace_ckpt.format.reader import ContainerReader
from trace_ckpt.settings import Options

if TYPE_CHECKING:
    from trace_ckpt.signing import TrustedKey

log = logging.getLogger("trace_ckpt")

SignatureState = Literal["unsigned", "ok", "bad", "unchecked", "unknown-key", "unsupported"]


@dataclass(frozen=True)
class SignatureStatus:
    """Whether a checkpoint's signature is verified by a configured key, and by whom.

    ``state``: ``ok`` (verified: ``signer`` names the key), ``bad`` (it does not hold: the file changed after
    signing, or another HMAC key signed it), ``unsigned``, ``unchecked`` (HMAC, but no HMAC key configured),
    ``unknown-key`` (Ed25519, by a key not among the trusted keys), ``unsupported`` (an algorithm this
    trace-ckpt does not know). Only ``ok`` vouches for the content.
    """

    state: SignatureState
    algorithm: str | None = None
    key_id: str | None = None
    signer: str | None = None  # the trusted key's name (its comment or principal), or "shared HMAC key"

    @property
    def verified(self) -> bool:
        """True only when a configured or trusted key verified the signature."""
        return self.state == "ok"

    def describe(self) -> str:
        """One phrase for people: what is known about who signed."""
        if self.state == "unsigned":
            return "unsigned"
        if self.algorithm == HMAC_SHA256:
            return {
                "ok": f"signed, signature ok (key id {self.key_id})",
                "bad": f"bad signature: signed with another key (key id {self.key_id})",
            }.get(self.state, f"signed (key id {self.key_id}), signature not checked: no key configured")
        if self.state == "ok":
            return f"signed by {self.signer}, signature ok ({self.algorithm} key {self.key_id})"
        if self.state == "bad":
            return (
                f"bad signature: it does not hold for {self.signer}'s key ({self.algorithm} key {self.key_id}); "
                "the file was changed after it was signed"
            )
        if self.state == "unknown-key":
            return (
                f"signed by an unknown key ({self.algorithm} key {self.key_id}, not among your trusted keys), "
                "signature not checked"
            )
        return (
            f"signed with algorithm {self.algorithm!r}, which this trace-ckpt does not know: signature not "
            "checked (upgrade trace-ckpt)"
        )


def _status(
    reader: ContainerReader, key: bytes | None, trusted: Callable[[], Mapping[str, TrustedKey]]
) -> SignatureStatus:
    """The signature status with HMAC ``key`` and the Ed25519 keys ``trusted()`` gives (asked for only when the
    file is Ed25519-signed)."""
    sig = reader.manifest.signature
    if sig is None:
        return SignatureStatus("unsigned")
    algorithm, kid = sig.algorithm, sig.key_id
    if algorithm == HMAC_SHA256:
        if key is None:
            return SignatureStatus("unchecked", algorithm, kid)
        return SignatureStatus("ok" if reader.signature_matches(key) else "bad", algorithm, kid, "shared HMAC key")
    if algorithm == ED25519:
        known = trusted().get(kid)
        if known is None:
            return SignatureStatus("unknown-key", algorithm, kid)
        holds = reader.signature_verifies(known.public_key)
        return SignatureStatus("ok" if holds else "bad", algorithm, kid, known.name)
    return SignatureStatus("unsupported", algorithm, kid)


def options_status(
    reader: ContainerReader,
    options: Options,
    *,
    key: bytes | None = None,
    trusted: Mapping[str, TrustedKey] | None = None,
) -> SignatureStatus:
    """The signature status with HMAC ``key`` and the ``trusted`` Ed25519 keys, each defaulting to what ``options``
    name (the trusted keys are read only when the file is Ed25519-signed)."""
    return _status(
        reader,
        key if key is not None else options.key,
        (lambda: trusted) if trusted is not None else (lambda: options.trusted_keys),
    )


def signature_status(
    reader: ContainerReader, *, key: bytes | None = None, trusted: Mapping[str, TrustedKey] | None = None
) -> SignatureStatus:
    """Is this reader's signature verified by a configured key (HMAC) or trusted key (Ed25519), and by whom?

    ``key`` and ``trusted`` default to the configured ones (TRACE_CKPT_SIGNING_KEY..., TRACE_CKPT_TRUSTED_KEYS).
    """
    return options_status(reader, Options.resolve(), key=key, trusted=trusted)


def check_signature(reader: ContainerReader, options: Options) -> SignatureState:
    """Refuse a file signed with another key, and (with ``options.require_signature``) one whose signature cannot be
    checked. Returns the state ("ok", "unsigned", "unchecked", "unknown-key" or "unsupported"); an unsigned file read
    while a key is configured is logged. Ed25519 signatures are checked with the configured trusted keys.
    """
    from trace_ckpt.signing import key_id

    key, require = options.key, options.require_signature
    st = options_status(reader, options)
    status = st.state
    src = reader.source
    if status == "bad" and st.algorithm != HMAC_SHA256:
        raise UntrustedContentError(f"{src}: {st.describe()}: refused")
    if status == "bad":
        theirs = reader.manifest.signature.key_id if reader.manifest.signature else "?"
        raise UntrustedContentError(
            f"{src} is signed with another key (key id {theirs}, yours {key_id(key) if key else '-'}): refused"
        )
    if require and status == "unsigned":
        raise UntrustedContentError(f"{src} is unsigned and a signature is required")
    if require and status == "unchecked":
        raise UntrustedContentError(
            f"{src} is signed but no key is configured to check it: set TRACE_CKPT_SIGNING_KEY or TRACE_CKPT_SIGNING_KEY_FILE"
        )
    if require and status == "unknown-key":
        raise UntrustedContentError(
            f"{src} is signed by an unknown key ({st.key_id}) and a signature is required: if you trust that key, "
            "add its public key to TRACE_CKPT_TRUSTED_KEYS"
        )
    if require and status == "unsupported":
        raise UnsupportedVersionError(f"{src} is {st.describe()}, and a signature is required")
    if status == "unchecked":
        log.warning("%s is signed but no key is configured, so the signature was not checked", src)
    if status in ("unknown-key", "unsupported"):
        log.warning("%s is %s", src, st.describe())
    if status == "unsigned" and (key is not None or options.public_keys_configured):
        log.warning(
            "%s is unsigned although a signing key is configured: its content is not vouched for "
            "(TRACE_CKPT_REQUIRE_SIGNATURE=true refuses such files)",
            src,
        )
    return status
