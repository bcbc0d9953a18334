"""Byte-level surgery on a saved checkpoint for the fuzz and attack tests: split it into body and
manifest, edit a section, and reseal it (offsets, digests and the manifest checksum recomputed, unsigned).
The manifest is a zstd frame of JSON from format v3 on (plain JSON before): ``split`` and ``seal`` read and
write it as the file's header version says."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import blake3
import zstandard

from trace_ckpt.codec.blobs import INDEX_RECORD
from trace_ckpt.format.container import COMPRESSED_MANIFEST_SINCE, FOOTER, HEADER, MAGIC, NO_SIGNATURE


def _compressed(data: bytes) -> bool:
    return HEADER.unpack(data[: HEADER.size])[1] >= COMPRESSED_MANIFEST_SINCE


def manifest_text(data: bytes) -> bytes:
    """The manifest JSON of a checkpoint (decompressed in v3 files)."""
    m_off, m_len, _, _, _ = FOOTER.unpack(data[-FOOTER.size :])
    stored = data[m_off : m_off + m_len]
    return zstandard.ZstdDecompressor().decompress(stored) if _compressed(data) else stored


def split(data: bytes) -> tuple[bytes, dict]:
    """The bytes before the manifest, and the manifest as a dict."""
    m_off = FOOTER.unpack(data[-FOOTER.size :])[0]
    return data[:m_off], json.loads(manifest_text(data))


def seal(body: bytes, manifest: dict | bytes) -> bytes:
    """``body`` followed by ``manifest`` (a dict, or JSON bytes as they are: compressed as the format stores it)
    and a valid unsigned footer."""
    m = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    if _compressed(body):
        m = zstandard.ZstdCompressor().compress(m)
    return body + m + FOOTER.pack(len(body), len(m), hashlib.sha256(m).digest(), NO_SIGNATURE, MAGIC)


def with_section(data: bytes, name: str, new: bytes, raw_length: int) -> bytes:
    """``data`` with section ``name``'s stored bytes replaced by ``new``, offsets and checksums resealed."""
    body, doc = split(data)
    s = next(t for t in doc["sections"] if t["name"] == name)
    out = bytearray(body)
    out[s["offset"] : s["offset"] + s["length"]] = new
    delta = len(new) - s["length"]
    for t in doc["sections"]:
        if t["offset"] > s["offset"]:
            t["offset"] += delta
    s["length"], s["raw_length"], s["digest"] = len(new), raw_length, blake3.blake3(new).hexdigest()
    return seal(bytes(out), doc)


def blob_index(data: bytes) -> dict[str, list]:
    """The blob index of a v3 checkpoint as v2 wrote it: {hex digest: [section name, start, length]}, in record order."""
    body, doc = split(data)
    s = next(t for t in doc["sections"] if t["name"] == "index")
    raw = zstandard.ZstdDecompressor().decompress(body[s["offset"] : s["offset"] + s["length"]])
    return {d.hex(): [f"blobs/{n}", start, n_bytes] for d, n, start, n_bytes in INDEX_RECORD.iter_unpack(raw)}


def edit_blob_index(edit: Callable[[dict], object]) -> Callable[[bytes], bytes]:
    """A maker of a resealed v3 checkpoint whose blob index went through ``edit`` (as :func:`blob_index` shows it)."""

    def make(data: bytes) -> bytes:
        index = blob_index(data)
        edit(index)
        raw = b"".join(
            INDEX_RECORD.pack(bytes.fromhex(d), int(name.rpartition("/")[2]), start, n_bytes)
            for d, (name, start, n_bytes) in index.items()
        )
        return with_section(data, "index", zstandard.ZstdCompressor().compress(raw), len(raw))

    return make


def edit_json_section(name: str, edit: Callable[[dict], object]) -> Callable[[bytes], bytes]:
    """A maker of a resealed checkpoint whose JSON section ``name`` went through ``edit(document)``."""

    def make(data: bytes) -> bytes:
        body, doc = split(data)
        s = next(t for t in doc["sections"] if t["name"] == name)
        document = json.loads(zstandard.ZstdDecompressor().decompress(body[s["offset"] : s["offset"] + s["length"]]))
        edit(document)
        raw = json.dumps(document).encode()
        return with_section(data, name, zstandard.ZstdCompressor().compress(raw), len(raw))

    return make
