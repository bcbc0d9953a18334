"""Where checkpoint bytes go: the one door every path and URL passes through.

The rest of trace-ckpt touches checkpoint files only through these functions. Local paths and URLs
(``file://``, ``s3://``, ``gs://``, ``az://``, ``memory://``, ...) alike resolve to an fsspec file system
(``stores.py``); list / size / open / atomic write / remove are one code path (``door.py``); reads are
exact ranges (``reader.py``); a write commits with the local disk's fsync-and-rename (``local.py``) or a
staged upload (``upload.py``). ``preservation.py`` knows an autosave folder: its names, its latest
checkpoint, and Orbax-style preservation policies.
"""

from __future__ import annotations

from trace_ckpt.storage.door import (
    Entry,
    PathLike,
    atomic_write,
    check_output,
    is_folder,
    list_files,
    local_copy,
    make_folder,
    open_read,
    remove,
    size_of,
)
from trace_ckpt.storage.preservation import latest_checkpoint
from trace_ckpt.storage.stores import (
    is_remote,
    options_from_pairs,
    set_default_options,
    set_transfer_progress,
    storage_options,
)

__all__ = [
    "Entry",
    "PathLike",
    "atomic_write",
    "check_output",
    "is_folder",
    "is_remote",
    "latest_checkpoint",
    "list_files",
    "local_copy",
    "make_folder",
    "open_read",
    "options_from_pairs",
    "remove",
    "set_default_options",
    "set_transfer_progress",
    "size_of",
    "storage_options",
]
