"""The save pipeline, independent of RD-Agent: graph + tables + blobs + files -> one file, written atomically.

``trace_ckpt.rdagent`` supplies what is RD-Agent-specific (which folders are workspaces, the manifest's draft: the
node summaries); this module owns the order of sections. Reading is ``trace_ckpt.ckpt.Checkpoint.open``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trace_ckpt.ckpt import Checkpoint, PathLike
from trace_ckpt.errors import CorruptCheckpointError
from trace_ckpt.format.container import ContainerWriter
from trace_ckpt.format.manifest import Manifest
from trace_ckpt.settings import Options
from trace_ckpt.storage import atomic_write

# the codec (pandas, pyarrow) and signing (cryptography) are imported only when a save runs
if TYPE_CHECKING:
    from trace_ckpt.codec.blobs import BlobPacker
    from trace_ckpt.codec.files import FilesIndex, Progress
    from trace_ckpt.format.manifest import WorkspaceStats


def write_checkpoint(
    path: PathLike,
    root: Any,
    manifest: Manifest,
    workspace_paths: Iterable[str],
    options: Options | None = None,
    *,
    progress: Progress | None = None,
) -> Manifest:
    """Write ``root`` and the given workspace folders atomically to ``path``; return the manifest written
    (``manifest`` is the draft: what the caller describes). ``options`` default to ``Options.resolve()``.

    The save fails before anything lands at ``path`` if a load with ``options.allowed`` would refuse it.
    """
    from trace_ckpt.codec.files import capture_workspaces

    options = options if options is not None else Options.resolve()
    return _save(
        path,
        root,
        manifest,
        lambda packer: capture_workspaces(
            workspace_paths, packer, max_file_bytes=options.max_file_bytes, progress=progress
        ),
        options,
    )


def _save(
    path: PathLike,
    root: Any,
    manifest: Manifest,
    capture: Callable[[BlobPacker], tuple[FilesIndex, WorkspaceStats]],
    options: Options,
    *,
    sign: bool = True,
) -> Manifest:
    """The one save pipeline: graph, then the workspace files ``capture`` puts in the packer, then the
    blob index, the files index and the manifest, all into one atomic write (signed unless ``sign`` is False)."""
    from trace_ckpt.codec.allowlist import Allowlist
    from trace_ckpt.codec.blobs import BlobPacker
    from trace_ckpt.codec.graph import encode_graph
    from trace_ckpt.signing import key_id, public_key_id

    key = options.key if sign else None
    private_key = options.private_key if sign else None  # an Ed25519 key, when configured, wins over HMAC
    signer_id = public_key_id(private_key.public_key()) if private_key else key_id(key) if key else None
    with atomic_write(path, overwrite=options.overwrite) as f:  # the CLI also refuses early: check_output
        writer = ContainerWriter(f, level=options.level, threads=options.threads)
        try:
            packer = BlobPacker(writer)
            stats = encode_graph(root, writer, packer, min_blob=options.min_blob, allow=Allowlist(options.allowed))
            index, ws_stats = capture(packer)
            packer.finish()
            writer.add_bytes("files", "files", index.to_bytes(packer.numbers()))
            content = {
                "pickler": stats.pickler,
                "tables": stats.tables,
                "pandas_pickled": stats.pandas_pickled,
                "blobs": len(packer.index),
                "workspace_stats": ws_stats,
            }
            return writer.finish(manifest, key=key, key_id=signer_id, private_key=private_key, content=content)
        finally:
            writer.close()  # the compression thread, when a save fails part-way


@dataclass
class CarriedFolder:
    """One workspace folder to copy from an open checkpoint into a new one (``write_checkpoint_carrying``)."""

    source: Checkpoint
    key: str  # the folder's key in ``source.files``
    # relative path -> the file's new content: bytes, or a function of its stored bytes returning them
    replace: Mapping[str, Any] | None = None


def write_checkpoint_carrying(
    path: PathLike,
    root: Any,
    manifest: Manifest,
    folders: Mapping[str, CarriedFolder],
    options: Options | None = None,
    *,
    sign: bool = True,
) -> Manifest:
    """Like ``write_checkpoint``, but every workspace folder (new key -> ``CarriedFolder``) comes from an open
    checkpoint: entries and file bytes are copied as stored, so no workspace has to exist on disk. ``sign=False``
    writes it unsigned whatever key is configured (content no key of yours vouched for must not become signed).
    """
    options = options if options is not None else Options.resolve()
    return _save(path, root, manifest, lambda packer: _carry_folders(folders, packer), options, sign=sign)


def _carry_folders(folders: Mapping[str, CarriedFolder], packer: BlobPacker) -> tuple[FilesIndex, WorkspaceStats]:
    import tempfile

    from trace_ckpt.codec.files import FilesIndex
    from trace_ckpt.format.manifest import WorkspaceStats

    index = FilesIndex()
    stats = WorkspaceStats()
    limits: set[int | None] = set()
    wanted: dict[int, tuple[Checkpoint, set[str]]] = {}  # id(source) -> blobs to copy from it
    carried: list[tuple[Checkpoint, dict[str, Any]]] = []  # entries whose digest is the source's
    known = packer.digests()  # blobs of the graph: a file with the same content is not a new blob
    for new_key, folder in folders.items():
        src = folder.source
        limits.add(src.manifest.workspace_stats.max_file_bytes)
        ws = src.files.workspaces.get(folder.key)
        stats.workspaces += 1
        if not ws or not ws.get("exists", False):
            stats.missing += 1
            index.workspaces[new_key] = {"exists": False, "entries": []}
            continue
        entries = []
        for e in ws.get("entries", []):
            e = dict(e)
            kind = e.get("type")
            if kind == "file":
                stats.files += 1
                if folder.replace and e.get("path") in folder.replace:
                    data = folder.replace[e["path"]]
                    if callable(data):
                        data = data(src.blobs.get(e["digest"]))
                    e["digest"] = packer.put(data)
                    e["size"] = len(data)
                else:  # FilesIndex.read checked that the source holds the blob
                    wanted.setdefault(id(src), (src, set()))[1].add(e["digest"])
                    carried.append((src, e))
                stats.file_bytes += int(e.get("size", 0))
            elif kind == "symlink":
                stats.symlinks += 1
            elif kind == "skipped":
                stats.files += 1
                stats.skipped += 1
            entries.append(e)
        index.workspaces[new_key] = {"exists": True, "entries": entries}
    # per source in file order, so each pack is decompressed once; a large blob goes through a temp file,
    # so memory stays flat (the packer streams files of a pack's size or more). A source of another
    # format version addresses blobs with another digest: its entries are re-addressed to the packer's.
    address: dict[tuple[int, str], str] = {}
    for src, digests in wanted.values():
        same = src.reader.hash_algorithm == packer.hash_algorithm
        for digest in src.blobs.in_file_order({d for d in digests if not (same and d in packer)}):
            if src.blobs.is_streamed(digest):
                with tempfile.TemporaryDirectory(prefix="tckpt-carry-") as tmp:
                    part = Path(tmp) / "blob"
                    with open(part, "wb") as f:
                        f.writelines(src.blobs.chunks(digest))
                    got = packer.put_file(part, part.stat().st_size)
            else:
                got = packer.put(src.blobs.get(digest))
            if same and got != digest:
                raise CorruptCheckpointError(f"{src.source}: blob {digest[:12]} does not match its digest")
            address[id(src), digest] = got
    for src, e in carried:
        e["digest"] = address.get((id(src), e["digest"]), e["digest"])
    stats.unique_files = len(
        {e["digest"] for ws in index.workspaces.values() for e in ws["entries"] if e.get("type") == "file"} - known
    )
    stats.max_file_bytes = next(iter(limits)) if len(limits) == 1 else None
    return index, stats
