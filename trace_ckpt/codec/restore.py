"""Restore a checkpoint's workspace folders under a root: every entry's path checked before any write, every
folder, file and link made from a handle on its parent folder with ``O_NOFOLLOW`` (docs/security.md, class 3),
file contents streamed from the blobs. The index itself (what a save captures) is :mod:`trace_ckpt.codec.files`.
"""

from __future__ import annotations

import errno
import os
import queue
import stat
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from trace_ckpt._os import NEW_FILE_FLAGS, PATH_MAX, READ_FLAGS, handle_budget, is_plain_name, open_subfolder
from trace_ckpt.codec.blobs import BlobSource
from trace_ckpt.codec.files import FilesIndex, Progress
from trace_ckpt.errors import CorruptCheckpointError, RestoreError, WorkspaceConflictError


def _entry_parts(rel: str, key: str, source: str) -> tuple[str, ...]:
    """An entry's path as its parts: a plain relative path as a save writes it (``a/b``), else
    CorruptCheckpointError (absolute, empty, ``.``, ``..``, a repeated or trailing ``/``, a NUL byte, longer
    than a save can read)."""
    parts = tuple(rel.split("/"))
    if len(rel) > PATH_MAX or not all(map(is_plain_name, parts)):
        raise CorruptCheckpointError(
            f"{source}: workspace entry {rel!r} of {key!r} is not a plain relative path; the checkpoint is crafted or damaged"
        )
    return parts


def _plan_folder(key: str, entries: list[dict[str, Any]], source: str) -> list[tuple[dict[str, Any], tuple[str, ...]]]:
    """Each entry of one workspace folder with its path parts, after checking them all: plain relative paths,
    each path once, nothing under a link or a file entry, link targets that the OS can hold."""
    kinds: dict[str, str] = {}
    out = []
    for e in entries:
        rel = e["path"]
        parts = _entry_parts(rel, key, source)
        if rel in kinds:
            raise CorruptCheckpointError(f"{source}: workspace entry {rel!r} of {key!r} is listed twice")
        if e["type"] == "symlink" and (not e["target"] or "\0" in e["target"]):
            raise CorruptCheckpointError(f"{source}: link {rel!r} of {key!r} has an empty target or a NUL byte in it")
        kinds[rel] = e["type"]
        out.append((e, parts))
    for e, parts in out:
        for i in range(1, len(parts)):  # every folder above an entry is a folder entry or not listed
            above = kinds.get("/".join(parts[:i]))
            if above is not None and above != "dir":
                what = "a symlink" if above == "symlink" else "a file"
                raise CorruptCheckpointError(f"{source}: workspace entry {e['path']!r} of {key!r} lies under {what}")
    return out


class _Folders:
    """Folder handles of one restore, keyed by (workspace number, path parts). Each folder is opened from
    its parent's handle, one name at a time, with O_NOFOLLOW: no link, whether from the entries, from an
    earlier restore or put there by anyone, ever redirects a write. Handles are kept (up to a budget), so
    a file costs one open. Only the workspace_root (each workspace folder's parent) is opened by its path."""

    def __init__(self, folders: list[tuple[str, str]], *, overwrite: bool) -> None:
        self._folders = folders  # per workspace: (its parent, as the caller gave it; its folder name)
        self._overwrite = overwrite
        self._parents: dict[str, int] = {}
        self._fds: dict[tuple[int, tuple[str, ...]], int] = {}
        self._seen: set[tuple[int, tuple[str, ...]]] = set()  # opened before: reopened without a mkdir
        self._budget = handle_budget()
        self.at: tuple[int, tuple[str, ...]] | None = None  # what is being written, for error messages

    def path(self, ws: int, parts: tuple[str, ...]) -> str:
        parent, name = self._folders[ws]
        return os.path.join(parent, name, *parts)

    def get(self, ws: int, parts: tuple[str, ...], *, create: bool) -> int | None:
        """The handle of a folder (made when ``create``), None when it does not exist. A link or a file in
        its place is a WorkspaceConflictError when only looking; when making, it is replaced with
        ``overwrite`` (the link itself is removed, never what it points to), else an OSError."""
        fd = self._fds.get((ws, parts))
        if fd is not None:
            return fd
        i = len(parts) - 1  # walk down from the deepest folder above that has a handle
        while i >= 0 and (ws, parts[:i]) not in self._fds:
            i -= 1
        if i >= 0:
            fd = self._fds[(ws, parts[:i])]
        else:
            parent = self._parent(ws, create)
            fd = None if parent is None else self._open(ws, (), parent, self._folders[ws][1], create)
            i = 0
        for j in range(i + 1, len(parts) + 1):
            if fd is None:
                break
            fd = self._open(ws, parts[:j], fd, parts[j - 1], create)
        return fd

    def _open(self, ws: int, parts: tuple[str, ...], parent: int, name: str, create: bool) -> int | None:
        """Open (or make) one folder from its parent's handle and keep its handle."""
        self.at = (ws, parts)
        try:
            fd = open_subfolder(parent, name, create=create and (ws, parts) not in self._seen)
            if fd is None and create:  # removed since it was opened
                fd = open_subfolder(parent, name, create=True)
        except NotADirectoryError:
            if not create:
                raise WorkspaceConflictError(
                    f"{self.path(ws, parts)} is a link or a file where a folder goes; restore into an empty "
                    "workspace_root or pass overwrite=True"
                ) from None
            if not self._overwrite:
                raise
            os.unlink(name, dir_fd=parent)
            fd = open_subfolder(parent, name, create=True)
        if fd is None:
            return None
        self._seen.add((ws, parts))
        if len(self._fds) >= self._budget:
            # close the newest: a restore cycling through more folders than the budget keeps the rest
            os.close(self._fds.popitem()[1])
        self._fds[(ws, parts)] = fd
        return fd

    def folder(self, ws: int, parts: tuple[str, ...]) -> int:
        """The handle of a folder, made (with the folders above it) when missing."""
        fd = self.get(ws, parts, create=True)
        if fd is None:  # never: making a folder either gives a handle or raises
            raise FileNotFoundError(errno.ENOENT, "a folder vanished while it was made", self.path(ws, parts))
        return fd

    def _parent(self, ws: int, create: bool) -> int | None:
        path = self._folders[ws][0]
        fd = self._parents.get(path)
        if fd is None:
            if create:
                os.makedirs(path, exist_ok=True)
            try:  # the workspace_root is the caller's: its own links are followed
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
            except FileNotFoundError:
                if create:
                    raise
                return None
            self._parents[path] = fd
        return fd

    def close(self) -> None:
        for fd in [*self._fds.values(), *self._parents.values()]:
            os.close(fd)
        self._fds.clear()
        self._parents.clear()


