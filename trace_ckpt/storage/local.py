"""Local files: reads, and atomic writes that never leave a half-written checkpoint at the target."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from trace_ckpt._os import current_umask
from trace_ckpt.errors import CheckpointNotFoundError, CorruptCheckpointError, SaveError

TMP_PREFIX = ".tckpt-tmp-"


def _local_path(path: str | os.PathLike[str]) -> Path:
    text = os.fspath(path)
    if text.startswith("file://"):
        text = text[len("file://") :]
    return Path(text).expanduser()


@contextlib.contextmanager
def open_read(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """Open a checkpoint for reading; a missing path or a folder is a one-line typed error."""
    p = _local_path(path)
    try:
        f = open(p, "rb")
    except FileNotFoundError:
        raise CheckpointNotFoundError(f"no checkpoint at {p}: check the path") from None
    except IsADirectoryError:
        raise CorruptCheckpointError(f"{p} is a folder, not a checkpoint file") from None
    except PermissionError as e:
        raise CheckpointNotFoundError(f"cannot read {p}: {e.strerror}") from None
    with f:
        yield f


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """Yield a temp file beside ``path``; on success fsync it, rename it over ``path``, fsync the folder.

    On any error the temp file is removed and ``path`` keeps its previous content.
    """
    target = _local_path(path)
    directory = target.parent
    if not directory.is_dir():
        raise SaveError(f"cannot save to {target}: folder {directory} does not exist")
    if target.is_dir():
        raise SaveError(f"cannot save to {target}: it is a folder")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=".part", dir=directory)
    except OSError as e:
        raise SaveError(f"cannot save to {target}: {e.strerror or e}") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644 & ~current_umask())
        os.replace(tmp, target)
        _fsync_dir(directory)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise SaveError(f"cannot save to {target}: {e.strerror or e}; the previous file is untouched") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
