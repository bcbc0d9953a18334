"""One exception hierarchy for trace-ckpt.

Every error carries a one-line message that says what happened and what to do next, and an
``exit_code`` the CLI returns (the table is in docs/cli.md).
"""

from __future__ import annotations

import re

_MAX_MESSAGE = 600


class CheckpointError(Exception):
    """Base of every error trace-ckpt raises on purpose. Its message is always one line."""

    exit_code: int = 1

    def __init__(self, message: object = "") -> None:
        text = re.sub(r"\s*[\r\n]+\s*", " ", str(message)).strip()
        if len(text) > _MAX_MESSAGE:  # e.g. garbage bytes quoted from a damaged file
            text = text[: _MAX_MESSAGE - 1] + "…"
        super().__init__(text)


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint (or another input path) does not exist."""

    exit_code = 3


class NotACheckpointError(CheckpointError):
    """The file is not a trace-ckpt checkpoint (wrong magic)."""

    exit_code = 4


class CorruptCheckpointError(CheckpointError):
    """The file is a checkpoint but truncated, damaged or inconsistent."""

    exit_code = 4


class UnsupportedVersionError(CheckpointError):
    """The checkpoint was written by a newer format version than this reader knows."""

    exit_code = 5


class UntrustedContentError(CheckpointError):
    """Loading would need a class or function that is not on the allowlist."""

    exit_code = 6


class SaveError(CheckpointError):
    """A checkpoint could not be written; the previous file at the target is untouched."""

    exit_code = 7


class OutputExistsError(SaveError):
    """The output already exists and replacing it was not asked for (``overwrite=True``, ``--force``)."""

    exit_code = 7


class WorkspaceConflictError(CheckpointError):
    """Restoring would overwrite a different existing file in a workspace folder."""

    exit_code = 8


class MissingClassError(CheckpointError):
    """A class the file needs is not importable here (a custom component not on PYTHONPATH)."""

    exit_code = 9


class NothingToExportError(CheckpointError):
    """The checkpoint holds nothing of what was asked for (e.g. no SOTA factor values)."""

    exit_code = 10


class ResumeError(CheckpointError):
    """The resumed run cannot be set up as asked (a bad --base-features folder, a setup hook that fails)."""

    exit_code = 11


class MissingExtraError(CheckpointError):
    """An optional dependency is not installed (e.g. matplotlib for ``inspect --plot``); the message names the pip extra."""

    exit_code = 12


class StorageAccessError(CheckpointError):
    """The storage behind a URL refused access (credentials) or could not be reached."""

    exit_code = 13


class RestoreError(CheckpointError):
    """Workspace files could not be written while restoring (a full disk, a read-only folder)."""

    exit_code = 14


class NotReadyError(ResumeError):
    """This machine lacks what the resumed phase needs (Docker or RD-Agent's conda env, the factor data
    folder, LLM settings): found before RD-Agent starts, nothing written."""

    exit_code = 15
