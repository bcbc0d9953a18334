"""The save / load pipeline, independent of RD-Agent: graph + tables + blobs + files -> one file.

``trace_ckpt.rdagent`` supplies what is RD-Agent-specific (which folders are workspaces, the node
summaries, relocation); this module owns the order of sections and the integrity rules.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from trace_ckpt.errors import CorruptCheckpointError, UnsupportedVersionError, UntrustedContentError
from trace_ckpt.format.container import ED25519, HMAC_SHA256, ContainerReader, ContainerWriter
from trace_ckpt.format.manifest import Manifest
from trace_ckpt.storage import atomic_write, local_copy, open_read

log = logging.getLogger("trace_ckpt")

# the codec (pandas, pyarrow) and signing (pydantic-settings) are imported only by the functions that use
# them, so that reading a manifest (`inspect`, `ls`) stays light
if TYPE_CHECKING:
    from trace_ckpt.codec.blobs import BlobPacker, BlobSource
    from trace_ckpt.codec.files import FilesIndex, Progress
    from trace_ckpt.format.manifest import WorkspaceStats
    from trace_ckpt.signing import TrustedKey

PathLike = str | os.PathLike[str]


def write_checkpoint(
    path: PathLike,
    root: Any,
    manifest: Manifest,
    workspace_paths: Iterable[str],
    *,
    level: int = 3,
    threads: int = 0,
    max_file_bytes: int | None = None,
    min_blob: int = 256,
    progress: Progress | None = None,
    allow_modules: Iterable[str] = (),
    key: bytes | None = None,
) -> Manifest:
    """Write ``root`` and the given workspace folders atomically to ``path``; return the final manifest.

    The save fails before anything lands at ``path`` if a load with ``allow_modules`` would refuse it.
    """
    from trace_ckpt.codec.files import capture_workspaces

    return _write(
        path,
        root,
        manifest,
        lambda packer: capture_workspaces(workspace_paths, packer, max_file_bytes=max_file_bytes, progress=progress),
        level=level,
        threads=threads,
        min_blob=min_blob,
        allow_modules=allow_modules,
        key=key,
    )


def _write(
    path: PathLike,
    root: Any,
    manifest: Manifest,
    capture: Callable[[BlobPacker], tuple[FilesIndex, WorkspaceStats]],
    *,
    level: int,
    threads: int,
    min_blob: int,
    allow_modules: Iterable[str],
    key: bytes | None,
    sign: bool = True,
) -> Manifest:
    """The one save pipeline: graph, then the workspace files ``capture`` puts in the packer, then the
    blob index, the files index and the manifest, all into one atomic write (signed unless ``sign`` is False)."""
    from trace_ckpt.codec.allowlist import Allowlist
    from trace_ckpt.codec.blobs import BlobPacker
    from trace_ckpt.codec.graph import encode_graph
    from trace_ckpt.signing import configured_private_key, key_id, public_key_id

    key = key if sign else None
    private_key = configured_private_key() if sign else None  # an Ed25519 key, when configured, wins over HMAC
    signer_id = public_key_id(private_key.public_key()) if private_key else key_id(key) if key else None
    with atomic_write(path, overwrite=True) as f:  # refusing an existing output is the caller's: check_output
        writer = ContainerWriter(f, level=level, threads=threads)
        try:
            packer = BlobPacker(writer)
            stats = encode_graph(root, writer, packer, min_blob=min_blob, allow=Allowlist(allow_modules))
            index, ws_stats = capture(packer)
            packer.finish()
            writer.add_bytes("files", "files", index.to_bytes())
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


def read_manifest(path: PathLike) -> Manifest:
    """Read only the manifest (no unpickling, no rdagent import): what ``inspect`` shows.

    On a URL this fetches the header, the footer and the manifest (three ranged reads), not the file.
    """
    with open_read(path) as f:
        return ContainerReader(f, source=str(path)).manifest


SignatureState = Literal["unsigned", "ok", "bad", "unchecked", "unknown-key", "unsupported"]


@dataclass(frozen=True)
class SignatureStatus:
    """Whether a checkpoint's signature is verified by a configured key, and by whom.

    ``state``: ``ok`` (verified: ``signer`` names the key), ``bad`` (it does not hold: the file changed after
    signing, or another HMAC key signed it), ``unsigned``, ``unchecked`` (HMAC, but no HMAC key configured),
    ``unknown-key`` (Ed25519, by a key not among the trusted keys), ``unsupported`` (an algorithm this
    trace-ckpt does not know). Only ``ok`` vouches for the content.
    """

    state: SignatureState
    algorithm: str | None = None
    key_id: str | None = None
    signer: str | None = None  # the trusted key's name (its comment or principal), or "shared HMAC key"

    @property
    def verified(self) -> bool:
        """True only when a configured or trusted key verified the signature."""
        return self.state == "ok"

    def describe(self) -> str:
        """One phrase for people: what is known about who signed."""
        if self.state == "unsigned":
            return "unsigned"
        if self.algorithm == HMAC_SHA256:
            return {
                "ok": f"signed, signature ok (key id {self.key_id})",
                "bad": f"bad signature: signed with another key (key id {self.key_id})",
            }.get(self.state, f"signed (key id {self.key_id}), signature not checked: no key configured")
        if self.state == "ok":
            return f"signed by {self.signer}, signature ok ({self.algorithm} key {self.key_id})"
        if self.state == "bad":
            return (
                f"bad signature: it does not hold for {self.signer}'s key ({self.algorithm} key {self.key_id}); "
                "the file was changed after it was signed"
            )
        if self.state == "unknown-key":
            return (
                f"signed by an unknown key ({self.algorithm} key {self.key_id}, not among your trusted keys), "
                "signature not checked"
            )
        return (
            f"signed with algorithm {self.algorithm!r}, which this trace-ckpt does not know: signature not "
            "checked (upgrade trace-ckpt)"
        )


@dataclass
class VerifyReport:
    """What ``verify`` found: bad sections, and the signature status."""

    manifest: Manifest
    bad_sections: list[str]
    status: SignatureStatus

    @property
    def signature(self) -> SignatureState:
        """The signature's state: "unsigned", "ok", "bad", "unchecked", "unknown-key" or "unsupported"."""
        return self.status.state

    @property
    def ok(self) -> bool:
        return not self.bad_sections and self.signature != "bad"


