"""Checkpoints behind a URL (``s3://``, ``gs://``, ``az://``, ``memory://``, ...), through fsspec.

Reads are exact range reads (no read-ahead cache), so reading a manifest fetches the header, the
footer and the manifest only. Writes are staged in a local temp file (memory stays flat whatever the
checkpoint size) and uploaded once at the end: an object store makes an object visible only when its
upload completes (a multipart upload that fails is aborted), so the object appears whole or not at all.
Stores that have a rename get the upload under a temp name first, then a move over the target.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import posixpath
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO, Any

from trace_ckpt.errors import (
    CheckpointError,
    CheckpointNotFoundError,
    CorruptCheckpointError,
    MissingExtraError,
    SaveError,
    StorageAccessError,
)
from trace_ckpt.storage.local import Entry

# pip extra that provides each protocol's fsspec backend
EXTRAS = {
    "s3": "s3",
    "s3a": "s3",
    "gs": "gcs",
    "gcs": "gcs",
    "az": "azure",
    "abfs": "azure",
    "abfss": "azure",
    "adl": "azure",
}
# stores where an upload is all-or-nothing, and where a "rename" would be a second full copy
OBJECT_STORES = frozenset(EXTRAS)
UPLOAD_CHUNK_BYTES = 50 * 1024 * 1024  # multipart part size on S3 (s3fs's default; a smaller file is one PUT)

_options: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("trace_ckpt_storage_options", default={})  # noqa: B039 — never mutated: replaced per call
# bar(label, total_bytes) -> a context manager yielding advance(n_bytes): what shows a download or upload
TransferProgress = Callable[[str, "int | None"], AbstractContextManager[Callable[[int], None]]]
_transfer: contextvars.ContextVar[TransferProgress | None] = contextvars.ContextVar("trace_ckpt_transfer", default=None)


def protocol_of(url: str) -> str | None:
    """The URL scheme (``s3`` for ``s3://b/k``), or None for a plain local path."""
    head, sep, _ = url.partition("://")
    if not sep or not head or "/" in head or os.sep in head:
        return None
    return head.split("::")[-1].lower()


def is_remote(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` goes through fsspec (any URL but ``file://``)."""
    proto = protocol_of(os.fspath(path))
    return proto is not None and proto not in ("file", "local")


@contextlib.contextmanager
def storage_options(**options: Any) -> Iterator[None]:
    """Extra fsspec options (``endpoint_url=...``, ``anon=True``, ...) for every URL opened inside the block.

    Credentials normally come the way fsspec and the cloud SDKs already take them (environment,
    profiles, ``FSSPEC_<PROTOCOL>_<OPTION>`` variables); this is for the rest.
    """
    token = _options.set({**_options.get(), **options})
    try:
        yield
    finally:
        _options.reset(token)


def set_default_options(options: Mapping[str, Any]) -> None:
    """Set options for the rest of the current context (the CLI's ``--storage-option``)."""
    _options.set({**_options.get(), **options})


def set_transfer_progress(bar: TransferProgress | None) -> None:
    """Show downloads and uploads of remote checkpoints through ``bar`` for the rest of the current
    context (the CLI's progress bars); ``bar(label, total_bytes)`` yields ``advance(n_bytes)``."""
    _transfer.set(bar)


@contextlib.contextmanager
def _callback(label: str, total: int | None) -> Iterator[Any]:
    """An fsspec transfer callback that feeds the context's progress bar (a no-op without one)."""
    from fsspec.callbacks import Callback, NoOpCallback

    bar = _transfer.get()
    if bar is None:
        yield NoOpCallback()
        return

    class _Advance(Callback):  # fsspec counts bytes done; the bar wants increments
        seen = 0

        def call(self, *args: Any, **kwargs: Any) -> None:
            if self.value > self.seen:
                advance(self.value - self.seen)
                self.seen = self.value

    with bar(label, total) as advance:
        yield _Advance()


def _filesystem(url: str) -> tuple[Any, str]:
    import fsspec

    proto = protocol_of(url) or "file"
    try:
        return fsspec.core.url_to_fs(url, **_options.get())
    except ImportError:
        extra = EXTRAS.get(proto)
        hint = f"pip install 'trace-ckpt[{extra}]'" if extra else f"install the fsspec backend for {proto}://"
        raise MissingExtraError(f"{url}: the {proto}:// storage backend is not installed: {hint}") from None
    except ValueError as e:
        if "protocol" in str(e).lower():
            raise CheckpointError(f"{url}: unknown storage protocol {proto}://") from None
        raise CheckpointError(f"{url}: {e}") from None
    except TypeError as e:
        raise CheckpointError(f"{url}: bad storage option for {proto}:// ({e})") from None


def _reason(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) < 200 else text[:199] + "…"


def storage_error(url: str, e: BaseException, *, writing: bool = False) -> CheckpointError:
    """A store's exception as one of trace-ckpt's one-line errors."""
    if isinstance(e, CheckpointError):
        return e
    if isinstance(e, PermissionError):
        return StorageAccessError(f"{url}: access denied by the store ({_reason(e)}): check the credentials")
    if isinstance(e, FileNotFoundError):
        if writing:
            return SaveError(f"cannot save to {url}: the bucket or folder does not exist ({_reason(e)})")
        return CheckpointNotFoundError(f"no checkpoint at {url}: check the URL")
    if isinstance(e, (OSError, TimeoutError, ConnectionError)):
        if writing:
            return SaveError(f"cannot save to {url}: {_reason(e)}; any previous object is untouched")
        return StorageAccessError(f"{url}: the store could not be read ({_reason(e)})")
    # the cloud SDKs raise their own exception types for network and endpoint failures
    what = "cannot save to" if writing else "cannot read"
    cls = SaveError if writing else StorageAccessError
    return cls(f"{what} {url}: {type(e).__name__}: {_reason(e)}")


class _ExactReader:
    """A seekable read-only view of a remote file whose every read is one ranged request; an object that
    shrinks or is replaced while it is read is a one-line error, never a short read."""

    def __init__(self, fs: Any, path: str, size: int, url: str) -> None:
        self._fs, self._path, self.size, self._url = fs, path, size, url
        self._pos = 0

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, n: int = -1) -> bytes:
        end = self.size if n is None or n < 0 else min(self.size, self._pos + n)
        if end <= self._pos:
            return b""
        try:
            data = self._fs.cat_file(self._path, start=self._pos, end=end)
        except Exception as e:  # noqa: BLE001 — the store's own exception types (a range past a shrunk object, a lost connection)
            raise self._changed() or storage_error(self._url, e) from None
        if len(data) != end - self._pos:
            raise self._changed() or CorruptCheckpointError(f"{self._url}: the store returned a short read")
        self._pos += len(data)
        return data

    def _changed(self) -> CorruptCheckpointError | None:
        """The error to raise when the object no longer has the size it had when it was opened (else None)."""
        try:
            self._fs.invalidate_cache(self._path)
            now = int(self._fs.info(self._path).get("size") or 0)
        except Exception:  # noqa: BLE001 — the store's own exception types become one typed error
            return None
        if now == self.size:
            return None
        return CorruptCheckpointError(
            f"{self._url} changed while it was read ({self.size} bytes, now {now}): read it again when it is complete"
        )


@contextlib.contextmanager
def open_read(url: str) -> Iterator[IO[bytes]]:
    """Open a remote checkpoint for exact ranged reads."""
    fs, path = _filesystem(url)
    try:
        info = fs.info(path)
    except Exception as e:  # noqa: BLE001 — the store's own exception types become one typed error
        raise storage_error(url, e) from None
    if info.get("type") == "directory":
        raise CorruptCheckpointError(f"{url} is a folder, not a checkpoint file")
    reader = _ExactReader(fs, path, int(info.get("size") or 0), url)
    try:
        yield reader  # type: ignore[misc]
    except CheckpointError:
        raise
    except (OSError, TimeoutError) as e:
        raise storage_error(url, e) from None


@contextlib.contextmanager
def local_copy(url: str) -> Iterator[Path]:
    """Download a remote checkpoint into a temp file (streamed), yield its path, delete it afterwards."""
    fs, path = _filesystem(url)
    with tempfile.TemporaryDirectory(prefix="tckpt-fetch-") as tmp:
        local = Path(tmp) / (posixpath.basename(path) or "checkpoint")
        try:
            info = fs.info(path)  # one request for what the file is and its size
            if info.get("type") == "directory":
                raise CorruptCheckpointError(f"{url} is a folder, not a checkpoint file")
            with _callback("downloading", info.get("size")) as callback:
                fs.get_file(path, str(local), callback=callback)
        except CheckpointError:
            raise
        except Exception as e:  # noqa: BLE001 — the store's own exception types become one typed error
            raise storage_error(url, e) from None
        yield local


@contextlib.contextmanager
def atomic_write(url: str) -> Iterator[IO[bytes]]:
    """Yield a local temp file; on success upload it to ``url`` in one piece, else leave the store untouched."""
    fs, path = _filesystem(url)
    try:
        if fs.isdir(path):
            raise SaveError(f"cannot save to {url}: it is a folder")
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 — the store's own exception types become one typed error
        raise storage_error(url, e, writing=True) from None
    with tempfile.TemporaryDirectory(prefix="tckpt-upload-") as tmp:
        staged = Path(tmp) / "checkpoint.part"
        with open(staged, "wb") as f:
            yield f
        _upload(fs, staged, path, url)


def _protocols(fs: Any) -> set[str]:
    p = fs.protocol
    return set(p) if isinstance(p, (tuple, list)) else {p}


def _upload(fs: Any, staged: Path, path: str, url: str) -> None:
    try:
        protocols = _protocols(fs)
        with _callback("uploading", staged.stat().st_size) as callback:
            if protocols & OBJECT_STORES:
                # all-or-nothing: one PUT, or a multipart upload that s3fs aborts when a part fails
                extra = {"chunksize": UPLOAD_CHUNK_BYTES} if protocols & {"s3", "s3a"} else {}
                fs.put_file(str(staged), path, callback=callback, **extra)
                return
            tmp = f"{path}.tckpt-tmp-{uuid.uuid4().hex[:12]}.part"
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
        raise storage_error(url, e, writing=True) from None


def list_files(url: str) -> list[Entry]:
    """The files directly inside a remote folder or bucket prefix, sorted by name."""
    fs, path = _filesystem(url)
    try:
        infos = fs.ls(path, detail=True)
    except FileNotFoundError:
        raise CheckpointNotFoundError(f"no folder or prefix at {url}: check the bucket and the path") from None
    except Exception as e:  # noqa: BLE001 — the store's own exception types become one typed error
        raise storage_error(url, e) from None
    out = []
    for info in infos:
        if info.get("type") == "file":
            # spelled the way the user spelled the folder (memory://x and memory:///x are the same)
            out.append(Entry(f"{url.rstrip('/')}/{posixpath.basename(info['name'])}", int(info.get("size") or 0)))
    return sorted(out, key=lambda e: e.url)


def options_from_pairs(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Parse ``key=value`` pairs (values as JSON when they parse: ``anon=true``, ``max_retries=3``)."""
    import json

    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"storage option {pair!r} is not key=value")
        try:
            options[key.strip()] = json.loads(value)
        except ValueError:
            options[key.strip()] = value
    return options


def size_of(url: str) -> int:
    """Size of a remote file in bytes."""
    fs, path = _filesystem(url)
    try:
        return int(fs.info(path).get("size") or 0)
    except Exception as e:  # noqa: BLE001 — the store's own exception types become one typed error
        raise storage_error(url, e) from None
