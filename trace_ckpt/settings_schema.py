"""The ``TRACE_CKPT_*`` settings' fields, in RD-Agent's style (a pydantic-settings class with an env prefix).

Imported only when a setting is read (:func:`trace_ckpt.settings.get_settings`): pydantic-settings costs more
than the rest of ``trace-ckpt inspect``, which reads no setting unless one is set.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from trace_ckpt.settings import ENV_PREFIX


class TraceCkptSettings(BaseSettings):
    """Defaults for saves and loads; every field can be set as ``TRACE_CKPT_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

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
