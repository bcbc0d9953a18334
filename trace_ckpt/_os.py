"""Small OS helpers shared by storage and codec."""

from __future__ import annotations

import errno
import os

# POSIX flags (getattr: this module is imported everywhere; restoring workspace files needs POSIX anyway)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
# a folder opened as a handle, never through a link in its last component
DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW
# a new file: never an existing one, never through a link
NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW
# an existing file read in place: never through a link, and a FIFO swapped in does not block the open
READ_FLAGS = os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0)
# what open(..., O_NOFOLLOW) and O_DIRECTORY report for a link or a file where a folder is expected
# (EMLINK: FreeBSD's O_NOFOLLOW)
_NOT_A_FOLDER = (errno.ELOOP, errno.ENOTDIR, errno.EMLINK)
_NOT_NAMES = frozenset(("", ".", ".."))
# Linux's longest path: a save could not have read a workspace file with a longer relative path
PATH_MAX = 4096


def current_umask() -> int:
    """The process umask (read by setting and restoring it: there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def is_plain_name(name: str) -> bool:
    """Whether ``name`` is one plain path component: not empty, ``.`` or ``..``, and no ``/`` or NUL byte."""
    return name not in _NOT_NAMES and "/" not in name and "\0" not in name


def open_subfolder(parent: int, name: str, *, create: bool) -> int | None:
    """A handle on the folder ``name`` inside the folder handle ``parent``, made first when ``create``
    (pass False for a folder known to exist: one call less).

    None when there is none (and not ``create``); NotADirectoryError when a link or a file is there:
    a link is never followed, whatever it points to.
    """
    if create:
        try:
            os.mkdir(name, 0o777, dir_fd=parent)
        except FileExistsError:
            pass
    try:
        return os.open(name, DIR_FLAGS, dir_fd=parent)
    except FileNotFoundError:
        if create:
            raise
        return None
    except OSError as e:
        if e.errno in _NOT_A_FOLDER:
            raise NotADirectoryError(errno.ENOTDIR, "a link or a file is where a folder goes", name) from None
        raise


def handle_budget() -> int:
    """How many folder handles a walk may keep open: half the process's file limit (16 to 8192)."""
    import resource  # POSIX only

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 8192
    return max(16, min(8192, soft // 2))