def _status(
    reader: ContainerReader, key: bytes | None, trusted: Mapping[str, TrustedKey] | None = None
) -> SignatureStatus:
    """The signature status with HMAC ``key`` and the ``trusted`` Ed25519 keys (None: the configured ones, read
    only when the file is Ed25519-signed)."""
    sig = reader.manifest.signature
    if sig is None:
        return SignatureStatus("unsigned")
    algorithm, kid = sig.algorithm, sig.key_id
    if algorithm == HMAC_SHA256:
        if key is None:
            return SignatureStatus("unchecked", algorithm, kid)
        return SignatureStatus("ok" if reader.signature_matches(key) else "bad", algorithm, kid, "shared HMAC key")
    if algorithm == ED25519:
        if trusted is None:
            from trace_ckpt.signing import configured_trusted_keys

            trusted = configured_trusted_keys()
        known = trusted.get(kid)
        if known is None:
            return SignatureStatus("unknown-key", algorithm, kid)
        holds = reader.signature_verifies(known.public_key)
        return SignatureStatus("ok" if holds else "bad", algorithm, kid, known.name)
    return SignatureStatus("unsupported", algorithm, kid)


def signature_status(
    reader: ContainerReader, *, key: bytes | None = None, trusted: Mapping[str, TrustedKey] | None = None
) -> SignatureStatus:
    """Is this reader's signature verified by a configured key (HMAC) or trusted key (Ed25519), and by whom?

    ``key`` and ``trusted`` default to the configured ones (TRACE_CKPT_SIGNING_KEY..., TRACE_CKPT_TRUSTED_KEYS).
    """
    from trace_ckpt.signing import configured_key

    return _status(reader, key if key is not None else configured_key(), trusted)


