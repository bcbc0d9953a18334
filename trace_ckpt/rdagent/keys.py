"""RD-Agent's artifact signing key, for ``TRACE_CKPT_USE_RDAGENT_KEY=true``: importing ``trace_ckpt.rdagent`` hands
this reader to ``trace_ckpt.signing`` (only ``trace_ckpt.rdagent`` imports rdagent)."""

from __future__ import annotations

from pathlib import Path

from trace_ckpt.signing import key_from_file, key_from_text, provide_rdagent_key


def artifact_signing_key() -> bytes:
    """RD-Agent's artifact signing key, derived as rdagent.core.serialization derives it (never created here)."""
    from rdagent.core.conf import RD_AGENT_SETTINGS

    if RD_AGENT_SETTINGS.artifact_signing_key:
        return key_from_text(RD_AGENT_SETTINGS.artifact_signing_key, "ARTIFACT_SIGNING_KEY")
    return key_from_file(Path(RD_AGENT_SETTINGS.artifact_signing_key_path), "RD-Agent's key file")


provide_rdagent_key(artifact_signing_key)
