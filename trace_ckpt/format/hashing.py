"""Digests and byte-range views of a container file: what sections and blobs are checked with.

``new_hash(algorithm)`` and ``hex_digest`` serve every format version (SHA-256 in v1, BLAKE3 in v2); the
range and writer classes stream a section through a hasher without holding it in memory.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Any

import blake3

HASHES: dict[str, Callable[[], Any]] = {"sha256": hashlib.sha256, "blake3": blake3.blake3}
CHUNK = 1 << 20
"""Bytes read, hashed or decompressed at a time."""


def new_hash(algorithm: str) -> Any:
    """A fresh hasher (``update`` / ``hexdigest``) for a manifest's ``hash_algorithm``."""
    return HASHES[algorithm]()


def hex_digest(algorithm: str, data: bytes | bytearray | memoryview) -> str:
    """Hex digest of ``data`` with ``algorithm`` (section checksums and blob addresses)."""
    h = new_hash(algorithm)
    h.update(data)
    return str(h.hexdigest())


class HashingWriter(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through to ``out``."""

    def __init__(self, out: IO[bytes], algorithm: str) -> None:
        self.out = out
        self.sha = new_hash(algorithm)
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        mv = memoryview(b)
        self.sha.update(mv)
        self.out.write(mv)
        self.count += mv.nbytes
        return mv.nbytes


def hash_fd(fd: int, offset: int, length: int, algorithm: str) -> str | None:
    """Digest of ``length`` bytes at ``offset`` of a file descriptor (None when the file is shorter)."""
    sha = new_hash(algorithm)
    end = offset + length
    while offset < end:
        chunk = os.pread(fd, min(CHUNK, end - offset), offset)
        if not chunk:
            return None
        sha.update(chunk)
        offset += len(chunk)
    return sha.hexdigest()


class Range:
    """A read-only file view of ``length`` bytes at ``offset`` of ``f`` (what zstd's stream reader reads)."""

    def __init__(self, f: IO[bytes], offset: int, length: int) -> None:
        self._f, self._pos, self._end = f, offset, offset + length

    def read(self, n: int = -1) -> bytes:
        n = self._end - self._pos if n is None or n < 0 else min(n, self._end - self._pos)
        if n <= 0:
            return b""
        self._f.seek(self._pos)
        data = self._f.read(n)
        self._pos += len(data)
        return data


class HashedRange(Range):
    """A :class:`Range` that hashes what is read, in a worker thread (overlapping decompression)."""

    def __init__(self, f: IO[bytes], offset: int, length: int, pool: ThreadPoolExecutor, algorithm: str) -> None:
        super().__init__(f, offset, length)
        self._sha = new_hash(algorithm)
        self._pool = pool
        self._pending: Future[None] | None = None

    def read(self, n: int = -1) -> bytes:
        data = super().read(n)
        if data:
            if self._pending is not None:
                self._pending.result()  # updates stay in order; one in flight at a time
            self._pending = self._pool.submit(self._sha.update, data)
        return data

    def hexdigest(self) -> str:
        """Digest of the whole range, including anything the decompressor left unread."""
        while self.read(CHUNK):
            pass
        if self._pending is not None:
            self._pending.result()
        return self._sha.hexdigest()
