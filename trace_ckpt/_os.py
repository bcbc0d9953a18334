"""Small OS helpers shared by storage and codec."""

from __future__ import annotations

import os


def current_umask() -> int:
    """The process umask (read by setting and restoring it: there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
