"""trace-ckpt settings, in RD-Agent's style: a pydantic-settings class with the ``TRACE_CKPT_`` prefix.

``Options.resolve()`` reads them once and applies a call's own choices (``level=``, ``allow_modules=``...); the
result is passed down to every layer, so no module below the public functions reads the environment.

    from trace_ckpt.settings import Options
    opts = Options.resolve(level=9)     # TRACE_CKPT_* now, with this call's level
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # signing (cryptography) and the settings' schema (pydantic-settings) load when asked for
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from trace_ckpt.settings_schema import TraceCkptSettings
    from trace_ckpt.signing import TrustedKey

# every setting is TRACE_CKPT_<FIELD> in the environment (pydantic-settings matches the name in any case)
ENV_PREFIX = "TRACE_CKPT_"


def __getattr__(name: str) -> Any:
    """``trace_ckpt.settings.TraceCkptSettings``, loaded when first named (PEP 562)."""
    if name == "TraceCkptSettings":
        from trace_ckpt.settings_schema import TraceCkptSettings

        return TraceCkptSettings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def get_settings() -> TraceCkptSettings:
    """Settings read from the environment now (not cached, so tests and CLIs can change them)."""
    from trace_ckpt.settings_schema import TraceCkptSettings

    return TraceCkptSettings()


@dataclass(frozen=True)
class Options:
    """What one save or load uses, resolved once: the ``TRACE_CKPT_*`` settings, then the call's own choices.

    Keys are read from their files when first asked for (a reader of an unsigned file never needs them).
    """

    settings: TraceCkptSettings = field(default_factory=get_settings)
    level: int = 3
    threads: int = -1
    max_file_bytes: int | None = None
    min_blob: int = 256
    allowed: tuple[str, ...] = ()
    """Modules and classes a load may name beyond the built-in list (settings', then the call's)."""
    require_signature: bool = False
    trust_resume: bool = False
    overwrite: bool = True
    """Whether a save may replace an existing file at its path (the CLI asks for ``--force``; the library replaces)."""

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
        overwrite: bool | None = None,
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
            overwrite=overwrite,
        )

    def with_choices(
        self,
        *,
        level: int | None = None,
        max_file_bytes: int | None = None,
        allow_modules: Iterable[str] = (),
        require_signature: bool | None = None,
        trust_resume: bool | None = None,
        overwrite: bool | None = None,
    ) -> Options:
        """These options with each argument that is not None winning; ``allow_modules`` adds to ``allowed``."""
        extra = tuple(allow_modules)
        if (
            level is None
            and max_file_bytes is None
            and not extra
            and require_signature is None
            and trust_resume is None
            and overwrite is None
        ):
            return self  # keys already read stay read
        return replace(
            self,
            level=self.level if level is None else level,
            max_file_bytes=self.max_file_bytes if max_file_bytes is None else max_file_bytes,
            allowed=(*self.allowed, *extra),
            require_signature=self.require_signature if require_signature is None else require_signature,
            trust_resume=self.trust_resume if trust_resume is None else trust_resume,
            overwrite=self.overwrite if overwrite is None else overwrite,
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
    """One setting read now, or ``default`` when its ``TRACE_CKPT_<NAME>`` variable is not set (pass the field's
    default: the CLI then loads no settings for it) or when they do not parse (the CLI's own error handling must not
    fail on them)."""
    var = (ENV_PREFIX + name).upper()
    if not any(k.upper() == var for k in os.environ):  # pydantic-settings matches names in any case
        return default
    try:
        return getattr(get_settings(), name)
    except ValueError:  # pydantic's ValidationError: the command itself reports it
        return default
