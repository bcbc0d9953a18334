"""Local files: reads, and atomic writes that never leave a half-written checkpoint at the target."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from trace_ckpt._os import current_umask
from trace_ckpt.errors import CheckpointNotFoundError, CorruptCheckpointError, SaveError


@dataclass
class Entry:
    """One file of a listed folder (local or remote): its path or URL, and its size."""

    url: str
    size: int


TMP_PREFIX = ".tckpt-tmp-"
STALE_AFTER_S = 10.0  # a temp file this old and unlocked is a leftover of a killed save


def local_path(path: str | os.PathLike[str]) -> Path:
    """The local path of a plain path or a ``file://`` URL."""
    text = os.fspath(path)
    if text.startswith("file://"):
        text = text[len("file://") :]
    return Path(text).expanduser()


@contextlib.contextmanager
def open_read(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """Open a checkpoint for reading; a missing path or a folder is a one-line typed error."""
    p = local_path(path)
    try:
        f = open(p, "rb")  # noqa: SIM115 — closed by the generator's finally
    except FileNotFoundError:
        raise CheckpointNotFoundError(f"no checkpoint at {p}: check the path") from None
    except IsADirectoryError:
        raise CorruptCheckpointError(f"{p} is a folder, not a checkpoint file") from None
    except PermissionError as e:
        raise CheckpointNotFoundError(f"cannot read {p}: {e.strerror}") from None
    except ValueError:  # a NUL character: no file can have that name
        raise CheckpointNotFoundError(f"no checkpoint at {str(p)!r}: the path holds a NUL character") from None
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


def clean_stale_temp_files(directory: Path) -> int:
    """Remove temp files that killed saves left in ``directory``; a save in progress holds a lock on its own."""
    removed = 0
    now = time.time()
    try:
        candidates = [p for p in directory.iterdir() if p.name.startswith(TMP_PREFIX) and p.name.endswith(".part")]
    except OSError:
        return 0
    for p in candidates:
        try:
            if now - p.lstat().st_mtime < STALE_AFTER_S:
                continue  # young: possibly a save that has not taken its lock yet
            fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # another save is writing it
        else:
            p.unlink(missing_ok=True)
            removed += 1
        finally:
            os.close(fd)
    return removed


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """Yield a temp file beside ``path``; on success fsync it, rename it over ``path``, fsync the folder.

    On any error the temp file is removed and ``path`` keeps its previous content.
    """
    target = local_path(path)
    directory = target.parent
    if not directory.is_dir():
        raise SaveError(f"cannot save to {target}: folder {directory} does not exist")
    if target.is_dir():
        raise SaveError(f"cannot save to {target}: it is a folder")
    clean_stale_temp_files(directory)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=".part", dir=directory)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held until closed: marks the temp file as in use
    except OSError as e:
        raise SaveError(f"cannot save to {target}: {e.strerror or e}") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), 0o644 & ~current_umask())
            os.replace(tmp, target)  # still locked: a concurrent cleaner never sees it as stale
        _fsync_dir(directory)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise SaveError(f"cannot save to {target}: {e.strerror or e}; the previous file is untouched") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def list_files(folder: str | os.PathLike[str]) -> list[Entry]:
    """The regular files directly inside a local folder, sorted by name."""
    d = local_path(folder)
    if not d.is_dir():
        if d.exists():
            raise CorruptCheckpointError(f"{d} is a file, not a folder: give the folder that holds checkpoints")
        raise CheckpointNotFoundError(f"no folder at {d}: check the path")
    try:
        names = sorted(os.listdir(d))
    except PermissionError as e:
        raise CheckpointNotFoundError(f"cannot read {d}: {e.strerror}") from None
    out = []
    for name in names:
        p = d / name
        if name.startswith(TMP_PREFIX) or p.is_symlink() or not p.is_file():
            continue
        out.append(Entry(str(p), p.stat().st_size))
    return out
