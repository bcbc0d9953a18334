"""Byte-level surgery on a saved checkpoint for the fuzz and attack tests: split it into body and
manifest, edit a section, and reseal it (offsets, digests and the manifest checksum recomputed, unsigned)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import blake3
import zstandard

from trace_ckpt.format.container import FOOTER, MAGIC, NO_SIGNATURE


def split(data: bytes) -> tuple[bytes, dict]:
    """The bytes before the manifest, and the manifest as a dict."""
    m_off, m_len, _, _, _ = FOOTER.unpack(data[-FOOTER.size :])
    return data[:m_off], json.loads(data[m_off : m_off + m_len])


def seal(body: bytes, manifest: dict | bytes) -> bytes:
    """``body`` followed by ``manifest`` (a dict, or raw bytes as they are) and a valid unsigned footer."""
    m = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
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