# (entry, workspace number, path parts, whether the workspace folder is new: a new folder holds no conflicting file)
_Plan = list[tuple[dict[str, Any], int, tuple[str, ...], bool]]


def materialize(
    index: FilesIndex,
    mapping: Mapping[str, Path],
    blobs: BlobSource,
    *,
    overwrite: bool = False,
    source: str = "checkpoint",
    progress: Progress | None = None,
) -> int:
    """Write every captured workspace into its new folder (``mapping``: original key -> new path, a folder
    name in a workspace_root); ``index`` comes from :meth:`FilesIndex.read`, so every file's content is in ``blobs``.

    Every entry is checked before anything is written, and every path is reached from a folder handle with
    O_NOFOLLOW, so nothing lands outside the new folders whatever they already hold. A first pass raises
    WorkspaceConflictError before anything is written when an existing, different file (or a link where a
    folder goes) is in the way. Returns the number of files written.
    """
    if os.open not in os.supports_dir_fd:
        raise RestoreError(
            "restoring workspace files needs folder handles (dir_fd), which this system lacks; use Linux or macOS"
        )
    folders: list[tuple[str, str]] = []
    plan: _Plan = []
    for key, ws in index.workspaces.items():
        if not ws["exists"] or key not in mapping:
            continue
        target = os.fspath(mapping[key])
        parent, name = os.path.split(target)
        parent = parent or os.curdir
        if not is_plain_name(name):
            raise CorruptCheckpointError(f"{source}: workspace folder {key!r} has no folder name to restore it under")
        fresh = not os.path.lexists(target)
        n = len(folders)
        folders.append((parent, name))
        plan.append(({"type": "dir"}, n, (), fresh))
        plan.extend((e, n, parts, fresh) for e, parts in _plan_folder(key, ws["entries"], source))

    handles = _Folders(folders, overwrite=overwrite)
    try:
        if not overwrite:  # conflict check before any write
            for e, ws_n, parts, fresh in plan:
                if fresh:
                    continue
                d = handles.get(ws_n, parts[:-1], create=False)
                if d is not None and parts and _conflicts(e, d, parts[-1], blobs):
                    raise WorkspaceConflictError(
                        f"{handles.path(ws_n, parts)} exists with other content; restore into an empty "
                        "workspace_root or pass overwrite=True"
                    )
        return _lay_out(plan, handles, blobs, progress or _no_progress)
    except OSError as e:  # a full disk, a read-only folder: the files written so far stay, nothing is overwritten
        where = handles.path(*handles.at) if handles.at is not None else e.filename
        where = f" {where}" if where else ""
        raise RestoreError(f"cannot write workspace files{where}: {e.strerror or e}") from None
    finally:
        handles.close()


def _no_progress(n_bytes: int, n_files: int) -> None:
    pass