def verify_checkpoint(
    path: PathLike, *, key: bytes | None = None, trusted: Mapping[str, TrustedKey] | None = None
) -> VerifyReport:
    """Check the manifest, every section's digest and the signature, with the given or configured keys."""
    with local_copy(path) as local, open_read(local) as f:  # a remote file is fetched once, streamed
        reader = ContainerReader(f, source=str(path))
        return VerifyReport(reader.manifest, reader.verify(), signature_status(reader, key=key, trusted=trusted))


def _public_keys_configured() -> bool:
    from trace_ckpt.settings import get_settings

    s = get_settings()
    return bool(s.trusted_keys or s.private_key_file)


def check_signature(reader: ContainerReader, key: bytes | None, require: bool) -> str:
    """Refuse a file signed with another key, and (with ``require``) one whose signature cannot be checked.

    Returns the status ("ok", "unsigned", "unchecked", "unknown-key" or "unsupported"); an unsigned file read while
    a key is configured is logged. Ed25519 signatures are checked with the configured trusted keys.
    """
    from trace_ckpt.signing import key_id

    st = _status(reader, key)
    status = st.state
    src = reader.source
    if status == "bad" and st.algorithm != HMAC_SHA256:
        raise UntrustedContentError(f"{src}: {st.describe()}: refused")
    if status == "bad":
        theirs = reader.manifest.signature.key_id if reader.manifest.signature else "?"
        raise UntrustedContentError(
            f"{src} is signed with another key (key id {theirs}, yours {key_id(key) if key else '-'}): refused"
        )
    if require and status == "unsigned":
        raise UntrustedContentError(f"{src} is unsigned and a signature is required")
    if require and status == "unchecked":
        raise UntrustedContentError(
            f"{src} is signed but no key is configured to check it: set TRACE_CKPT_SIGNING_KEY or TRACE_CKPT_SIGNING_KEY_FILE"
        )
    if require and status == "unknown-key":
        raise UntrustedContentError(
            f"{src} is signed by an unknown key ({st.key_id}) and a signature is required: if you trust that key, "
            "add its public key to TRACE_CKPT_TRUSTED_KEYS"
        )
    if require and status == "unsupported":
        raise UnsupportedVersionError(f"{src} is {st.describe()}, and a signature is required")
    if status == "unchecked":
        log.warning("%s is signed but no key is configured, so the signature was not checked", src)
    if status in ("unknown-key", "unsupported"):
        log.warning("%s is %s", src, st.describe())
    if status == "unsigned" and (key is not None or _public_keys_configured()):
        log.warning(
            "%s is unsigned although a signing key is configured: its content is not vouched for "
            "(TRACE_CKPT_REQUIRE_SIGNATURE=true refuses such files)",
            src,
        )
    return status


@dataclass
class LoadedCheckpoint:
    """A verified, decoded checkpoint: the root object and what is needed to lay out its files."""

    manifest: Manifest
    root: Any
    files: FilesIndex
    _reader: ContainerReader
    _blobs: BlobSource
    signature: str = "unsigned"
    """What ``check_signature`` found: only "ok" means a configured or trusted key vouches for the content."""

    def materialize(
        self, mapping: Mapping[str, Path], *, overwrite: bool = False, progress: Progress | None = None
    ) -> int:
        """Write the captured workspace folders to their new places (original path -> new path)."""
        from trace_ckpt.codec.files import materialize

        return materialize(
            self.files, mapping, self._blobs, overwrite=overwrite, source=self._reader.source, progress=progress
        )


