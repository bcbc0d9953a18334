"""JSON sections (files index, blob index) checked against a schema when read.

A damaged document becomes one CorruptCheckpointError that says where it is wrong, and the code after
the check can rely on every field and its type.
"""

from __future__ import annotations

import re
from typing import TypeVar

from pydantic import ConfigDict, TypeAdapter, ValidationError

from trace_ckpt.errors import CorruptCheckpointError

T = TypeVar("T")

EXACT_TYPES = ConfigDict(strict=True, extra="allow")
"""Each field has exactly its declared type ("12" is not a size); fields a later writer adds are kept, not refused."""
# a NUL character, written \u0000 in JSON (not after an escaped backslash): no path, link target, digest or
# section name can hold one, and the OS refuses a path with it (ValueError) after a restore has begun
_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def load_json(schema: TypeAdapter[T], data: bytes, what: str, source: str) -> T:
    """``data`` parsed and validated by ``schema``; CorruptCheckpointError naming ``what`` and the place if not.

    The parser refuses nesting deeper than 200 levels; a string holding a NUL character is refused too.
    """
    if b"\\u0000" in data and _NUL.search(data):
        raise CorruptCheckpointError(f"{source}: {what} is not valid (a name holds a NUL character, which no path can)")
    try:
        return schema.validate_json(data)
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        raise CorruptCheckpointError(f"{source}: {what} is not valid ({_where(err['loc'])}: {err['msg']})") from None


def _where(loc: tuple[int | str, ...]) -> str:
    """A validation error's location as one short line: workspaces['…/ws_3'].entries[2].size."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier():
            out += f".{part}" if out else part
        else:
            out += f"[{('…' + part[-40:]) if len(part) > 41 else part!r}]"
    return out or "the document"
