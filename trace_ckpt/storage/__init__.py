"""Where checkpoint bytes go: the one door every path passes through.

``open_read(path)`` and ``atomic_write(path)`` are the only two ways the rest of trace-ckpt touches
checkpoint files. Local paths today; other URL schemes plug in here and nowhere else.
"""

from trace_ckpt.storage.local import atomic_write, open_read

__all__ = ["atomic_write", "open_read"]
