"""The storage door: list / size / open / atomic write / remove, for local paths and URLs alike.

Each call resolves its location through fsspec (``stores.resolve``) and runs the same code for every file
system; only the commit of a write differs by kind: the local disk's fsync-and-rename (``local.py``) or a
staged upload (``upload.py``). Reads are exact ranges (``reader.py``).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from trace_ckpt.errors import CheckpointError, CheckpointNotFoundError, CorruptCheckpointError, SaveError
from trace_ckpt.storage import local, upload
from trace_ckpt.storage.reader import RangeReader
from trace_ckpt.storage.stores import OBJECT_STORES, Location, protocols, resolve, storage_error, transfer_callback

PathLike = str | os.PathLike[str]


@dataclass
class Entry:
    """One file of a listed folder (local or remote): its path or URL, and its size."""

    url: str
    size: int


def _info(where: Location) -> dict:
    try:
        return where.fs.info(where.path)
    except Exception as e:  # noqa: BLE001 — the store's own exception types become one typed error
        raise storage_error(where, e) from None


def _file_info(where: Location) -> dict:
    if where.local:  # LocalFileSystem.info's stat, without importing fsspec (see Location)
        try:
            st = os.stat(where.url)
        except Exception as e:  # noqa: BLE001 — the file system's exception types become one typed error
            raise storage_error(where, e) from None
        info = {"size": st.st_size, "type": "directory" if stat.S_ISDIR(st.st_mode) else "file"}
    else:
        info = _info(where)
    if info.get("type") == "directory":
        raise CorruptCheckpointError(f"{where.url} is a folder, not a checkpoint file")
    return info


@contextlib.contextmanager
def open_read(path: PathLike) -> Iterator[IO[bytes]]:
    """A seekable binary reader whose every read is an exact range (only what is asked for)."""
    where = resolve(path)
    handle = None
    if where.local:
        try:  # what LocalFileSystem.open does, without importing fsspec (see Location); read with positional reads
            handle = open(where.url, "rb")  # noqa: SIM115 — closed by the reader
        except Exception as e:  # noqa: BLE001 — the file system's exception types become one typed error
            raise storage_error(where, e) from None
        size = os.fstat(handle.fileno()).st_size
    else:
        size = int(_file_info(where).get("size") or 0)
    reader = RangeReader(where, size, handle)
    try:
        yield reader  # type: ignore[misc]
    except CheckpointError:
        raise
    except (OSError, TimeoutError) as e:
        raise storage_error(where, e) from None
    finally:
        reader.close()


def atomic_write(path: PathLike, *, overwrite: bool = False) -> contextlib.AbstractContextManager[IO[bytes]]:
    """A binary writer whose content appears at ``path`` whole, only when the block ends without error.

    An existing file at ``path`` is an :class:`~trace_ckpt.errors.OutputExistsError` (exit 7), raised before
    the block runs, unless ``overwrite``; a failed write leaves any previous file untouched (a SaveError).
    """
    where = resolve(path)
    if where.local:
        return local.atomic_write(Path(where.url), overwrite=overwrite)
    return upload.atomic_write(where, overwrite=overwrite)


def check_output(path: PathLike, *, overwrite: bool = False) -> None:
    """Fail fast, before any slow work, when ``path`` cannot be a new output: its folder is missing, it is a
    folder, it exists (unless ``overwrite``), or its store cannot be reached."""
    where = resolve(path)
    if where.local:
        target = Path(where.url)
        if not target.parent.is_dir():
            raise SaveError(f"cannot save to {target}: folder {target.parent} does not exist")
        if target.is_dir():
            raise SaveError(f"cannot save to {target}: it is a folder")
        if not overwrite:
            local.refuse_existing(target)
    else:
        upload.check_target(where, overwrite=overwrite)


@contextlib.contextmanager
def local_copy(path: PathLike) -> Iterator[Path]:
    """A local file with the checkpoint's bytes: the file itself, or a streamed download removed afterwards."""
    where = resolve(path)
    if where.local:
        yield Path(where.url)
        return
    with tempfile.TemporaryDirectory(prefix="tckpt-fetch-") as tmp:
        copy = Path(tmp) / (posixpath.basename(where.path) or "checkpoint")
        info = _file_info(where)  # one request for what the file is and its size
        try:
            with transfer_callback("downloading", info.get("size")) as callback:
                where.fs.get_file(where.path, str(copy), callback=callback)
        except CheckpointError:
            raise
        except Exception as e:  # noqa: BLE001 — the store's own exception types become one typed error
            raise storage_error(where, e) from None
        yield copy


def list_files(folder: PathLike) -> list[Entry]:
    """The regular files directly inside a local folder, a remote folder or a bucket prefix, sorted by name
    (links and unfinished writes' temp files left out)."""
    where = resolve(folder)
    try:
        infos = where.fs.ls(where.path, detail=True)
    except (FileNotFoundError, NotADirectoryError):
        if where.local:
            raise CheckpointNotFoundError(f"no folder at {where.url}: check the path") from None
        raise CheckpointNotFoundError(f"no folder or prefix at {where.url}: check the bucket and the path") from None
    except PermissionError as e:
        if where.local:
            raise CheckpointNotFoundError(f"cannot read {where.url}: {e.strerror}") from None
        raise storage_error(where, e) from None
    except Exception as e:  # noqa: BLE001 — the store's own exception types become one typed error
        raise storage_error(where, e) from None
    if len(infos) == 1 and infos[0].get("type") == "file" and _same(where, infos[0]["name"]):
        raise CorruptCheckpointError(f"{where.url} is a file, not a folder: give the folder that holds checkpoints")
    out = []
    for info in infos:
        name = posixpath.basename(info["name"].rstrip("/"))
        if info.get("type") == "file" and not info.get("islink") and not name.startswith(local.TMP_PREFIX):
            # spelled the way the user spelled the folder (memory://x and memory:///x are the same)
            out.append(Entry(where.child(name), int(info.get("size") or 0)))
    return sorted(out, key=lambda e: e.url)


def _same(where: Location, name: str) -> bool:
    strip = where.fs._strip_protocol
    return strip(name).rstrip("/") == strip(where.path).rstrip("/")


def size_of(path: PathLike) -> int:
    """Size in bytes of a local or remote file."""
    return int(_file_info(resolve(path)).get("size") or 0)


def is_folder(path: PathLike) -> bool:
    """Whether ``path`` is a folder (a local folder, or a remote folder or prefix that holds files)."""
    where = resolve(path)
    try:
        return bool(where.fs.isdir(where.path))
    except Exception as e:  # noqa: BLE001 — the store's own exception types become one typed error
        raise storage_error(where, e) from None


def make_folder(path: PathLike) -> None:
    """Create a folder (and its parents) where folders exist; object stores have none to make."""
    where = resolve(path)
    if protocols(where.fs) & OBJECT_STORES:
        return
    try:
        where.fs.makedirs(where.path, exist_ok=True)
    except Exception as e:  # noqa: BLE001 — the store's own exception types become one typed error
        if where.local and isinstance(e, OSError):
            raise SaveError(f"cannot create the folder {where.url}: {e.strerror or e}") from None
        raise storage_error(where, e, writing=True) from None


def remove(path: PathLike) -> None:
    """Delete one file (a missing file is not an error)."""
    where = resolve(path)
    try:
        where.fs.rm_file(where.path)
    except FileNotFoundError:
        pass
    except Exception as e:  # noqa: BLE001 — the store's own exception types become one typed error
        raise storage_error(where, e, writing=True) from None
