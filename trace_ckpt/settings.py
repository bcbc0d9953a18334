"""trace-ckpt settings, in RD-Agent's style: a pydantic-settings class with the ``TRACE_CKPT_`` prefix.

``Options.resolve()`` reads them once and applies a call's own choices (``level=``, ``allow_modules=``...); the
result is passed down to every layer, so no module below the public functions reads the environment.

    from trace_ckpt.settings import Options
    opts = Options.resolve(level=9)     # TRACE_CKPT_* now, with this call's level
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:  # signing (cryptography) is imported when a key is asked for: `inspect` stays light
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from trace_ckpt.signing import TrustedKey


class TraceCkptSettings(BaseSettings):
    """Defaults for saves and loads; every field can be set as ``TRACE_CKPT_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="TRACE_CKPT_", extra="ignore")

    level: int = 3
    """zstd compression level (1-22)."""
    threads: int = -1
    """zstd worker threads: -1 uses every core (zstd's multi-threaded mode), 0 compresses in the calling thread."""
    max_file_bytes: int | None = None
    """Workspace files larger than this are listed but not stored (None keeps everything)."""
    min_blob_bytes: int = 256
    """Strings and bytes at least this long are stored once, by content, outside the pickle."""
    allow_modules: list[str] = []
    """Extra modules whose classes a checkpoint may load (your own scenario classes), or fully qualified classes."""
    allow_classes: list[str] = []
    """Extra fully qualified classes a checkpoint may load (built from their state, never called)."""
    signing_key: SecretStr | None = None
    """Sign saves and check loads with this key (at least 32 bytes)."""
    signing_key_file: Path | None = None
    """...or with the key in this file."""
    use_rdagent_key: bool = False
    """...or with RD-Agent's own artifact signing key."""
    private_key_file: Path | None = None
    """Sign saves with this Ed25519 private key (OpenSSH or PEM; ``trace-ckpt keygen`` makes one); wins over HMAC."""
    trusted_keys: Path | None = None
    """Verify Ed25519 signatures with these public keys: a .pub / allowed-signers file, or a folder of .pub files."""
    require_signature: bool = False
    """Refuse to load checkpoints that are unsigned or whose signature cannot be checked."""
    trust_resume: bool = False
    """Let ``resume`` run checkpoints that no configured key has verified (resume runs their code; see docs/security.md)."""
    resume_setup: str | None = None
    """``module:function`` that ``resume`` and ``run`` call with the loop before it starts (e.g. to patch settings)."""
    debug: bool = False
    """Show the traceback of an unexpected error instead of one line (the CLI)."""

    @property
    def allowed(self) -> list[str]:
        """What loads may name beyond the built-in class list: ``allow_modules`` and ``allow_classes``."""
        return [*self.allow_modules, *self.allow_classes]


def get_settings() -> TraceCkptSettings:
    """Settings read from the environment now (not cached, so tests and CLIs can change them)."""
    return TraceCkptSettings()


@dataclass(frozen=True)
class Options:
    """What one save or load uses, resolved once: the ``TRACE_CKPT_*`` settings, then the call's own choices.

    Keys are read from their files when first asked for (a reader of an unsigned file never needs them).
    """

    settings: TraceCkptSettings = field(default_factory=TraceCkptSettings)
    level: int = 3
    threads: int = -1
    max_file_bytes: int | None = None
    min_blob: int = 256
    allowed: tuple[str, ...] = ()
    """Modules and classes a load may name beyond the built-in list (settings', then the call's)."""
    require_signature: bool = False
    trust_resume: bool = False

    @classmethod
    def resolve(
        cls,
        settings: TraceCkptSettings | None = None,
        *,
        level: int | None = None,
        max_file_bytes: int | None = None,
        allow_modules: Iterable[str] = (),
        require_signature: bool | None = None,
        trust_resume: bool | None = None,
    ) -> Options:
        """``settings`` (default: ``TRACE_CKPT_*`` read now), then the call's choices (see ``with_choices``)."""
        s = settings if settings is not None else get_settings()
        return cls(
            settings=s,
            level=s.level,
            threads=s.threads,
            max_file_bytes=s.max_file_bytes,
            min_blob=s.min_blob_bytes,
            allowed=tuple(s.allowed),
            require_signature=s.require_signature,
            trust_resume=s.trust_resume,
        ).with_choices(
            level=level,
            max_file_bytes=max_file_bytes,
            allow_modules=allow_modules,
            require_signature=require_signature,
            trust_resume=trust_resume,
        )

    def with_choices(
        self,
        *,
        level: int | None = None,
        max_file_bytes: int | None = None,
        allow_modules: Iterable[str] = (),
        require_signature: bool | None = None,
        trust_resume: bool | None = None,
    ) -> Options:
        """These options with each argument that is not None winning; ``allow_modules`` adds to ``allowed``."""
        extra = tuple(allow_modules)
        if (
            level is None
            and max_file_bytes is None
            and not extra
            and require_signature is None
            and trust_resume is None
        ):
            return self  # keys already read stay read
        return replace(
            self,
            level=self.level if level is None else level,
            max_file_bytes=self.max_file_bytes if max_file_bytes is None else max_file_bytes,
            allowed=(*self.allowed, *extra),
            require_signature=self.require_signature if require_signature is None else require_signature,
            trust_resume=self.trust_resume if trust_resume is None else trust_resume,
        )

    @cached_property
    def key(self) -> bytes | None:
        """The HMAC key saves sign with and loads check with, or None (TRACE_CKPT_SIGNING_KEY[_FILE], ...)."""
        from trace_ckpt.signing import configured_key

        return configured_key(self.settings)

    @cached_property
    def private_key(self) -> Ed25519PrivateKey | None:
        """The Ed25519 key saves sign with (TRACE_CKPT_PRIVATE_KEY_FILE), or None."""
        from trace_ckpt.signing import configured_private_key

        return configured_private_key(self.settings)

    @cached_property
    def trusted_keys(self) -> dict[str, TrustedKey]:
        """The public keys that verify Ed25519 signatures here, by key id (TRACE_CKPT_TRUSTED_KEYS and our own)."""
        from trace_ckpt.signing import configured_trusted_keys

        return configured_trusted_keys(self.settings)

    @property
    def public_keys_configured(self) -> bool:
        """Whether Ed25519 keys are configured (trusted or our own): an unsigned file is then worth a warning."""
        return bool(self.settings.trusted_keys or self.settings.private_key_file)


def setting(name: str, default: Any = None) -> Any:
    """One setting read now, or ``default`` when the ``TRACE_CKPT_*`` settings do not parse (for the CLI's own error
    handling, which must not fail on them)."""
    try:
        return getattr(get_settings(), name)
    except ValueError:  # pydantic's ValidationError: the command itself reports it
        return default
