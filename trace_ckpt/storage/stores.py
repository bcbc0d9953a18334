"""Where a path or URL leads: an fsspec file system, the options it is made with, and its errors as ours.

Every location goes through ``fsspec.core.url_to_fs``: a plain path or ``file://`` URL gives fsspec's
``LocalFileSystem``, any other URL its backend (``s3://``, ``gs://``, ``az://``, ``memory://``, ...).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from functools import cached_property
from pathlib import Path
from typing import Any

from trace_ckpt.errors import (
    CheckpointError,
    CheckpointNotFoundError,
    CorruptCheckpointError,
    MissingExtraError,
    SaveError,
    StorageAccessError,
)

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
    """Whether ``path`` is a URL of a store other than the local disk (any URL but ``file://``)."""
    proto = protocol_of(os.fspath(path))
    return proto is not None and proto not in ("file", "local")


def local_path(path: str | os.PathLike[str]) -> Path:
    """The local path of a plain path or a ``file://`` URL (``~`` expanded), spelled as the user spelled it."""
    text = os.fspath(path)
    for prefix in ("file://", "local://"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
            break
    return Path(text).expanduser()


class Location:
    """A path or URL resolved once: its file system, the path inside it, and how to name it in messages.

    ``url`` is what the user wrote (a local path without ``file://``, ``~`` expanded); ``local`` means the local
    disk (fsync-and-rename commits, positional reads, local error wording). A local location makes its
    ``fs`` (fsspec's ``LocalFileSystem``) when first asked: opening and sizing a local file use the ``open``
    and ``stat`` that file system calls itself, so ``inspect`` of a local file never imports fsspec (which
    imports asyncio, ssl and the compression libraries: tens of milliseconds of inspect's budget).
    """

    def __init__(self, url: str, local: bool, fs: Any = None, path: str | None = None) -> None:
        self.url, self.local = url, local
        if fs is not None:
            self.__dict__["fs"], self.__dict__["path"] = fs, path

    @cached_property
    def fs(self) -> Any:
        """The fsspec file system (made here only for a local location)."""
        from fsspec.implementations.local import LocalFileSystem

        return LocalFileSystem()

    @cached_property
    def path(self) -> str:
        """The path inside ``fs`` (fsspec's absolute POSIX spelling, for a local location)."""
        return self.fs._strip_protocol(self.url)

    def child(self, name: str) -> str:
        """The user-spelled location of ``name`` inside this folder."""
        return str(Path(self.url) / name) if self.local else f"{self.url.rstrip('/')}/{name}"


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
def transfer_callback(label: str, total: int | None) -> Iterator[Any]:
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


def resolve(path: str | os.PathLike[str]) -> Location:
    """The file system and inner path of a local path (fsspec's ``LocalFileSystem``) or of a URL (``url_to_fs``,
    with the context's options)."""
    if not is_remote(path):
        return Location(str(local_path(path)), True)
    import fsspec

    url = os.fspath(path)
    proto = protocol_of(url) or "file"
    try:
        fs, inner = fsspec.core.url_to_fs(url, **_options.get())
    except ImportError:
        extra = EXTRAS.get(proto)
        hint = f"pip install 'trace-ckpt[{extra}]'" if extra else f"install the fsspec backend for {proto}://"
        raise MissingExtraError(f"{url}: the {proto}:// storage backend is not installed: {hint}") from None
    except ValueError as e:
        if "protocol" in str(e).lower():  # fsspec's protocols are plug-ins: none installed knows this one
            raise MissingExtraError(
                f"{url}: no installed storage backend knows {proto}://: check the URL, or install the fsspec "
                "package that provides it"
            ) from None
        raise CheckpointError(f"{url}: {e}") from None
    except TypeError as e:
        raise CheckpointError(f"{url}: bad storage option for {proto}:// ({e})") from None
    return Location(url, bool(getattr(fs, "local_file", False)), fs, inner)


def protocols(fs: Any) -> set[str]:
    """The protocol names of a file system (``{"s3", "s3a"}``)."""
    p = fs.protocol
    return set(p) if isinstance(p, (tuple, list)) else {p}


def _reason(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) < 200 else text[:199] + "…"


def storage_error(where: Location | str, e: BaseException, *, writing: bool = False) -> CheckpointError:
    """A file system's exception as one of trace-ckpt's one-line errors (docs/cli.md's exit code table)."""
    if isinstance(e, CheckpointError):
        return e
    if isinstance(where, Location) and where.local:
        return _local_error(where.url, e, writing=writing)
    url = where.url if isinstance(where, Location) else where
    if isinstance(e, PermissionError):
        return StorageAccessError(f"{url}: access denied by the store ({_reason(e)}): check the credentials")
    cause = e.__cause__
    if isinstance(e, FileNotFoundError) and isinstance(cause, OSError) and not isinstance(cause, FileNotFoundError):
        e = cause  # fsspec's HTTP file system says "not found" for a server it could not reach
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


def _local_error(path: str, e: BaseException, *, writing: bool) -> CheckpointError:
    """The local disk's errors: a missing or unreadable input is 'not found', a failed write a save error."""
    reason = getattr(e, "strerror", None) or _reason(e)
    if isinstance(e, ValueError) and "\0" in path:  # no file can have that name
        if writing:
            return SaveError(f"cannot save to {path!r}: the path holds a NUL character")
        return CheckpointNotFoundError(f"no checkpoint at {path!r}: the path holds a NUL character")
    if writing:
        return SaveError(f"cannot save to {path}: {reason}; the previous file is untouched")
    if isinstance(e, IsADirectoryError):
        return CorruptCheckpointError(f"{path} is a folder, not a checkpoint file")
    if isinstance(e, (FileNotFoundError, NotADirectoryError)):  # a/b where a is a file: no such path either
        return CheckpointNotFoundError(f"no checkpoint at {path}: check the path")
    if isinstance(e, PermissionError):
        return CheckpointNotFoundError(f"cannot read {path}: {reason}")
    return CheckpointError(f"cannot read {path}: {reason}")


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
