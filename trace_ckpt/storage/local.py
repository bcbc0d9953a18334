"""The local disk's commit: a write appears at its target whole (temp file beside it, fsync, rename,
fsync the folder), never half-written, and never over an existing file unless asked."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from trace_ckpt._os import current_umask
from trace_ckpt.errors import OutputExistsError, SaveError

TMP_PREFIX = ".tckpt-tmp-"
STALE_AFTER_S = 10.0  # a temp file this old and unlocked is a leftover of a killed save


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


def refuse_existing(target: Path) -> None:
    """Raise :class:`OutputExistsError` when a file (or a link) is at ``target``."""
    if os.path.lexists(target):
        raise OutputExistsError(f"{target} exists: pass overwrite=True (--force) to replace it, or choose another name")


# link(2) unsupported where the file system has no hard links (FAT, some network and FUSE mounts)
_NO_LINKS = {
    getattr(errno, name)
    for name in ("EPERM", "ENOTSUP", "EOPNOTSUPP", "EXDEV", "EMLINK", "ENOSYS")
    if hasattr(errno, name)
}


def _commit(tmp: Path, target: Path, overwrite: bool) -> None:
    """Put the temp file at ``target`` in one step: a rename, or (not replacing) a link, which fails if
    something is already there (``O_EXCL`` for a name: no window between the check and the commit)."""
    if overwrite:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)
    except FileExistsError:
        refuse_existing(target)
        raise
    except OSError as e:
        if e.errno not in _NO_LINKS:
            raise
        refuse_existing(target)  # no hard links here: check, then rename (a narrow race remains)
        os.replace(tmp, target)
        return
    tmp.unlink()


@contextlib.contextmanager
def atomic_write(target: Path, *, overwrite: bool = False) -> Iterator[IO[bytes]]:
    """Yield a temp file beside ``target``; on success fsync it, move it to ``target``, fsync the folder.

    On any error the temp file is removed and ``target`` keeps its previous content. An existing file at
    ``target`` is an :class:`OutputExistsError` (before anything is written) unless ``overwrite``.
    """
    directory = target.parent
    if not directory.is_dir():
        raise SaveError(f"cannot save to {target}: folder {directory} does not exist")
    if target.is_dir():
        raise SaveError(f"cannot save to {target}: it is a folder")
    if not overwrite:
        refuse_existing(target)
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
            _commit(tmp, target, overwrite)  # still locked: a concurrent cleaner never sees it as stale
        _fsync_dir(directory)
    except OutputExistsError:
        tmp.unlink(missing_ok=True)
        raise
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise SaveError(f"cannot save to {target}: {e.strerror or e}; the previous file is untouched") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