def _lay_out(plan: _Plan, handles: _Folders, blobs: BlobSource, progress: Progress) -> int:
    """Make the planned folders, files and links; return the number of files written."""
    wanted: dict[str, list[tuple[int, tuple[str, ...], int, bool]]] = {}
    for e, ws_n, parts, fresh in plan:
        kind = e["type"]
        if kind == "dir":
            handles.folder(ws_n, parts)
        elif kind == "file":
            handles.folder(ws_n, parts[:-1])
            # permission bits only (never set-uid, set-gid or sticky); the umask applies at creation
            wanted.setdefault(e["digest"], []).append((ws_n, parts, e["mode"] & 0o777, fresh))
    written = 0
    for digest in blobs.in_file_order(set(wanted)):
        copies = wanted[digest]
        # a small blob is written from memory to every copy; a large one streams into its first copy,
        # and further copies are made from that file (memory stays flat, nothing is decompressed twice)
        data = None if blobs.is_streamed(digest) else blobs.get(digest)
        # a streamed blob whose copies are all new files is checked at the end of its stream (one read of
        # the file instead of two); if it fails, the new files are removed. An existing file is never
        # replaced with bytes that are not checked yet.
        new_only = data is None and all(fresh or not _exists(handles, ws_n, parts) for ws_n, parts, _, fresh in copies)
        if data is None and not new_only:
            blobs.check(digest)  # before any existing file is replaced
        first: tuple[int, tuple[str, ...]] | None = None
        for ws_n, parts, mode, fresh in copies:
            d = handles.folder(ws_n, parts[:-1])
            handles.at = (ws_n, parts)
            fd = _new_file(d, parts[-1], mode, fresh)
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
                        os.unlink(parts[-1], dir_fd=d)  # a new file (an existing one was checked above)
                        raise
                else:
                    with open(_open_file(handles, *first), "rb") as src:
                        while chunk := src.read(1 << 20):
                            _write_all(fd, chunk)
                            progress(len(chunk), 0)
            finally:
                os.close(fd)
            if data is None:
                progress(0, 1)
            first = first or (ws_n, parts)
            written += 1
    for e, ws_n, parts, fresh in plan:
        if e["type"] == "symlink":
            d = handles.folder(ws_n, parts[:-1])
            handles.at = (ws_n, parts)
            name, target = parts[-1], e["target"]
            try:
                os.symlink(target, name, dir_fd=d)
            except FileExistsError:
                if fresh:
                    raise
                if _readlink(d, name) == target:
                    continue
                os.unlink(name, dir_fd=d)  # checked above, or overwrite=True; a folder here fails (EISDIR)
                os.symlink(target, name, dir_fd=d)
    return written


def _new_file(d: int, name: str, mode: int, fresh: bool) -> int:
    """A new, empty file ``name`` in folder handle ``d``, open for writing. An existing file or link there
    (the same content, or overwrite=True) is removed first, never written through; in a new folder it is an error."""
    try:
        return os.open(name, NEW_FILE_FLAGS, mode, dir_fd=d)
    except FileExistsError:
        if fresh:
            raise
        os.unlink(name, dir_fd=d)
        return os.open(name, NEW_FILE_FLAGS, mode, dir_fd=d)


def _open_file(handles: _Folders, ws_n: int, parts: tuple[str, ...]) -> int:
    """A restored file, open for reading (never through a link)."""
    d = handles.folder(ws_n, parts[:-1])
    return os.open(parts[-1], READ_FLAGS, dir_fd=d)


def _exists(handles: _Folders, ws_n: int, parts: tuple[str, ...]) -> bool:
    d = handles.folder(ws_n, parts[:-1])
    try:
        os.stat(parts[-1], dir_fd=d, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _readlink(d: int, name: str) -> str | None:
    try:
        return os.readlink(name, dir_fd=d)
    except OSError:  # not a link
        return None


def _conflicts(e: dict[str, Any], d: int, name: str, blobs: BlobSource) -> bool:
    """Whether ``name`` in folder handle ``d`` holds something other than what entry ``e`` describes
    (nothing there is no conflict). Read without following a link."""
    try:
        st = os.stat(name, dir_fd=d, follow_symlinks=False)
    except FileNotFoundError:
        return False
    kind = e["type"]
    if kind == "file":
        if not stat.S_ISREG(st.st_mode) or st.st_size != e["size"]:
            return True
        return blobs.digest_file(os.open(name, READ_FLAGS, dir_fd=d)) != e["digest"]
    if kind == "symlink":
        return not stat.S_ISLNK(st.st_mode) or os.readlink(name, dir_fd=d) != e["target"]
    if kind == "dir":
        return not stat.S_ISDIR(st.st_mode)
    return False


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
        except BaseException as e:  # noqa: BLE001 — handed to the consumer, raised there
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
