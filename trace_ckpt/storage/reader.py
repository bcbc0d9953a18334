"""The one exact-range reader: every read fetches the bytes asked for and no more, from any file system.

A local file is read with positional reads on one open handle (its ``fileno`` lets a verify hash
sections on every core); any other store with one ranged request per read (``fs.cat_file``: no
read-ahead cache, so reading a manifest fetches the header, the footer and the manifest only). A file
that shrinks or is replaced while it is read is a one-line error, never a short read.
"""

from __future__ import annotations

import io
import os
from typing import IO, Any

from trace_ckpt.errors import CheckpointError, CorruptCheckpointError
from trace_ckpt.storage.stores import Location, storage_error


class RangeReader(io.RawIOBase):
    """A seekable, read-only view of a file of ``size`` bytes whose reads are exact ranges."""

    def __init__(self, where: Location, size: int, handle: IO[bytes] | None = None) -> None:
        super().__init__()
        self._where, self.size, self._handle = where, size, handle
        self._fd = handle.fileno() if handle is not None else None
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def fileno(self) -> int:
        if self._fd is None:
            raise io.UnsupportedOperation("a remote file has no file descriptor")
        return self._fd

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def read(self, n: int | None = -1) -> bytes:
        end = self.size if n is None or n < 0 else min(self.size, self._pos + n)
        if end <= self._pos:
            return b""
        try:
            data = self._range(self._pos, end)
        except CheckpointError:
            raise
        except Exception as e:  # noqa: BLE001 — the store's own exception types (a range past a shrunk object, a lost connection)
            raise self._changed() or storage_error(self._where, e) from None
        if len(data) != end - self._pos:
            raise self._changed() or CorruptCheckpointError(f"{self._where.url}: the store returned a short read")
        self._pos += len(data)
        return data

    readall = read

    def _range(self, start: int, end: int) -> bytes:
        if self._fd is not None:
            data = os.pread(self._fd, end - start, start)
            if len(data) == end - start or not data:
                return data  # the usual case: one read, no copy
            parts = [data]  # a read may return less than asked (a signal): read on until the end or EOF
            start += len(data)
            while start < end and (chunk := os.pread(self._fd, end - start, start)):
                parts.append(chunk)
                start += len(chunk)
            return b"".join(parts)
        return self._where.fs.cat_file(self._where.path, start=start, end=end)

    def _now(self) -> int:
        if self._fd is not None:
            return os.fstat(self._fd).st_size
        self._where.fs.invalidate_cache(self._where.path)
        return int(self._where.fs.info(self._where.path).get("size") or 0)

    def _changed(self) -> CorruptCheckpointError | None:
        """The error to raise when the file no longer has the size it had when it was opened (else None)."""
        try:
            now = self._now()
        except Exception:  # noqa: BLE001 — the store's own exception types become one typed error
            return None
        if now == self.size:
            return None
        return CorruptCheckpointError(
            f"{self._where.url} changed while it was read ({self.size} bytes, now {now}): "
            "read it again when it is complete"
        )

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
        super().close()
