"""Workspace folders on disk <-> a ``files`` section plus content-addressed blobs.

Regular files are stored once per distinct content; symlinks are stored as links (data such as
``daily_pv.h5`` linked into every workspace is never copied); files over ``max_file_bytes`` are
listed but not stored. Restoring them under a root is :mod:`trace_ckpt.codec.restore`.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter
from typing_extensions import TypedDict

from trace_ckpt.codec.blobs import NUMBERED_REFS_SINCE, BlobPacker, BlobSource
from trace_ckpt.codec.schema import EXACT_TYPES, load_json
from trace_ckpt.errors import CorruptCheckpointError, SaveError
from trace_ckpt.format.manifest import WorkspaceStats
from trace_ckpt.format.reader import ContainerReader

# progress(n_bytes, n_files): increments of workspace bytes and files done; a large file may report its
# bytes in several calls (n_files 0) and then count itself (n_bytes 0, n_files 1)
Progress = Callable[[int, int], None]


# The files index's schema (docs/format.md, "files"): checked once when a checkpoint is read, so the code
# that restores, prunes, merges, diffs and exports can rely on every entry's fields and their types.
_Mode = Annotated[int, Field(ge=0, le=0o7777)]
_Size = Annotated[int, Field(ge=0)]


class _File(TypedDict):
    __pydantic_config__ = EXACT_TYPES  # type: ignore[misc]
    path: str
    type: Literal["file"]
    digest: str
    size: _Size
    mode: _Mode


class _NumberedFile(TypedDict):
    """A file entry of format v3: its content is blob number ``blob`` of the blob index (whose length is its size)."""

    __pydantic_config__ = EXACT_TYPES  # type: ignore[misc]
    path: str
    type: Literal["file"]
    blob: _Size
    mode: _Mode


class _Dir(TypedDict):
    __pydantic_config__ = EXACT_TYPES  # type: ignore[misc]
    path: str
    type: Literal["dir"]
    mode: _Mode


class _Symlink(TypedDict):
    __pydantic_config__ = EXACT_TYPES  # type: ignore[misc]
    path: str
    type: Literal["symlink"]
    target: str


class _Skipped(TypedDict):
    __pydantic_config__ = EXACT_TYPES  # type: ignore[misc]
    path: str
    type: Literal["skipped"]
    size: _Size
    reason: str


class _Workspace(TypedDict):
    __pydantic_config__ = EXACT_TYPES  # type: ignore[misc]
    exists: bool
    entries: list[Annotated[_File | _Dir | _Symlink | _Skipped, Field(discriminator="type")]]


class _Index(TypedDict):
    __pydantic_config__ = EXACT_TYPES  # type: ignore[misc]
    workspaces: dict[str, _Workspace]


class _NumberedWorkspace(TypedDict):
    __pydantic_config__ = EXACT_TYPES  # type: ignore[misc]
    exists: bool
    entries: list[Annotated[_NumberedFile | _Dir | _Symlink | _Skipped, Field(discriminator="type")]]


class _NumberedIndex(TypedDict):
    __pydantic_config__ = EXACT_TYPES  # type: ignore[misc]
    workspaces: dict[str, _NumberedWorkspace]


@cache
def _index_schema(numbered: bool) -> TypeAdapter[_Index] | TypeAdapter[_NumberedIndex]:
    # built on first read: commands that never read the index skip the cost
    return TypeAdapter(_NumberedIndex) if numbered else TypeAdapter(_Index)


@dataclass
class FilesIndex:
    """The ``files`` section: per workspace folder (keyed by its original path), its entries."""

    workspaces: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_bytes(self, numbers: Mapping[str, int] | None = None) -> bytes:
        """The ``files`` section as a save writes it (format v3): a file entry names its content by its number in
        the blob index (``numbers``: digest -> number, :meth:`BlobPacker.numbers`), not by digest and size."""
        numbers = numbers or {}
        workspaces = {
            key: dict(ws, entries=[_numbered(e, numbers) for e in ws["entries"]]) for key, ws in self.workspaces.items()
        }
        return json.dumps({"workspaces": workspaces}, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes, source: str, numbered: list[tuple[str, int]] | None = None) -> FilesIndex:
        """The index as stored, checked against its schema (CorruptCheckpointError if it does not fit). A v3 index
        names blobs by number: ``numbered`` is the blob index's (digest, length) in record order
        (:attr:`BlobSource.numbered`), and each file entry gets its ``digest`` and ``size`` back; without it the
        index is read as v1/v2 wrote it."""
        workspaces = load_json(_index_schema(numbered is not None), data, "the files index", source)["workspaces"]
        if numbered is not None:
            for key, ws in workspaces.items():
                for e in ws["entries"]:
                    if e["type"] == "file":
                        n = e.pop("blob")  # type: ignore[typeddict-item]
                        if n >= len(numbered):
                            raise CorruptCheckpointError(
                                f"{source}: file {e['path']} of {key} refers to a missing blob (number {n})"
                            )
                        e["digest"], e["size"] = numbered[n]  # type: ignore[typeddict-unknown-key]
        return cls(workspaces)  # type: ignore[arg-type]

    @classmethod
    def read(cls, reader: ContainerReader, blobs: BlobSource) -> FilesIndex:
        """The checkpoint's ``files`` section, checked against its schema and against the blob index: a
        file whose content is not stored is a corrupt checkpoint, found before anything uses the index."""
        numbered = blobs.numbered if reader.format_version >= NUMBERED_REFS_SINCE else None
        index = cls.from_bytes(reader.read_section(reader.section("files")), reader.source, numbered)
        for key, ws in index.workspaces.items():
            for e in ws["entries"]:
                if e["type"] == "file" and e["digest"] not in blobs:
                    raise CorruptCheckpointError(f"{reader.source}: file {e['path']} of {key} refers to a missing blob")
        return index


def _numbered(e: dict[str, Any], numbers: Mapping[str, int]) -> dict[str, Any]:
    """A file entry as v3 stores it: ``blob`` (the blob's number) instead of ``digest`` and ``size``."""
    if e["type"] != "file":
        return e
    return {"path": e["path"], "type": "file", "blob": numbers[e["digest"]], "mode": e["mode"]}


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
