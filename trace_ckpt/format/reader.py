"""Reading the container (docs/format.md): the footer, the manifest (a zstd frame since v3), every section's
bounds and checksum, the signature, and sections decompressed within their ratio caps. Writing and the layout's
constants are :mod:`trace_ckpt.format.container`.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import IO, TYPE_CHECKING, Any

import zstandard

from trace_ckpt.errors import (
    CorruptCheckpointError,
    NotACheckpointError,
    UnsupportedVersionError,
)
from trace_ckpt.format.container import (
    COMPRESSED_MANIFEST_SINCE,
    ED25519,
    ED25519_SIGNATURE_BYTES,
    FOOTER,
    FORMAT_VERSION,
    HASH_OF_VERSION,
    HEADER,
    HMAC_SHA256,
    IN_MEMORY_FLOOR,
    IN_MEMORY_RATIO,
    MAGIC,
    MANIFEST_RATIO,
    MAX_MANIFEST_BYTES,
    NO_SIGNATURE,
    ZSTD_MAX_RATIO,
    manifest_bound,
)
from trace_ckpt.format.hashing import CHUNK, HashedRange, Range, hash_fd, hex_digest, new_hash
from trace_ckpt.format.manifest import Manifest, SectionInfo
from trace_ckpt.format.records import loads

if TYPE_CHECKING:  # cryptography is imported only when a signature is checked: `inspect` stays light
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def _upgrade(doc: dict[str, Any], version: int) -> dict[str, Any]:
    """The one place where manifests of older format versions are migrated to the current one.

    v1 -> v2: the sections' ``sha256`` became ``digest``, with the algorithm named by ``hash_algorithm``
    (v1 files keep SHA-256, so they are still checked, and their blobs still found, with SHA-256).
    """
    if version == 1:
        doc = dict(doc, hash_algorithm="sha256")
        sections = doc.get("sections")
        if isinstance(sections, list):
            doc["sections"] = [
                {("digest" if k == "sha256" else k): v for k, v in s.items()} if isinstance(s, dict) else s
                for s in sections
            ]
    elif doc.get("hash_algorithm") != HASH_OF_VERSION[version]:
        raise ValueError(
            f"format v{version} uses {HASH_OF_VERSION[version]} digests, not {doc.get('hash_algorithm')!r:.60}"
        )
    return doc


class ContainerReader:
    """Reads the manifest of a checkpoint and, on request, its verified sections."""

    def __init__(self, f: IO[bytes], *, source: str = "checkpoint") -> None:
        self._f = f
        self.source = source
        f.seek(0, io.SEEK_END)
        self.size = f.tell()
        f.seek(0)
        head = f.read(HEADER.size)
        if len(head) < len(MAGIC) or head[: len(MAGIC)] != MAGIC:
            raise NotACheckpointError(f"{source} is not a trace-ckpt checkpoint (no TRACECKP magic at the start)")
        if len(head) < HEADER.size or self.size < HEADER.size + FOOTER.size:
            raise CorruptCheckpointError(f"{source} is truncated ({self.size} bytes): save it again or use a good copy")
        _, version, _flags = HEADER.unpack(head)
        if version > FORMAT_VERSION:
            raise UnsupportedVersionError(
                f"{source} uses checkpoint format v{version}; this trace-ckpt reads up to v{FORMAT_VERSION}: "
                "upgrade trace-ckpt to read it"
            )
        if version < 1:
            raise CorruptCheckpointError(f"{source} claims format version {version}, which never existed")
        if _flags != 0:
            raise CorruptCheckpointError(
                f"{source} sets header flags {_flags:#x}, which format v{version} does not define"
            )
        self.format_version = version
        f.seek(self.size - FOOTER.size)
        m_off, m_len, m_sha, mac, tail = FOOTER.unpack(self._read_exact(FOOTER.size))
        if tail != MAGIC:
            raise CorruptCheckpointError(
                f"{source} is truncated or damaged (no footer): the save did not finish; use a good copy"
            )
        if m_off < HEADER.size or m_off + m_len != self.size - FOOTER.size:
            raise CorruptCheckpointError(f"{source} has a damaged footer (manifest range out of bounds)")
        if m_len > MAX_MANIFEST_BYTES:
            raise CorruptCheckpointError(
                f"{source}: the manifest is {m_len} bytes, more than a reader accepts ({MAX_MANIFEST_BYTES}); "
                "the file is crafted or damaged"
            )
        f.seek(m_off)
        body = self._read_exact(m_len)
        if hashlib.sha256(body).digest() != m_sha:
            raise CorruptCheckpointError(f"{source}: manifest checksum mismatch; the file is damaged")
        text = self._manifest_text(body) if version >= COMPRESSED_MANIFEST_SINCE else body
        try:
            doc = loads(text)  # too deep for the parser is a ValueError; from_json bounds the free-form values
            if not isinstance(doc, dict):
                raise ValueError("manifest is not a JSON object")
            self.manifest = Manifest.from_json(_upgrade(doc, version))
        except ValueError as e:
            first = (str(e).splitlines() or [type(e).__name__])[0]
            raise CorruptCheckpointError(f"{source}: manifest is not valid ({first})") from None
        if (mac == NO_SIGNATURE) != (self.manifest.signature is None):
            raise CorruptCheckpointError(
                f"{source}: the footer and the manifest disagree on whether the file is signed"
            )
        self._body, self._mac = body, mac
        self._data_end = m_off
        if self.signature_algorithm == ED25519:  # its signature sits just before the manifest
            self._data_end = m_off - ED25519_SIGNATURE_BYTES
            if self._data_end < HEADER.size:
                raise CorruptCheckpointError(f"{source} is too short for the Ed25519 signature its manifest announces")
        self._verified: set[tuple[int, int, str]] = set()
        self.hash_algorithm: str = self.manifest.hash_algorithm
        self._check_sections()

    def _manifest_text(self, body: bytes) -> bytes:
        """The JSON of a compressed (v3) manifest: one zstd frame that declares its size, within the bounds."""
        try:
            declared = zstandard.frame_content_size(body)
        except zstandard.ZstdError:
            declared = -1
        if declared < 0:
            raise CorruptCheckpointError(
                f"{self.source}: the manifest is not a zstd frame that declares its size; the file is crafted or damaged"
            )
        if declared > manifest_bound(len(body)):
            raise CorruptCheckpointError(
                f"{self.source}: the manifest declares {declared} bytes from {len(body)} stored, more than a reader "
                f"accepts ({MAX_MANIFEST_BYTES}, or {MANIFEST_RATIO} times its stored size): the file is crafted or damaged"
            )
        try:
            text = zstandard.ZstdDecompressor().decompress(body, max_output_size=max(declared, 1))
        except zstandard.ZstdError as e:
            raise CorruptCheckpointError(f"{self.source}: the manifest does not decompress ({e})") from None
        if len(text) != declared:
            raise CorruptCheckpointError(f"{self.source}: the manifest decompresses to the wrong size")
        return text

    def _read_exact(self, n: int) -> bytes:
        """``n`` bytes from the current position; a shorter read means the file shrank while it was read."""
        data = self._f.read(n)
        if len(data) != n:
            raise CorruptCheckpointError(
                f"{self.source} changed size while it was read ({self.size} bytes at first): read it again when "
                "it is complete"
            )
        return data

    def _check_sections(self) -> None:
        """Every section lies in the data area, none shares bytes with another (each stored byte is decompressed
        once: overlapping sections would let a small file declare many times its size), and each declares no more
        than its stored bytes can decompress to."""
        end = HEADER.size
        for s in sorted(self.manifest.sections, key=lambda s: s.offset):
            if s.offset < end or s.length < 0 or s.raw_length < 0 or s.offset + s.length > self._data_end:
                where = "overlaps another section" if HEADER.size <= s.offset < end else "lies outside the data area"
                raise CorruptCheckpointError(f"{self.source}: section {s.name!r} {where}")
            end = s.offset + s.length
            most = s.length if s.codec == "none" else s.length * ZSTD_MAX_RATIO
            if s.raw_length > most or (s.codec == "none" and s.raw_length != s.length):
                raise CorruptCheckpointError(
                    f"{self.source}: section {s.name!r} declares {s.raw_length} bytes from {s.length} stored, more "
                    "than they can hold: the file is crafted or damaged"
                )

    @property
    def signed(self) -> bool:
        """Whether the writer signed the file (says nothing about whose key)."""
        return self.manifest.signature is not None

    @property
    def signature_algorithm(self) -> str | None:
        """The manifest's ``signature.algorithm`` (``hmac-sha256``, ``ed25519``, or one this reader does not know)."""
        return self.manifest.signature.algorithm if self.manifest.signature is not None else None

    def signature_matches(self, key: bytes) -> bool:
        """Whether the file's HMAC was made with ``key`` (False for a file signed otherwise)."""
        return self.signature_algorithm == HMAC_SHA256 and hmac.compare_digest(
            hmac.digest(key, self._body, "sha256"), self._mac
        )

    def signature_verifies(self, public_key: Ed25519PublicKey) -> bool:
        """Whether the file's Ed25519 signature over the manifest holds for ``public_key`` (False for a file signed
        otherwise); CorruptCheckpointError when the signature bytes do not match the footer's checksum of them."""
        from cryptography.exceptions import InvalidSignature

        if self.signature_algorithm != ED25519:
            return False
        self._f.seek(self._data_end)
        signature = self._f.read(ED25519_SIGNATURE_BYTES)
        if len(signature) != ED25519_SIGNATURE_BYTES or hashlib.sha256(signature).digest() != self._mac:
            raise CorruptCheckpointError(
                f"{self.source}: the Ed25519 signature does not match the footer's checksum of it; the file is damaged"
            )
        try:
            public_key.verify(signature, self._body)
        except InvalidSignature:
            return False
        return True

    def digest(self, data: bytes | bytearray | memoryview) -> str:
        """Hex digest of ``data`` with this file's algorithm (what its section checksums and blob addresses use)."""
        return hex_digest(self.hash_algorithm, data)

    def read_stored(self, s: SectionInfo) -> bytes:
        """The stored bytes of a section, checked against its digest (once: a verified section is not re-hashed)."""
        self._f.seek(s.offset)
        stored = self._f.read(s.length)
        if len(stored) != s.length or (
            (s.offset, s.length, s.digest) not in self._verified and self.digest(stored) != s.digest
        ):
            raise self._mismatch(s)
        return stored

    def verify(self, *, skip: Callable[[SectionInfo], bool] | None = None) -> list[str]:
        """Names of sections whose checksum fails (empty when every section holds). Streams; a local
        file is hashed on every core (hashlib and blake3 release the GIL, and positional reads share the file).

        Sections for which ``skip`` is true are left unchecked here: they are checked when read.
        """
        sections = [s for s in self.manifest.sections if skip is None or not skip(s)]
        try:
            fd = self._f.fileno()
        except (AttributeError, OSError, ValueError):
            fd = None
        workers = min(os.cpu_count() or 1, 8)
        if fd is None or workers < 2 or sum(s.length for s in sections) < 4 * CHUNK:
            digests = [self._hash(s) for s in sections]
        else:
            with ThreadPoolExecutor(workers) as pool:
                digests = list(pool.map(lambda s: hash_fd(fd, s.offset, s.length, self.hash_algorithm), sections))
        bad = []
        for s, digest in zip(sections, digests):
            if digest != s.digest:
                bad.append(s.name)
            else:
                self._verified.add((s.offset, s.length, s.digest))
        return bad

    def section(self, name: str) -> SectionInfo:
        """The manifest's section ``name``; CorruptCheckpointError when the file has none (every reader needs it)."""
        try:
            return self.manifest.section(name)
        except KeyError:
            raise CorruptCheckpointError(f"{self.source}: no {name!r} section") from None

    def read_section(self, s: SectionInfo) -> bytes:
        """Verified and decompressed bytes of a section, never more than its declared raw length (which is bounded
        for a section read into memory: see ``IN_MEMORY_RATIO``)."""
        if s.raw_length > max(IN_MEMORY_FLOOR, s.length * IN_MEMORY_RATIO):
            raise CorruptCheckpointError(
                f"{self.source}: section {s.name!r} declares {s.raw_length} bytes from {s.length} stored, more than "
                f"a section read into memory may expand ({IN_MEMORY_RATIO} times): the file is crafted or damaged"
            )
        stored = self.read_stored(s)
        if s.codec == "zstd":
            try:
                declared = zstandard.frame_content_size(stored)
            except zstandard.ZstdError:
                declared = -1
            if declared == s.raw_length:  # one allocation of the size the manifest allows
                try:
                    data = zstandard.ZstdDecompressor().decompress(stored)
                except zstandard.ZstdError as e:
                    raise CorruptCheckpointError(
                        f"{self.source}: section {s.name!r} does not decompress ({e})"
                    ) from None
                if len(data) != s.raw_length:
                    raise CorruptCheckpointError(f"{self.source}: section {s.name!r} decompresses to the wrong size")
                return data
        return b"".join(self._decompress(s, stored))

    def _mismatch(self, s: SectionInfo) -> CorruptCheckpointError:
        return CorruptCheckpointError(f"{self.source}: section {s.name!r} checksum mismatch; the file is damaged")

    def stream_section(self, s: SectionInfo, *, check_at_end: bool = False) -> Iterator[bytes]:
        """Decompressed chunks of a section read from the file in pieces: memory stays flat however large it is.

        By default the whole section is hashed first (once), so no byte is decompressed before it is
        checked. With ``check_at_end`` (workspace file content only, never objects) the stored bytes are
        hashed in a second thread while they decompress, and a mismatch raises after the last chunk: the
        caller must then discard what it wrote. That reads the file once instead of twice.
        """
        if not check_at_end or (s.offset, s.length, s.digest) in self._verified:
            self.check_section(s)
            yield from self._decompress(s, Range(self._f, s.offset, s.length))
            return
        with ThreadPoolExecutor(1) as pool:
            src = HashedRange(self._f, s.offset, s.length, pool, self.hash_algorithm)
            yield from self._decompress(s, src)
            if src.hexdigest() != s.digest:
                raise self._mismatch(s)
        self._verified.add((s.offset, s.length, s.digest))

    def check_section(self, s: SectionInfo) -> None:
        """Hash a section (streaming) unless it is verified already; CorruptCheckpointError if it fails."""
        if (s.offset, s.length, s.digest) in self._verified:
            return
        if self._hash(s) != s.digest:
            raise self._mismatch(s)
        self._verified.add((s.offset, s.length, s.digest))

    def _hash(self, s: SectionInfo) -> str | None:
        """Digest of a section's stored bytes, read in chunks (None when the file ends before it does)."""
        src, sha, total = Range(self._f, s.offset, s.length), new_hash(self.hash_algorithm), 0
        while chunk := src.read(CHUNK):
            sha.update(chunk)
            total += len(chunk)
        return sha.hexdigest() if total == s.length else None

    def _decompress(self, s: SectionInfo, stored: bytes | Range) -> Iterator[bytes]:
        if s.codec == "none":
            data = stored if isinstance(stored, bytes) else stored.read(s.length)
            if len(data) != s.raw_length:
                raise CorruptCheckpointError(f"{self.source}: section {s.name!r} has the wrong length")
            yield data
            return
        total = 0
        try:
            reader = zstandard.ZstdDecompressor().stream_reader(stored, read_size=CHUNK, read_across_frames=False)
            while True:
                chunk = reader.read(min(CHUNK, s.raw_length - total + 1))
                if not chunk:
                    break
                total += len(chunk)
                if total > s.raw_length:
                    break
                yield chunk
        except zstandard.ZstdError as e:
            raise CorruptCheckpointError(f"{self.source}: section {s.name!r} does not decompress ({e})") from None
        if total != s.raw_length:
            raise CorruptCheckpointError(
                f"{self.source}: section {s.name!r} decompresses to the wrong size (declared {s.raw_length})"
            )
