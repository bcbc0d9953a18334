"""Content-addressed blobs: large strings and bytes of the graph, Arrow tables, workspace files.

Each distinct content is stored once, however many copies the trace and its folders hold. Small
blobs are packed together into ``blobs`` sections (better compression, fewer sections); a blob of
at least a pack's size gets a section of its own and is streamed. The ``index`` section maps every
digest to (section, start, length) so the manifest stays small whatever the number of blobs: binary records
since format v3 (a hex digest in JSON does not compress), JSON before.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Annotated

import zstandard
from pydantic import Field, TypeAdapter

from trace_ckpt.codec.schema import EXACT_TYPES, load_json
from trace_ckpt.errors import CorruptCheckpointError, SaveError
from trace_ckpt.format.container import ContainerWriter
from trace_ckpt.format.hashing import new_hash
from trace_ckpt.format.manifest import BLOB_INDEX, SectionInfo
from trace_ckpt.format.reader import ContainerReader

# small blobs are packed up to this many bytes per section (one zstd window, container.WHOLE_WINDOW_LOG: similar
# files far apart in a pack still match; v1 and v2 packed 8 MiB)
PACK_BYTES = 16 * 1024 * 1024
# a blob this large gets a section of its own, is streamed in and out, and never sits in memory whole
STREAMED_BYTES = 8 * 1024 * 1024
_CHUNK = 1 << 20
# the v3 ``index`` section: one record per blob, in the order the files index numbers them: the blob's raw
# digest, the n of its section ``blobs/<n>``, its start and length in the decompressed section
INDEX_RECORD = struct.Struct("<32sIQQ")
BINARY_INDEX_SINCE = 3
# since v3 a file entry (docs/format.md, "files") and the graph name a blob by its record number in the index: a
# digest is stored once, in the index (the graph of a small trace spent 40% of its bytes on digests repeated from it)
NUMBERED_REFS_SINCE = 3


def digest_file(path: str | Path | int, algorithm: str) -> str:
    """The content address of a file (its hex digest with ``algorithm``), read in chunks; ``path`` may be an
    open file descriptor, which is closed."""
    sha = new_hash(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            sha.update(chunk)
    return str(sha.hexdigest())


def _read_chunks(path: str | Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            yield chunk


class BlobPacker:
    """Collects blobs by digest and writes them to a container in packs, then the index."""

    def __init__(self, writer: ContainerWriter, *, pack_bytes: int = PACK_BYTES) -> None:
        self._writer = writer
        self._pack_bytes = pack_bytes
        self._pending: list[tuple[str, bytes]] = []
        self._pending_size = 0
        self._sections = 0
        self.index: dict[str, tuple[str, int, int]] = {}
        self._numbers: dict[str, int] = {}  # digest -> record number in the index: the order of first put
        self._queued: set[str] = set()
        self._large_sizes: set[int] = set()  # sizes of the blobs stored in sections of their own

    def __contains__(self, digest: str) -> bool:
        return digest in self.index or digest in self._queued

    @property
    def hash_algorithm(self) -> str:
        """The digest that addresses blobs here (the writer's)."""
        return self._writer.hash_algorithm

    def digests(self) -> set[str]:
        """Every blob stored or queued so far."""
        return set(self.index) | self._queued

    def __len__(self) -> int:
        return len(self.index) + len(self._pending)

    def put(self, data: bytes) -> str:
        """Store ``data`` unless a blob with the same content is stored already; return its digest."""
        digest = self._writer.digest(data)
        if digest in self:
            return digest
        self._numbers[digest] = len(self._numbers)
        if len(data) >= min(STREAMED_BYTES, self._pack_bytes):
            name = self._next_name()
            self._writer.add_bytes(name, "blobs", data)
            self.index[digest] = (name, 0, len(data))
            self._large_sizes.add(len(data))
        else:
            self._pending.append((digest, data))
            self._queued.add(digest)
            self._pending_size += len(data)
            if self._pending_size >= self._pack_bytes:
                self.flush()
        return digest

    def put_file(self, path: str | Path, size: int) -> str:
        """Store a regular file's content; a file of at least a pack's size is streamed, not loaded.

        A large file whose size no stored blob has cannot be a duplicate, so it is hashed in the same
        pass that compresses it (one read); otherwise it is hashed first, to store it only if new.
        """
        if size < min(STREAMED_BYTES, self._pack_bytes):
            with open(path, "rb") as f:
                return self.put(f.read())
        if size in self._large_sizes:
            digest = digest_file(path, self._writer.hash_algorithm)
            if digest in self:
                return digest
        sha = new_hash(self._writer.hash_algorithm)

        def hashed() -> Iterator[bytes]:
            for chunk in _read_chunks(path):
                sha.update(chunk)
                yield chunk

        name = self._next_name()
        changed = SaveError(f"{path} changed size while it was being saved; save again when it is stable")
        try:
            info = self._writer.add_stream(name, "blobs", hashed(), size=size)
        except zstandard.ZstdError:  # the frame header promised ``size`` bytes
            raise changed from None
        if info.raw_length != size:  # zstd's multi-threaded mode let a shorter stream of 16 MiB or more through
            raise changed
        digest = str(sha.hexdigest())
        self._numbers.setdefault(digest, len(self._numbers))
        self.index[digest] = (name, 0, info.raw_length)
        self._large_sizes.add(info.raw_length)
        return digest

    def _next_name(self) -> str:
        self._sections += 1
        return f"blobs/{self._sections - 1}"

    def flush(self) -> None:
        """Write the pending small blobs as one pack section."""
        if not self._pending:
            return
        name, pos = self._next_name(), 0
        for digest, data in self._pending:
            self.index[digest] = (name, pos, len(data))
            pos += len(data)
        self._writer.add_bytes_soon(name, "blobs", b"".join(d for _, d in self._pending))
        self._pending, self._pending_size, self._queued = [], 0, set()

    def numbers(self) -> dict[str, int]:
        """Each stored blob's record number in the ``index`` section (how the graph and the files index name it)."""
        return dict(self._numbers)

    def number(self, digest: str) -> int:
        """The record number of a blob stored or queued here."""
        return self._numbers[digest]

    def finish(self) -> None:
        """Flush the last pack and write the ``index`` section (binary records, see ``INDEX_RECORD``)."""
        self.flush()
        records = bytearray()
        for digest in self._numbers:  # in number order
            name, start, length = self.index[digest]
            records += INDEX_RECORD.pack(bytes.fromhex(digest), int(name.rpartition("/")[2]), start, length)
        self._writer.add_bytes(BLOB_INDEX, BLOB_INDEX, records)


_Offset = Annotated[int, Field(ge=0)]


@cache
def _index_schema() -> TypeAdapter[dict[str, tuple[str, int, int]]]:
    """The ``index`` section: blob digest -> [pack section name, start, length] (docs/format.md)."""
    return TypeAdapter(dict[str, tuple[str, _Offset, _Offset]], config=EXACT_TYPES)


class BlobSource:
    """Reads blobs back by digest, decompressing each section at most once while it is in use."""

    def __init__(self, reader: ContainerReader) -> None:
        self._reader = reader
        self._sections = {s.name: s for s in reader.manifest.sections if s.kind == "blobs"}
        self.index: dict[str, tuple[SectionInfo, int, int]] = {}
        data = reader.read_section(reader.section(BLOB_INDEX))
        if reader.format_version >= BINARY_INDEX_SINCE:
            entries = self._records(data)
        else:
            entries = load_json(_index_schema(), data, "the blob index", reader.source).items()
        for digest, (name, start, length) in entries:
            section = self._sections.get(name)
            if section is None or start + length > section.raw_length:
                raise CorruptCheckpointError(
                    f"{reader.source}: the blob index is not valid (blob {digest[:12]} lies outside section {name})"
                )
            self.index[digest] = (section, start, length)
        # (digest, length) by record number: how a v3 files index names blobs
        self.numbered: list[tuple[str, int]] = [(d, length) for d, (_, _, length) in self.index.items()]
        self._cache_name: str | None = None
        self._cache: bytes = b""

    def _records(self, data: bytes) -> list[tuple[str, tuple[str, int, int]]]:
        """The v3 binary index as (digest, (section name, start, length)), in record order."""
        if len(data) % INDEX_RECORD.size:
            raise CorruptCheckpointError(
                f"{self._reader.source}: the blob index is not valid ({len(data)} bytes is not a whole number of "
                f"{INDEX_RECORD.size}-byte records)"
            )
        out = [(raw.hex(), (f"blobs/{n}", start, length)) for raw, n, start, length in INDEX_RECORD.iter_unpack(data)]
        if len(out) != len({d for d, _ in out}):
            raise CorruptCheckpointError(f"{self._reader.source}: the blob index is not valid (a blob is listed twice)")
        return out

    def __contains__(self, digest: str) -> bool:
        return digest in self.index

    def digest_file(self, path: Path | int) -> str:
        """A file's content address as this checkpoint computes it (SHA-256 in v1 files, BLAKE3 after)."""
        return digest_file(path, self._reader.hash_algorithm)

    def resolve(self, ref: object) -> str:
        """The digest of a blob the graph refers to: by record number since v3, by digest before. KeyError when the
        checkpoint has no such blob (a negative number, a bool or the other version's form included)."""
        if self._reader.format_version >= NUMBERED_REFS_SINCE:
            if type(ref) is int and 0 <= ref < len(self.numbered):
                return self.numbered[ref][0]
        elif type(ref) is str and ref in self.index:
            return ref
        raise KeyError(repr(ref)[:40])

    def get(self, digest: str) -> bytes:
        """The bytes of one blob; KeyError when the checkpoint has no such blob."""
        section, start, length = self.index[digest]
        if self._cache_name != section.name:
            self._cache = self._reader.read_section(section)
            self._cache_name = section.name
        return self._cache[start : start + length]

    def in_file_order(self, digests: set[str]) -> list[str]:
        """``digests`` sorted by position in the file, so each pack is decompressed once."""
        return sorted(digests, key=lambda d: (self.index[d][0].offset, self.index[d][1]))

    def is_streamed(self, digest: str) -> bool:
        """Whether a blob has a section of its own (a large file), read by :meth:`chunks` in pieces."""
        section, start, length = self.index[digest]
        return start == 0 and length == section.raw_length and length >= STREAMED_BYTES

    def check(self, digest: str) -> None:
        """Verify the section holding a blob now (CorruptCheckpointError if it fails)."""
        self._reader.check_section(self.index[digest][0])

    def chunks(self, digest: str, *, check_at_end: bool = False) -> Iterator[bytes]:
        """The bytes of one blob in pieces; a streamed blob never sits in memory whole (for
        ``check_at_end`` see :meth:`ContainerReader.stream_section`)."""
        if self.is_streamed(digest):
            return self._reader.stream_section(self.index[digest][0], check_at_end=check_at_end)
        return iter((self.get(digest),))


def checked_when_read(section: SectionInfo) -> bool:
    """Sections a load need not hash up front: large blob sections, hashed as they stream (or when read)."""
    return section.kind == "blobs" and section.raw_length >= STREAMED_BYTES
