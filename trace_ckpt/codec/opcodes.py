"""A linear pre-scan of a pickle's opcodes, run on the graph before it is unpickled.

CPython's C unpickler sizes its memo table from the index a PUT opcode names, so six bytes such as
``]r\\xff\\xff\\xff\\x7f`` make it allocate and zero 34 GB (CPython gh-115952, fixed only in newer
releases than the 3.11.7 we run). A checkpoint's pickle numbers its memo entries in order (pickle's own
writers do), so an index far beyond the entries stored so far, a length beyond the end of the input, or
an unknown opcode means a crafted or damaged graph: refused here, in time linear in its size.
"""

from __future__ import annotations

import pickletools
import struct

# an index this far past the entries stored so far is refused (pickle's writers use exactly that count)
MEMO_SLACK = 1024

_U4 = struct.Struct("<I").unpack_from
_I4 = struct.Struct("<i").unpack_from
_U8 = struct.Struct("<Q").unpack_from


def _tables() -> tuple[dict[int, int], dict[int, tuple[int, bool]], dict[int, int]]:
    """From pickletools' opcode table: fixed argument sizes, counted arguments (width, signed), line arguments."""
    fixed: dict[int, int] = {}
    counted: dict[int, tuple[int, bool]] = {}
    lines: dict[int, int] = {}
    for op in pickletools.opcodes:
        code, arg = ord(op.code), op.arg
        if arg is None or arg.n >= 0:
            fixed[code] = 1 + (arg.n if arg else 0)
        elif arg.n == pickletools.UP_TO_NEWLINE:
            lines[code] = 2 if op.name in ("GLOBAL", "INST") else 1  # module and name lines
        elif arg.n == pickletools.TAKEN_FROM_ARGUMENT1:
            counted[code] = (1, False)
        elif arg.n == pickletools.TAKEN_FROM_ARGUMENT4:
            counted[code] = (4, True)
        elif arg.n == pickletools.TAKEN_FROM_ARGUMENT4U:
            counted[code] = (4, False)
        elif arg.n == pickletools.TAKEN_FROM_ARGUMENT8U:
            counted[code] = (8, False)
        else:  # a new kind of argument in a later Python: fail loudly in the tests, not silently here
            raise RuntimeError(f"pickle opcode {op.name} has an argument kind this scanner does not know")
    return fixed, counted, lines


_FIXED, _COUNTED, _LINES = _tables()
_MEMOIZE, _PUT, _BINPUT, _LONG_BINPUT, _FRAME, _STOP = (ord(c) for c in "\x94pqr\x95.")


def unsafe_opcode(data: bytes) -> str | None:
    """Why ``data`` must not reach the C unpickler (a short reason), or None when the scan finds nothing."""
    pos, end, stored = 0, len(data), 0
    fixed, counted, lines = _FIXED, _COUNTED, _LINES
    while pos < end:
        code = data[pos]
        size = fixed.get(code)
        if size is not None:
            if code == _MEMOIZE:
                stored += 1
            elif code == _BINPUT or code == _LONG_BINPUT:
                if pos + size > end:
                    return f"opcode at byte {pos} is cut off"
                index = data[pos + 1] if code == _BINPUT else _U4(data, pos + 1)[0]
                if index > stored + MEMO_SLACK:
                    return f"memo index {index} at byte {pos} is far beyond the {stored} entries stored"
                stored += 1
            elif code == _FRAME:
                if pos + size > end or _U8(data, pos + 1)[0] > end - pos - size:
                    return f"a frame at byte {pos} runs past the end of the data"
            elif code == _STOP:
                return None
            pos += size
            continue
        width_signed = counted.get(code)
        if width_signed is not None:
            width, signed = width_signed
            if pos + 1 + width > end:
                return f"opcode at byte {pos} is cut off"
            if width == 1:
                length = data[pos + 1]
            elif width == 4:
                length = (_I4 if signed else _U4)(data, pos + 1)[0]
            else:
                length = _U8(data, pos + 1)[0]
            if length < 0 or pos + 1 + width + length > end:
                return f"a length of {length} at byte {pos} runs past the end of the data"
            pos += 1 + width + length
            continue
        n_lines = lines.get(code)
        if n_lines is None:
            return f"unknown opcode {code:#04x} at byte {pos}"
        start = pos
        for _ in range(n_lines):
            pos = data.find(b"\n", pos + 1)
            if pos < 0:
                return f"opcode at byte {start} is cut off"
        if code == _PUT:
            text = data[start + 1 : pos]
            if not text.isdigit() or len(text) > 18 or int(text) > stored + MEMO_SLACK:
                return f"memo index {text[:20]!r} at byte {start} is not a small number"
            stored += 1
        pos += 1
    return "the data ends without a STOP opcode"
