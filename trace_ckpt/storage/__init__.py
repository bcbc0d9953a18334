"""Where checkpoint bytes go: the one door every path passes through.

The rest of trace-ckpt touches checkpoint files only through these functions. A plain path or a
``file://`` URL is a local file (locked temp file, fsync, rename); any other URL goes through fsspec
(``s3://``, ``gs://``, ``az://``, ``memory://``, ...), see ``remote.py``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from trace_ckpt.storage import local, remote
from trace_ckpt.storage.remote import (
    Entry,
    is_remote,
    options_from_pairs,
    set_default_options,
    set_transfer_progress,
    storage_options,
)

PathLike = str | os.PathLike[str]

__all__ = [
    "Entry",
    "atomic_write",
    "is_remote",
    "list_files",
    "local_copy",
    "open_read",
    "options_from_pairs",
    "set_default_options",
    "set_transfer_progress",
    "size_of",
    "storage_options",
]


def open_read(path: PathLike) -> contextlib.AbstractContextManager[IO[bytes]]:
    """A seekable binary reader; remote files are read in exact ranges (only what is asked for)."""
    return remote.open_read(os.fspath(path)) if is_remote(path) else local.open_read(path)


def atomic_write(path: PathLike) -> contextlib.AbstractContextManager[IO[bytes]]:
    """A binary writer whose content appears at ``path`` whole, only when the block ends without error."""
    return remote.atomic_write(os.fspath(path)) if is_remote(path) else local.atomic_write(path)


@contextlib.contextmanager
def local_copy(path: PathLike) -> Iterator[Path]:
    """A local file with the checkpoint's bytes: the file itself, or a streamed download removed afterwards."""
    if is_remote(path):
        with remote.local_copy(os.fspath(path)) as p:
            yield p
    else:
        yield local.local_path(path)


def list_files(folder: PathLike) -> list[Entry]:
    """The files directly inside a local folder, a remote folder or a bucket prefix, sorted by name."""
    return remote.list_files(os.fspath(folder)) if is_remote(folder) else local.list_files(folder)


def size_of(path: PathLike) -> int:
    """Size in bytes of a local or remote file."""
    if is_remote(path):
        return remote.size_of(os.fspath(path))
    return local.local_path(path).stat().st_size
