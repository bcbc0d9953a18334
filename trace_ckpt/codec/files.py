"""Workspace folders on disk <-> a ``files`` section plus content-addressed blobs.

Regular files are stored once per distinct content; symlinks are stored as links (data such as
``daily_pv.h5`` linked into every workspace is never copied); files over ``max_file_bytes`` are
listed but not stored. Restoring writes into new roots and refuses to clobber different files.
"""

from __future__ import annotations

import json
import os
import queue
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal, Union

from pydantic import Field, TypeAdapter
from typing_extensions import TypedDict

from trace_ckpt._os import current_umask
from trace_ckpt.codec.blobs import BlobPacker, BlobSource
from trace_ckpt.codec.schema import STRICT, load_json
from trace_ckpt.errors import CorruptCheckpointError, RestoreError, SaveError, WorkspaceConflictError
from trace_ckpt.format.container import ContainerReader
from trace_ckpt.format.manifest import WorkspaceStats

# progress(n_bytes, n_files): increments of workspace bytes and files done; a large file may report its
# bytes in several calls (n_files 0) and then count itself (n_bytes 0, n_files 1)
Progress = Callable[[int, int], None]


# The files index's schema (docs/format.md, "files"): checked once when a checkpoint is read, so the code
# that restores, prunes, merges, diffs and exports can rely on every entry's fields and their types.
_Mode = Annotated[int, Field(ge=0, le=0o7777)]
_Size = Annotated[int, Field(ge=0)]


class _File(TypedDict):
    __pydantic_config__ = STRICT  # type: ignore[misc]
    path: str
    type: Literal["file"]
    digest: str
    size: _Size
    mode: _Mode


class _Dir(TypedDict):
    __pydantic_config__ = STRICT  # type: ignore[misc]
    path: str
    type: Literal["dir"]
    mode: _Mode


class _Symlink(TypedDict):
    __pydantic_config__ = STRICT  # type: ignore[misc]
    path: str
    type: Literal["symlink"]
    target: str


class _Skipped(TypedDict):
    __pydantic_config__ = STRICT  # type: ignore[misc]
    path: str
    type: Literal["skipped"]
    size: _Size
    reason: str


class _Workspace(TypedDict):
    __pydantic_config__ = STRICT  # type: ignore[misc]
    exists: bool
    entries: list[Annotated[Union[_File, _Dir, _Symlink, _Skipped], Field(discriminator="type")]]


class _Index(TypedDict):
    __pydantic_config__ = STRICT  # type: ignore[misc]
    workspaces: dict[str, _Workspace]


@cache
def _index_schema() -> TypeAdapter[_Index]:
    return TypeAdapter(_Index)  # built on first read: commands that never read the index skip the cost


@dataclass
class FilesIndex:
    """The ``files`` section: per workspace folder (keyed by its original path), its entries."""

    workspaces: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return json.dumps({"workspaces": self.workspaces}, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes, source: str) -> FilesIndex:
        """The index as stored, checked against its schema (CorruptCheckpointError if it does not fit)."""
        return cls(load_json(_index_schema(), data, "the files index", source)["workspaces"])

    @classmethod
    def read(cls, reader: ContainerReader, blobs: BlobSource) -> FilesIndex:
        """The checkpoint's ``files`` section, checked against its schema and against the blob index: a
        file whose content is not stored is a corrupt checkpoint, found before anything uses the index."""
        index = cls.from_bytes(reader.read_section(reader.section("files")), reader.source)
        for key, ws in index.workspaces.items():
            for e in ws["entries"]:
                if e["type"] == "file" and e["digest"] not in blobs:
                    raise CorruptCheckpointError(f"{reader.source}: file {e['path']} of {key} refers to a missing blob")
        return index


