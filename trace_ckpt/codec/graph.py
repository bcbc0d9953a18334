"""The object graph <-> a ``graph`` section, with identity preserved.

One pickle holds the whole graph, so an object referenced from many places (an experiment in many
``based_experiments``) is one object after loading. Large strings and bytes become content-addressed
blobs (stored once however many copies the graph holds), pandas objects become Arrow ``table``
sections. Plain pickle is used; dill only for a graph plain pickle cannot handle.
"""

from __future__ import annotations

import gc
import io
import pickle
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from trace_ckpt.codec import tables
from trace_ckpt.codec.allowlist import Allowlist, Rule
from trace_ckpt.codec.blobs import BlobPacker, BlobSource
from trace_ckpt.codec.opcodes import check_pickle
from trace_ckpt.errors import CheckpointError, CorruptCheckpointError, SaveError, UntrustedContentError
from trace_ckpt.format.container import ContainerWriter
from trace_ckpt.format.reader import ContainerReader

PROTOCOL = 5
# memory the repeated references to stored tables may take beyond 16x the tables stored (an honest trace holding
# 500 equal 1 MB frames takes 500 MB)
TABLE_REPEAT_BYTES = 1 << 30
MIN_BLOB = 256
# types pickle writes with its own opcodes, naming no global
_NATIVE = frozenset(
    {
        type(None),
        bool,
        int,
        float,
        complex,
        str,
        bytes,
        bytearray,
        list,
        tuple,
        dict,
        set,
        frozenset,
        pickle.PickleBuffer,
    }
)


@dataclass
class GraphStats:
    """What the graph encoder did, for the manifest."""

    pickler: str = "pickle"
    tables: int = 0
    pandas_pickled: int = 0


@dataclass
class _Encoder:
    writer: ContainerWriter
    packer: BlobPacker
    min_blob: int
    stats: GraphStats = field(default_factory=GraphStats)
    # id(obj) -> persistent id; the object is kept alive so ids stay unique during the dump
    _tables: dict[int, tuple[Any, tuple]] = field(default_factory=dict)
    _no_arrow: set[int] = field(default_factory=set)
    # every type pickled: where a save that a load would refuse finds the offending object
    types: set[type] = field(default_factory=set)

    def persistent_id(self, obj: Any) -> tuple | None:
        t = type(obj)
        if t is str:
            if len(obj) >= self.min_blob:
                return ("s", self.packer.number(self.packer.put(obj.encode("utf-8", "surrogatepass"))))
            return None
        if t is bytes:
            if len(obj) >= self.min_blob:
                return ("b", self.packer.number(self.packer.put(obj)))
            return None
        if t not in self.types:
            self.types.add(t)
        if t is pd.DataFrame or t is pd.Series:
            key = id(obj)
            hit = self._tables.get(key)
            if hit is not None:
                return hit[1]
            if key in self._no_arrow:
                return None
            encoded = tables.to_arrow(obj)
            if encoded is None:
                self._no_arrow.add(key)
                self.stats.pandas_pickled += 1
                return None
            data, labels = encoded
            # the serial keeps two equal but distinct frames distinct after loading
            pid = ("t", len(self._tables), self.packer.number(self.packer.put(data)), labels)
            self._tables[key] = (obj, pid)
            self.stats.tables += 1
            return pid
        return None


def _pickler_class(base: type) -> type:
    class _GraphPickler(base):  # type: ignore[misc, valid-type]
        def __init__(self, file: io.BytesIO, encoder: _Encoder) -> None:
            super().__init__(file, protocol=PROTOCOL)
            # the encoder's bound method itself, not a method that forwards to it: one Python call per
            # pickled object instead of two
            self.persistent_id = encoder.persistent_id

    return _GraphPickler