@contextlib.contextmanager
def open_checkpoint(
    path: PathLike,
    *,
    allow_modules: Iterable[str] = (),
    key: bytes | None = None,
    require_signature: bool = False,
) -> Iterator[LoadedCheckpoint]:
    """Check the signature and every section's checksum, then decode the graph with the restricted unpickler.

    The file stays open inside the ``with`` block so the workspace files can be materialized.
    """
    from trace_ckpt.codec.allowlist import Allowlist
    from trace_ckpt.codec.blobs import BlobSource, checked_when_read
    from trace_ckpt.codec.files import FilesIndex
    from trace_ckpt.codec.graph import decode_graph

    with local_copy(path) as local, open_read(local) as f:  # a remote file is fetched once, streamed
        reader = ContainerReader(f, source=str(path))
        signature = check_signature(reader, key, require_signature)
        # large workspace files are hashed while they stream to disk (one read, not two); every other
        # section, and anything the graph reads, is checked before a byte of it is decompressed
        bad = reader.verify(skip=checked_when_read)
        if bad:
            raise CorruptCheckpointError(
                f"{path}: {len(bad)} section(s) fail their checksum (first: {bad[0]}); the file is damaged"
            )
        blobs = BlobSource(reader)
        root = decode_graph(reader, blobs, Allowlist(allow_modules))
        files = FilesIndex.read(reader, blobs)
        yield LoadedCheckpoint(reader.manifest, root, files, reader, blobs, signature)


@dataclass
class CarriedFolder:
    """One workspace folder to copy from an open checkpoint into a new one (``write_checkpoint_carrying``)."""

    source: LoadedCheckpoint
    key: str  # the folder's key in ``source.files``
    # relative path -> the file's new content: bytes, or a function of its stored bytes returning them
    replace: Mapping[str, Any] | None = None


def write_checkpoint_carrying(
    path: PathLike,
    root: Any,
    manifest: Manifest,
    folders: Mapping[str, CarriedFolder],
    *,
    level: int = 3,
    threads: int = 0,
    min_blob: int = 256,
    allow_modules: Iterable[str] = (),
    key: bytes | None = None,
    sign: bool = True,
) -> Manifest:
    """Like ``write_checkpoint``, but every workspace folder (new key -> ``CarriedFolder``) comes from an open
    checkpoint: entries and file bytes are copied as stored, so no workspace has to exist on disk. ``sign=False``
    writes it unsigned whatever key is configured (content no key of yours vouched for must not become signed).
    """
    return _write(
        path,
        root,
        manifest,
        lambda packer: _carry_folders(folders, packer),
        level=level,
        threads=threads,
        min_blob=min_blob,
        allow_modules=allow_modules,
        key=key,
        sign=sign,
    )


def _carry_folders(folders: Mapping[str, CarriedFolder], packer: BlobPacker) -> tuple[FilesIndex, WorkspaceStats]:
    import tempfile

    from trace_ckpt.codec.files import FilesIndex
    from trace_ckpt.format.manifest import WorkspaceStats

    index = FilesIndex()
    stats = WorkspaceStats()
    limits: set[int | None] = set()
    wanted: dict[int, tuple[LoadedCheckpoint, set[str]]] = {}  # id(source) -> blobs to copy from it
    carried: list[tuple[LoadedCheckpoint, dict[str, Any]]] = []  # entries whose digest is the source's
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
                        data = data(src._blobs.get(e["digest"]))
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
        same = src._reader.hash_algorithm == packer.hash_algorithm
        for digest in src._blobs.in_file_order({d for d in digests if not (same and d in packer)}):
            if src._blobs.is_streamed(digest):
                with tempfile.TemporaryDirectory(prefix="tckpt-carry-") as tmp:
                    part = Path(tmp) / "blob"
                    with open(part, "wb") as f:
                        f.writelines(src._blobs.chunks(digest))
                    got = packer.put_file(part, part.stat().st_size)
            else:
                got = packer.put(src._blobs.get(digest))
            if same and got != digest:
                raise CorruptCheckpointError(f"{src._reader.source}: blob {digest[:12]} does not match its digest")
            address[id(src), digest] = got
    for src, e in carried:
        e["digest"] = address.get((id(src), e["digest"]), e["digest"])
    stats.unique_files = len(
        {e["digest"] for ws in index.workspaces.values() for e in ws["entries"] if e.get("type") == "file"} - known
    )
    stats.max_file_bytes = next(iter(limits)) if len(limits) == 1 else None
    return index, stats