def capture_workspaces(
    paths: Iterable[str],
    packer: BlobPacker,
    *,
    max_file_bytes: int | None = None,
    progress: Progress | None = None,
) -> tuple[FilesIndex, WorkspaceStats]:
    """Walk every workspace folder and store its files in ``packer``; return the index and counts."""
    index = FilesIndex()
    stats = WorkspaceStats(max_file_bytes=max_file_bytes)
    for key in paths:
        if key in index.workspaces:
            continue
        root = os.path.abspath(key)
        stats.workspaces += 1
        if not os.path.isdir(root):
            stats.missing += 1
            index.workspaces[key] = {"exists": False, "entries": []}
            continue
        entries: list[dict[str, Any]] = []
        # plain strings, not Path objects: a long run has thousands of files, and pathlib's parsing was
        # a fifth of a 500-loop save
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            prefix = "" if dirpath == root else os.path.relpath(dirpath, root).replace(os.sep, "/") + "/"
            linked_dirs = set()
            for name in sorted(dirnames + filenames):
                full = os.path.join(dirpath, name)
                rel = prefix + name
                try:
                    st = os.lstat(full)
                except OSError as e:
                    raise SaveError(f"cannot read workspace file {full}: {e.strerror}") from None
                if stat.S_ISLNK(st.st_mode):
                    entries.append({"path": rel, "type": "symlink", "target": os.readlink(full)})
                    stats.symlinks += 1
                    linked_dirs.add(name)
                elif stat.S_ISDIR(st.st_mode):
                    entries.append({"path": rel, "type": "dir", "mode": stat.S_IMODE(st.st_mode)})
                elif stat.S_ISREG(st.st_mode):
                    stats.files += 1
                    mode = stat.S_IMODE(st.st_mode)
                    if max_file_bytes is not None and st.st_size > max_file_bytes:
                        entries.append({"path": rel, "type": "skipped", "size": st.st_size, "reason": "max_file_bytes"})
                        stats.skipped += 1
                        continue
                    before = len(packer)
                    try:
                        digest = packer.put_file(full, st.st_size)
                    except OSError as e:
                        raise SaveError(f"cannot read workspace file {full}: {e.strerror}") from None
                    if len(packer) > before:
                        stats.unique_files += 1
                    stats.file_bytes += st.st_size
                    entries.append({"path": rel, "type": "file", "digest": digest, "size": st.st_size, "mode": mode})
                    if progress is not None:
                        progress(st.st_size, 1)
            # do not descend into symlinked folders (os.walk lists them in dirnames)
            dirnames[:] = [d for d in dirnames if d not in linked_dirs]
        index.workspaces[key] = {"exists": True, "entries": entries}
    return index, stats


def _safe_rel(rel: str, source: str) -> PurePosixPath:
    p = PurePosixPath(rel)
    if p.is_absolute() or not p.parts or any(part in ("..", "") for part in p.parts):
        raise CorruptCheckpointError(f"{source}: workspace entry {rel!r} escapes its folder")
    return p


def materialize(
    index: FilesIndex,
    mapping: Mapping[str, Path],
    blobs: BlobSource,
    *,
    overwrite: bool = False,
    source: str = "checkpoint",
    progress: Progress | None = None,
) -> int:
    """Write every captured workspace into its new folder (``mapping``: original key -> new path); ``index``
    comes from :meth:`FilesIndex.read`, so every file's content is in ``blobs``.

    A first pass checks every target and raises WorkspaceConflictError before anything is written
    when an existing, different file is in the way. Returns the number of files written.
    """
    # (entry, target path, whether its workspace folder is new: a new folder holds no conflicting file)
    plan: list[tuple[dict[str, Any], str, bool]] = []
    for key, ws in index.workspaces.items():
        if not ws.get("exists", False) or key not in mapping:
            continue
        root = os.fspath(mapping[key])
        fresh = not os.path.lexists(root)
        links = {e["path"] for e in ws["entries"] if e.get("type") == "symlink"}
        plan.append(({"type": "dir"}, root, fresh))
        for e in ws["entries"]:
            rel = _safe_rel(str(e.get("path", "")), source)
            if links and len(rel.parts) > 1 and any(str(p) in links for p in rel.parents):
                raise CorruptCheckpointError(f"{source}: workspace entry {rel} lies under a symlink")
            plan.append((e, os.path.join(root, *rel.parts), fresh))

    if not overwrite:  # conflict check before any write
        for e, target, fresh in plan:
            if not fresh and os.path.lexists(target) and not _same(e, Path(target), blobs):
                raise WorkspaceConflictError(
                    f"{target} exists with other content; restore into an empty workspace_root or pass overwrite=True"
                )

    try:
        return _lay_out(plan, blobs, progress or _no_progress)
    except OSError as e:  # a full disk, a read-only folder: the files written so far stay, nothing is overwritten
        where = f" {e.filename}" if e.filename else ""
        raise RestoreError(f"cannot write workspace files{where}: {e.strerror or e}") from None


