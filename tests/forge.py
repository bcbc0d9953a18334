"""Hostile checkpoints for the security tests: every checksum valid, the graph chosen by the test, written with
a tiny pickle assembler (G, U, prog and the opcodes an attacker writes by hand). No rdagent import."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

from trace_ckpt.codec.blobs import BlobPacker
from trace_ckpt.codec.files import FilesIndex
from trace_ckpt.format.container import FORMAT_VERSION, ContainerWriter
from trace_ckpt.format.manifest import Manifest, Producer


def forge_checkpoint(path: Path, graph: bytes | Callable[[list[int]], bytes], blobs: Sequence[bytes] = ()) -> None:
    """Write a checkpoint whose graph section is ``graph`` (a pickle an attacker wrote), with ``blobs`` stored:
    ``graph`` may be a function of their references (their numbers in the blob index, as a v3 graph names them),
    for a pickle that refers to them."""
    with open(path, "wb") as f:
        w = ContainerWriter(f)
        packer = BlobPacker(w)
        refs = [packer.number(packer.put(b)) for b in blobs]
        packer.finish()
        w.add_bytes("graph", "graph", graph(refs) if callable(graph) else graph)
        w.add_bytes("files", "files", FilesIndex().to_bytes())
        w.finish(
            Manifest(
                format_version=FORMAT_VERSION,
                created_at=datetime.now(timezone.utc),
                producer=Producer(trace_ckpt="0", python="3"),
                trace_class="x",
            )
        )


# --- a tiny pickle assembler: the opcodes an attacker writes by hand ---
def G(where: str) -> bytes:
    """GLOBAL of ``'module name'``."""
    module, name = where.split(" ")
    return f"c{module}\n{name}\n".encode()


def U(text: str) -> bytes:
    """SHORT_BINUNICODE of ``text``."""
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def prog(*parts: bytes) -> bytes:
    """A protocol-5 pickle of the given opcodes, ending in STOP."""
    return b"\x80\x05" + b"".join(parts) + b"."


MARK, TUPLE, TUPLE1, TUPLE2, TUPLE3, EMPTY_TUPLE = b"(", b"t", b"\x85", b"\x86", b"\x87", b")"
REDUCE, NEWOBJ, BUILD, EMPTY_DICT, EMPTY_LIST, SETITEMS, APPENDS = b"R", b"\x81", b"b", b"}", b"]", b"u", b"e"
NONE, STACK_GLOBAL, BINPUT0, BINGET0, POP = b"N", b"\x93", b"q\x00", b"h\x00", b"0"
