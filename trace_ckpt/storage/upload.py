"""The commit of every store but the local disk: stage in a local temp file, then upload once.

Writes are staged locally (memory stays flat whatever the checkpoint size) and uploaded at the end: an
object store makes an object visible only when its upload completes (a multipart upload that fails is
aborted), so the object appears whole or not at all. Stores that have a rename get the upload under a
temp name first, then a move over the target.
"""

from __future__ import annotations

import contextlib
import posixpath
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from trace_ckpt.errors import CheckpointError, OutputExistsError, SaveError
from trace_ckpt.storage.local import TMP_PREFIX
from trace_ckpt.storage.stores import OBJECT_STORES, Location, protocols, storage_error, transfer_callback

UPLOAD_CHUNK_BYTES = 50 * 1024 * 1024  # multipart part size on S3 (s3fs's default; a smaller file is one PUT)


def check_target(where: Location, *, overwrite: bool) -> None:
    """Fail before any work when the target is a folder, or (unless ``overwrite``) already exists."""
    try:
        if where.fs.isdir(where.path):
            raise SaveError(f"cannot save to {where.url}: it is a folder")
        if not overwrite and where.fs.exists(where.path):
            raise OutputExistsError(
                f"{where.url} exists: pass overwrite=True (--force) to replace it, or choose another name"
            )
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 — the store's own exception types become one typed error
        raise storage_error(where, e, writing=True) from None


@contextlib.contextmanager
def atomic_write(where: Location, *, overwrite: bool = False) -> Iterator[IO[bytes]]:
    """Yield a local temp file; on success upload it to the target in one piece, else leave the store untouched.

    Without ``overwrite`` an existing object is refused before the work and checked again before the upload
    (object stores offer no atomic create-if-absent here: a writer racing in between is not seen).
    """
    check_target(where, overwrite=overwrite)
    with tempfile.TemporaryDirectory(prefix="tckpt-upload-") as tmp:
        staged = Path(tmp) / "checkpoint.part"
        with open(staged, "wb") as f:
            yield f
        if not overwrite:
            check_target(where, overwrite=False)
        _upload(where, staged)


def _upload(where: Location, staged: Path) -> None:
    fs, path = where.fs, where.path
    try:
        names = protocols(fs)
        with transfer_callback("uploading", staged.stat().st_size) as callback:
            if names & OBJECT_STORES:
                # all-or-nothing: one PUT, or a multipart upload that s3fs aborts when a part fails
                extra = {"chunksize": UPLOAD_CHUNK_BYTES} if names & {"s3", "s3a"} else {}
                fs.put_file(str(staged), path, callback=callback, **extra)
                return
            folder, name = posixpath.split(path)
            tmp = posixpath.join(folder, f"{TMP_PREFIX}{uuid.uuid4().hex[:12]}-{name}.part")
            fs.put_file(str(staged), tmp, callback=callback)
        try:
            fs.mv(tmp, path)
        except BaseException:
            with contextlib.suppress(Exception):
                fs.rm(tmp)
            raise
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 — the store's own exception types become one typed error
        raise storage_error(where, e, writing=True) from None