def _no_progress(n_bytes: int, n_files: int) -> None:
    pass


def _lay_out(plan: list[tuple[dict[str, Any], str, bool]], blobs: BlobSource, progress: Progress) -> int:
    """Write the planned folders, files and links; return the number of files written."""
    made: set[str] = set()

    def mkdir(d: str) -> None:
        if d not in made:
            os.makedirs(d, exist_ok=True)
            made.add(d)

    wanted: dict[str, list[tuple[str, int, bool]]] = {}
    for e, target, fresh in plan:
        kind = e.get("type")
        if kind == "dir":
            mkdir(target)
        elif kind == "file":
            mkdir(os.path.dirname(target))
            wanted.setdefault(e["digest"], []).append((target, int(e.get("mode", 0o644)) & 0o7777, fresh))
    umask = current_umask()
    written = 0
    for digest in blobs.in_file_order(set(wanted)):
        # a small blob is written from memory to every copy; a large one streams into its first copy,
        # and further copies are made from that file (memory stays flat, nothing is decompressed twice)
        data = None if blobs.is_streamed(digest) else blobs.get(digest)
        # a streamed blob whose copies are all new files is checked at the end of its stream (one read of
        # the file instead of two); if it fails, the new files are removed. An existing file is never
        # written with bytes that are not checked yet.
        new_only = data is None and all(fresh or not os.path.lexists(t) for t, _, fresh in wanted[digest])
        if data is None and not new_only:
            blobs.check(digest)  # before any existing file is opened for writing
        first: str | None = None
        for target, mode, fresh in wanted[digest]:
            if not fresh and os.path.islink(target):
                os.unlink(target)  # never write through a link
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
            try:
                if data is not None:
                    _write_all(fd, data)
                    progress(len(data), 1)
                elif first is None:
                    try:
                        for chunk in _prefetched(blobs.chunks(digest, check_at_end=new_only)):
                            _write_all(fd, chunk)
                            progress(len(chunk), 0)
                    except CorruptCheckpointError:
                        os.unlink(target)  # a new file (an existing one was checked above)
                        raise
                else:
                    with open(first, "rb") as src:
                        while chunk := src.read(1 << 20):
                            _write_all(fd, chunk)
                            progress(len(chunk), 0)
                if mode & umask:  # bits the umask took away at creation
                    os.fchmod(fd, mode)
            finally:
                os.close(fd)
            if data is None:
                progress(0, 1)
            first = first or target
            written += 1
    for e, target, fresh in plan:
        if e.get("type") == "symlink":
            mkdir(os.path.dirname(target))
            if not fresh and os.path.lexists(target):
                if os.path.islink(target) and os.readlink(target) == e["target"]:
                    continue
                os.unlink(target)
            os.symlink(e["target"], target)
    return written


def _same(e: dict[str, Any], target: Path, blobs: BlobSource) -> bool:
    """Whether ``target`` on disk already holds what entry ``e`` describes."""
    kind = e.get("type")
    if kind == "file":
        return (
            target.is_file()
            and not target.is_symlink()
            and target.stat().st_size == e["size"]
            and blobs.digest_file(target) == e["digest"]
        )
    if kind == "symlink":
        return target.is_symlink() and os.readlink(target) == e["target"]
    if kind == "dir":
        return target.is_dir() and not target.is_symlink()
    return True


def _prefetched(chunks: Iterator[bytes], depth: int = 4) -> Iterator[bytes]:
    """Pull ``chunks`` in a worker thread, at most ``depth`` ahead, so decompressing the next chunk
    overlaps writing this one (zstd and os.write both release the GIL). Errors surface in order."""
    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        """Queue ``item`` unless the consumer has gone (then never block: it will not read again)."""
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for chunk in chunks:
                if not put(("chunk", chunk)):
                    return
            put(("end", None))
        except BaseException as e:  # handed to the consumer, raised there
            put(("error", e))

    worker = threading.Thread(target=produce, name="tckpt-decompress", daemon=True)
    worker.start()
    try:
        while True:
            kind, item = q.get()
            if kind == "chunk":
                yield item
            elif kind == "end":
                return
            else:
                raise item
    finally:
        stop.set()
        worker.join()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