def encode_graph(
    root: Any,
    writer: ContainerWriter,
    packer: BlobPacker,
    *,
    min_blob: int = MIN_BLOB,
    allow: Allowlist | None = None,
) -> GraphStats:
    """Pickle ``root`` into a ``graph`` section; its blobs and tables go to ``packer``/``writer``.

    With ``allow``, refuse (before the graph is written) a graph that a load with that allowlist
    would refuse, naming the object path of the first offending object.
    """
    enc = _Encoder(writer, packer, min_blob)
    buf = io.BytesIO()
    try:
        _pickler_class(pickle.Pickler)(buf, enc).dump(root)
    except (pickle.PicklingError, TypeError, AttributeError) as plain_error:
        try:
            import dill
        except ImportError:  # pragma: no cover - dill is a dependency
            raise SaveError(f"the trace cannot be pickled: {plain_error}") from None
        enc.stats.pickler = "dill"
        buf = io.BytesIO()
        try:
            _pickler_class(dill.Pickler)(buf, enc).dump(root)
        except Exception as e:  # noqa: BLE001 — whatever dill raises on an unpicklable object is one SaveError
            raise SaveError(f"the trace cannot be pickled, not even with dill: {e}") from None
    data = buf.getbuffer()
    if allow is not None:
        _check_loadable(root, data, enc, allow)
    writer.add_bytes("graph", "graph", data, meta={"pickler": enc.stats.pickler, "protocol": PROTOCOL})
    return enc.stats


def _check_loadable(root: Any, data: memoryview, enc: _Encoder, allow: Allowlist) -> None:
    """Refuse a graph that a load with ``allow`` would refuse (the same check the load runs), naming the
    object path of the first object of a refused class."""
    refused: list[str] = []

    def rule(module: str, name: str) -> Rule:
        try:
            return allow.rule(module, name)
        except CheckpointError:
            refused.append(f"{module}.{name}")
            raise

    try:
        reason = check_pickle(data, rule)
    except CheckpointError as e:
        name = refused[-1] if refused else "?"
        wanted = tuple(t for t in enc.types if f"{t.__module__}.{t.__qualname__}" == name)
        if not wanted:  # a class or function held as a value
            raise UntrustedContentError(f"save refused: the trace holds {name}, which a load refuses ({e})") from None
        where, _t = find_path(root, wanted)
        top = name.split(".")[0]
        raise UntrustedContentError(
            f"save refused: {where} is a {name}, which a load with the current allowlist refuses; if it is your "
            f"code, allow it with allow_modules=[{name!r}] or [{top!r}] (CLI: --allow-class {name} or "
            f"--allow-module {top})"
        ) from None
    if reason is not None:
        raise UntrustedContentError(f"save refused: a load would refuse the trace's graph ({reason})")


def find_path(root: Any, wanted: tuple[type, ...], name: str = "trace") -> tuple[str, type]:
    """The attribute/index path of the first object (breadth first) whose type is in ``wanted``."""
    seen: set[int] = set()
    queue: list[tuple[Any, str]] = [(root, name)]
    while queue:
        nxt: list[tuple[Any, str]] = []
        for obj, where in queue:
            if id(obj) in seen or type(obj) in _NATIVE - {list, tuple, dict, set, frozenset}:
                continue
            seen.add(id(obj))
            if type(obj) in wanted:
                return where, type(obj)
            if isinstance(obj, dict):
                nxt.extend((v, f"{where}[{k!r}]") for k, v in obj.items())
            elif isinstance(obj, (list, tuple)):
                nxt.extend((v, f"{where}[{i}]") for i, v in enumerate(obj))
            elif isinstance(obj, (set, frozenset)):
                nxt.extend((v, f"{where}{{...}}") for v in obj)
            if hasattr(obj, "__dict__") and not isinstance(obj, type):
                nxt.extend((v, f"{where}.{k}") for k, v in vars(obj).items())
        queue = nxt
    t = wanted[0]
    return "an object in the trace", t


