"""Open a checkpoint: ``Checkpoint.open(path, options)``, the one way every reader reads a file.

    with Checkpoint.open("run1.tckpt") as ck:     # the manifest is read, the signature checked
        ck.manifest.counts                         # no unpickling, no rdagent import
        ck.files.workspaces                        # the files index (checked against the blob index)
        ck.root                                    # every section checked, then the restricted unpickler

Each part is checked or decoded when first asked for, and once: ``inspect`` reads the manifest only, ``export`` and
``diff`` the files index and blobs, ``restore``, ``prune`` and ``merge`` the object graph too. Independent of RD-Agent.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trace_ckpt.errors import CorruptCheckpointError
from trace_ckpt.format.manifest import Manifest
from trace_ckpt.format.reader import ContainerReader
from trace_ckpt.settings import Options
from trace_ckpt.storage import local_copy, open_read
from trace_ckpt.trust import SignatureState, SignatureStatus, check_signature, options_status

# the codec (pandas, pyarrow) is imported only by what decodes, so that reading a manifest (`inspect`, `ls`)
# stays light
if TYPE_CHECKING:
    from trace_ckpt.codec.blobs import BlobSource
    from trace_ckpt.codec.files import FilesIndex, Progress
    from trace_ckpt.signing import TrustedKey

PathLike = str | os.PathLike[str]


class Checkpoint:
    """One open checkpoint file: its manifest, signature, files index, blobs and object graph, each checked once."""

    def __init__(self, reader: ContainerReader, options: Options | None = None) -> None:
        self.reader = reader
        self._options = options
        self.manifest: Manifest = reader.manifest
        self.source = reader.source

    @cached_property
    def options(self) -> Options:
        """The options given to ``open``, or ``Options.resolve()`` when first needed (``inspect`` never does)."""
        return self._options if self._options is not None else Options.resolve()

    @classmethod
    @contextlib.contextmanager
    def open(
        cls, path: PathLike, options: Options | None = None, *, fetch: bool = True, check: bool = True
    ) -> Iterator[Checkpoint]:
        """Open ``path`` (a file or a URL) for the ``with`` block; ``options`` default to ``Options.resolve()``.

        ``fetch``: a URL is fetched once to a temporary file (readers of many sections); otherwise it is read by
        ranges (the manifest and a few sections). ``check``: the signature is checked at once (``check_signature``:
        a bad one is refused, an unverifiable one too with ``options.require_signature``).
        """
        with contextlib.ExitStack() as stack:
            local = stack.enter_context(local_copy(path)) if fetch else path
            f = stack.enter_context(open_read(local))
            ck = cls(ContainerReader(f, source=str(path)), options)
            if check:
                ck.signature  # noqa: B018  (checked now: a refused file fails before anything else is read)
            yield ck

    @cached_property
    def signature(self) -> SignatureState:
        """The signature's state after ``check_signature`` (which raises on a refused file); only "ok" means a
        configured or trusted key vouches for the content."""
        return check_signature(self.reader, self.options)

    def bad_sections(self) -> list[str]:
        """Names of the sections whose checksum fails (every section is hashed)."""
        return self.reader.verify()

    @cached_property
    def blobs(self) -> BlobSource:
        """The content-addressed blobs (the blob index is read and checked here; each blob when read)."""
        from trace_ckpt.codec.blobs import BlobSource

        return BlobSource(self.reader)

    @cached_property
    def files(self) -> FilesIndex:
        """The files index of the captured workspace folders, checked against its schema and the blob index."""
        from trace_ckpt.codec.files import FilesIndex

        return FilesIndex.read(self.reader, self.blobs)

    @cached_property
    def root(self) -> Any:
        """The saved object, decoded by the restricted unpickler with ``options.allowed``, after every section's
        checksum holds (large workspace files are hashed as they stream to disk instead)."""
        from trace_ckpt.codec.allowlist import Allowlist
        from trace_ckpt.codec.blobs import checked_when_read
        from trace_ckpt.codec.graph import decode_graph

        bad = self.reader.verify(skip=checked_when_read)
        if bad:
            raise CorruptCheckpointError(
                f"{self.source}: {len(bad)} section(s) fail their checksum (first: {bad[0]}); the file is damaged"
            )
        return decode_graph(self.reader, self.blobs, Allowlist(self.options.allowed))

    def materialize(
        self, mapping: Mapping[str, Path], *, overwrite: bool = False, progress: Progress | None = None
    ) -> int:
        """Write the captured workspace folders to their new places (original path -> new path)."""
        from trace_ckpt.codec.restore import materialize

        return materialize(self.files, mapping, self.blobs, overwrite=overwrite, source=self.source, progress=progress)


def read_manifest(path: PathLike, options: Options | None = None) -> Manifest:
    """Read only the manifest (no unpickling, no rdagent import, no signature check): what ``inspect`` shows.

    On a URL this fetches the header, the footer and the manifest (three ranged reads), not the file.
    """
    with Checkpoint.open(path, options, fetch=False, check=False) as ck:
        return ck.manifest


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
        """No section fails its checksum and the signature is not bad."""
        return not self.bad_sections and self.signature != "bad"


def verify_checkpoint(
    path: PathLike,
    options: Options | None = None,
    *,
    key: bytes | None = None,
    trusted: Mapping[str, TrustedKey] | None = None,
) -> VerifyReport:
    """Check the manifest, every section's digest and the signature, with the given or configured keys."""
    with Checkpoint.open(path, options, check=False) as ck:  # a remote file is fetched once, streamed
        status = options_status(ck.reader, ck.options, key=key, trusted=trusted)
        return VerifyReport(ck.manifest, ck.bad_sections(), status)
