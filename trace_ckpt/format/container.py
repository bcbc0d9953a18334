"""The on-disk container: header, sections, manifest, footer (format v3, see docs/format.md).

    [16-byte header][section bytes ...][manifest: a zstd frame of JSON][88-byte footer]

The manifest sits at the end so a save streams in one pass; a reader finds it through the fixed
footer (v1 and v2 store the manifest as plain JSON). Every section is checked against its digest (BLAKE3
since v2, SHA-256 in v1) before a byte of it is decompressed; the manifest itself is covered by a SHA-256
of its stored bytes in the footer, and a signature: an HMAC
in the footer, or an Ed25519 signature in the 64 bytes just before the manifest (the footer then holds
its SHA-256).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, TYPE_CHECKING, Any

import zstandard

from trace_ckpt.errors import (
    SaveError,
)
from trace_ckpt.format.hashing import HashingWriter, hex_digest
from trace_ckpt.format.manifest import Manifest, SectionInfo, SignatureInfo, build_manifest
from trace_ckpt.format.records import dumps

if TYPE_CHECKING:  # cryptography is imported only when a signature is checked: `inspect` stays light
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

MAGIC = b"TRACECKP"
FORMAT_VERSION = 3
# the digest of sections and blob contents, by format version: v2 moved from SHA-256 to BLAKE3, which is
# ~10x faster without SHA CPU extensions (a save hashes every byte twice: content, then stored bytes)
HASH_OF_VERSION = {1: "sha256", 2: "blake3", 3: "blake3"}
# v3 stores the manifest as one zstd frame (its JSON is 6-7x smaller so; v1 and v2 store plain JSON), at a level
# where a 500-loop manifest still takes milliseconds (15; 9 made a 60-loop manifest 14% larger)
COMPRESSED_MANIFEST_SINCE = 3
MANIFEST_LEVEL = 15
HEADER = struct.Struct("<8sII")  # magic, format_version, flags (0)
# manifest offset, manifest length, sha256(manifest) (in every version), the signature slot, magic. The slot holds
# HMAC-SHA256(key, manifest), or SHA-256 of the Ed25519 signature (the 64 bytes before the manifest), or 32 zero bytes
FOOTER = struct.Struct("<QQ32s32s8s")
NO_SIGNATURE = bytes(32)
HMAC_SHA256 = "hmac-sha256"
ED25519 = "ed25519"
ED25519_SIGNATURE_BYTES = 64
# Bounds a reader checks against what the file can hold (docs/format.md, "Bounds"). A 500-loop trace's
# manifest is about 0.5 MB; its JSON becomes Python objects, so a crafted one is kept far from gigabytes.
MAX_MANIFEST_BYTES = 32 * 1024 * 1024
# a compressed manifest may declare at most this many times its stored size, above the floor: honest ones
# expand 5-10 times; a small crafted file cannot make a reader parse megabytes of JSON
MANIFEST_RATIO = 64
MANIFEST_FLOOR = 4 * 1024 * 1024
# zstd's own limit: a block yields at most 128 KiB and costs at least 4 bytes (an RLE block), so no frame
# decompresses to more than 32768 times its size; a section that declares more cannot be honest
ZSTD_MAX_RATIO = 32768
# a section decompressed into memory (the graph, the indexes, blob packs, large graph blobs; never a large
# workspace file, which streams to disk) may declare at most this many times its stored size, above the
# floor: honest sections expand 1-20 times (a 500-loop trace's graph 12x, its files index 8x); packs of
# zero-filled files stay under the floor
IN_MEMORY_RATIO = 1024
IN_MEMORY_FLOOR = 64 * 1024 * 1024
# a section compressed whole (a pack of small blobs, at most 16 MiB: codec.blobs.PACK_BYTES; the graph; the
# indexes) is compressed with a window of 2**24 bytes, a whole pack: zstd's level-3 window (2 MiB) let matches
# between a pack's first and last blobs go, and a pack of similar files (parquet frames of the same factors) came
# out up to 70% larger. Readers need no setting for it (zstd decoders accept windows up to 2**27 by default).
WHOLE_WINDOW_LOG = 24
# a section compressed whole that is under SMALL_WHOLE_BYTES (the graph, the indexes, the last pack, every pack of a
# small save) is compressed at SMALL_WHOLE_LEVEL, or the save's level if higher: a few milliseconds at most (level 6
# compresses 4 MiB in 3-50 ms here, level 3 in 2-20 ms), and 6% smaller on a trace of few small files, where a save's
# per-blob and per-node bytes weigh most (issue 16: a 60-loop trace of 30 x 5 panels)
SMALL_WHOLE_BYTES = 4 * 1024 * 1024
SMALL_WHOLE_LEVEL = 6


def manifest_bound(stored: int) -> int:
    """The most JSON a v3 manifest of ``stored`` compressed bytes may declare (writer and reader agree)."""
    return min(MAX_MANIFEST_BYTES, max(MANIFEST_FLOOR, stored * MANIFEST_RATIO))


def _whole_compressor(level: int) -> zstandard.ZstdCompressor:
    """A compressor for sections compressed whole: ``level`` with a window as large as a pack (WHOLE_WINDOW_LOG)."""
    window_log = max(WHOLE_WINDOW_LOG, zstandard.ZstdCompressionParameters.from_level(level).window_log)
    return zstandard.ZstdCompressor(
        compression_params=zstandard.ZstdCompressionParameters.from_level(
            level, window_log=window_log, write_content_size=1
        )
    )


class ContainerWriter:
    """Appends sections to an open binary file, then writes the manifest and footer (always the current format)."""

    hash_algorithm = HASH_OF_VERSION[FORMAT_VERSION]

    def __init__(self, out: IO[bytes], *, level: int = 3, threads: int = 0) -> None:
        self._out = out
        # one compressor for every streamed section: with threads != 0 it keeps its worker pool between sections
        self._compressor = zstandard.ZstdCompressor(level=level, threads=threads, write_content_size=True)
        # and one for sections compressed whole, with a window as large as a pack (see WHOLE_WINDOW_LOG), in the
        # calling thread: a pack is one zstd job anyway (4 windows), and the worker pool's job buffers for so large
        # a window grew a save's memory by 170 MB (a pack is compressed beside the save's reads: add_bytes_soon)
        self._whole, self._small = (_whole_compressor(lv) for lv in (level, max(level, SMALL_WHOLE_LEVEL)))
        self._pos = 0
        self.sections: list[SectionInfo] = []
        self._pool: ThreadPoolExecutor | None = None
        self._pending: tuple[Future[tuple[bytes, str]], str, str, int, dict[str, Any] | None] | None = None
        self._emit(HEADER.pack(MAGIC, FORMAT_VERSION, 0))

    def _emit(self, data: bytes | memoryview) -> None:
        """Append bytes to the file as they are (the header, a stored section, the manifest, the footer)."""
        self._out.write(data)
        self._pos += len(data)

    def add_bytes(
        self,
        name: str,
        kind: str,
        raw: bytes | bytearray | memoryview,
        *,
        meta: dict[str, Any] | None = None,
    ) -> SectionInfo:
        """Compress ``raw`` into one zstd frame and append it as a section."""
        self._drain()
        return self._append(name, kind, *self._compress(raw), len(raw), meta)

    def add_bytes_soon(
        self,
        name: str,
        kind: str,
        raw: bytes | bytearray | memoryview,
        *,
        meta: dict[str, Any] | None = None,
    ) -> None:
        """Like :meth:`add_bytes`, but compressed in a background thread while the caller goes on (a save
        reads and hashes the next files meanwhile). Sections keep their order: the pending one is written
        before anything else is added, so at most one waits (``raw`` must not change until then)."""
        self._drain()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="tckpt-compress")
        self._pending = (self._pool.submit(self._compress, raw), name, kind, len(raw), meta)

    def _compress(self, raw: bytes | bytearray | memoryview) -> tuple[bytes, str]:
        stored = (self._small if len(raw) < SMALL_WHOLE_BYTES else self._whole).compress(raw)
        return stored, self.digest(stored)

    def _drain(self) -> None:
        if self._pending is not None:
            future, name, kind, raw_length, meta = self._pending
            self._pending = None
            self._append(name, kind, *future.result(), raw_length, meta)

    def _append(
        self, name: str, kind: str, stored: bytes, digest: str, raw_length: int, meta: dict[str, Any] | None
    ) -> SectionInfo:
        info = SectionInfo(
            name=name,
            kind=kind,  # type: ignore[arg-type]
            offset=self._pos,
            length=len(stored),
            raw_length=raw_length,
            digest=digest,
            meta=meta or {},
        )
        self._emit(stored)
        self.sections.append(info)
        return info

    def close(self) -> None:
        """Stop the background compression thread (``finish`` does; call it when a save is abandoned)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._pending = None

    def add_stream(
        self,
        name: str,
        kind: str,
        chunks: Iterable[bytes],
        *,
        meta: dict[str, Any] | None = None,
        size: int = -1,
    ) -> SectionInfo:
        """Compress an iterable of chunks into one frame without holding it in memory.

        ``size``, when known, goes into the frame header (and must then be exact).
        """
        self._drain()
        offset = self._pos
        hw = HashingWriter(self._out, self.hash_algorithm)
        raw_length = 0
        with self._compressor.stream_writer(hw, size=size, closefd=False) as zw:
            for chunk in chunks:
                raw_length += len(chunk)
                zw.write(chunk)
        self._pos += hw.count
        info = SectionInfo(
            name=name,
            kind=kind,  # type: ignore[arg-type]
            offset=offset,
            length=hw.count,
            raw_length=raw_length,
            digest=hw.sha.hexdigest(),
            meta=meta or {},
        )
        self.sections.append(info)
        return info

    def digest(self, data: bytes | bytearray | memoryview) -> str:
        """Hex digest of ``data`` with this writer's algorithm (section checksums and blob addresses)."""
        return hex_digest(self.hash_algorithm, data)

    def finish(
        self,
        manifest: Manifest,
        *,
        key: bytes | None = None,
        key_id: str | None = None,
        private_key: Ed25519PrivateKey | None = None,
        content: Mapping[str, Any] | None = None,
    ) -> Manifest:
        """Write the manifest ``build_manifest`` makes of ``manifest`` (the caller's draft, left unchanged), ``content``
        (what the save found) and this writer's sections, then the footer; return what was written. It is signed
        with the Ed25519 ``private_key`` or else the HMAC ``key`` (``key_id`` names it).

        The manifest holds every section's digest, so a signature over the manifest covers the whole file.
        """
        self._drain()
        self.close()
        algorithm = ED25519 if private_key is not None else HMAC_SHA256 if key else None
        manifest = build_manifest(
            manifest,
            content or {},
            format_version=FORMAT_VERSION,
            hash_algorithm=self.hash_algorithm,
            sections=self.sections,
            signature=SignatureInfo(algorithm=algorithm, key_id=key_id or "") if algorithm else None,
        )
        try:
            text = dumps(manifest)
        except (TypeError, ValueError) as e:  # what JSON cannot hold, or what a reader would refuse (records.dumps)
            raise SaveError(
                f"the manifest would not read back ({e}): metadata must be JSON data, numbers finite and integers "
                "within 64 bits"
            ) from None
        body = zstandard.ZstdCompressor(level=MANIFEST_LEVEL, write_content_size=True).compress(text)
        if len(text) > manifest_bound(len(body)):  # no reader would open the file
            raise SaveError(
                f"the manifest would be {len(text)} bytes ({len(body)} compressed), more than a reader accepts "
                f"({MAX_MANIFEST_BYTES}, or {MANIFEST_RATIO} times its compressed size)"
            )
        if private_key is not None:
            signature = private_key.sign(body)
            self._emit(signature)
            mac = hashlib.sha256(signature).digest()
        else:
            mac = hmac.digest(key, body, "sha256") if key else NO_SIGNATURE
        offset = self._pos
        self._emit(body)
        self._emit(FOOTER.pack(offset, len(body), hashlib.sha256(body).digest(), mac, MAGIC))
        return manifest