class _GraphUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, blobs: BlobSource, reader: ContainerReader, allow: Allowlist) -> None:
        super().__init__(file)
        self._blobs = blobs
        self._reader = reader
        self._allow = allow
        self._strings: dict[str, str] = {}
        self._bytes: dict[str, bytes] = {}
        self._tables: dict[int, Any] = {}
        self._table_digests: set[str] = set()
        self._unique_table_bytes = 0
        self._table_bytes = 0

    def find_class(self, module: str, name: str) -> Any:
        return self._allow.resolve(module, name)

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid:
            raise CorruptCheckpointError(f"{self._reader.source}: bad reference in the graph")
        tag = pid[0]
        try:
            if tag == "s":
                digest = self._blobs.resolve(pid[1])
                s = self._strings.get(digest)
                if s is None:
                    s = self._strings[digest] = self._blobs.get(digest).decode("utf-8", "surrogatepass")
                return s
            if tag == "b":  # one object per blob: every reference to it costs no memory
                digest = self._blobs.resolve(pid[1])
                b = self._bytes.get(digest)
                if b is None:
                    b = self._bytes[digest] = self._blobs.get(digest)
                return b
            if tag == "t":
                serial, digest, labels = pid[1], self._blobs.resolve(pid[2]), pid[3]
                if serial not in self._tables:
                    data = self._blobs.get(digest)
                    self._count_table(digest, len(data))
                    self._tables[serial] = tables.from_arrow(data, labels)
                return self._tables[serial]
        except (KeyError, IndexError, TypeError) as e:
            raise CorruptCheckpointError(
                f"{self._reader.source}: the graph refers to a missing blob or table ({e})"
            ) from None
        raise CorruptCheckpointError(f"{self._reader.source}: unknown reference kind {tag!r} in the graph")

    def _count_table(self, digest: str, size: int) -> None:
        """Each table number is a frame of its own, decoded anew (equal frames stay distinct objects), so many
        numbers for one stored table multiply memory: bounded by TABLE_REPEAT_BYTES plus 16x what is stored."""
        if digest not in self._table_digests:
            self._table_digests.add(digest)
            self._unique_table_bytes += size
        self._table_bytes += size
        if self._table_bytes > TABLE_REPEAT_BYTES + 16 * self._unique_table_bytes:
            raise CorruptCheckpointError(
                f"{self._reader.source}: the graph's tables would take over {self._table_bytes >> 20} MiB in memory "
                f"from {self._unique_table_bytes >> 20} MiB stored (one table referred to many times): crafted"
            )


def decode_graph(reader: ContainerReader, blobs: BlobSource, allow: Allowlist) -> Any:
    """Load the ``graph`` section with the restricted unpickler (sections must be verified first).

    The cyclic garbage collector is paused meanwhile: checking and loading make hundreds of thousands of
    objects that all stay alive, and each full collection on the way walks the whole heap (rdagent, pandas and
    the trace itself): a 500-loop restore spent 0.25 s of its 0.5-0.75 s in them, at random places."""
    paused = gc.isenabled()
    gc.disable()
    try:
        return _decode_graph(reader, blobs, allow)
    finally:
        if paused:
            gc.enable()


def _decode_graph(reader: ContainerReader, blobs: BlobSource, allow: Allowlist) -> Any:
    data = reader.read_section(reader.section("graph"))
    # before the C unpickler sees a byte: every name is allowed, every call it would make is one the name's
    # rule allows, and nothing makes it allocate gigabytes
    reason = check_pickle(data, allow.rule)
    if reason is not None:
        raise CorruptCheckpointError(f"{reader.source}: the graph is damaged or crafted ({reason})")
    try:
        return _GraphUnpickler(io.BytesIO(data), blobs, reader, allow).load()
    except CheckpointError:
        raise
    except RecursionError:
        raise CorruptCheckpointError(f"{reader.source}: the graph nests too deeply to load") from None
    except Exception as e:  # noqa: BLE001 — any unpickling failure of a checksum-valid file is a damaged/foreign graph
        raise CorruptCheckpointError(f"{reader.source}: the graph does not load ({type(e).__name__}: {e})") from None
