"""The opcode tables the pickle check reads (:mod:`trace_ckpt.codec.opcodes`): argument sizes from
pickletools, the opcodes by what they do to the abstract stack, and one constant per opcode the check handles."""

from __future__ import annotations

import pickletools
import struct

# an index this far past the entries stored so far is refused (pickle's writers use exactly that count)
MEMO_SLACK = 1024

U4 = struct.Struct("<I").unpack_from
I4 = struct.Struct("<i").unpack_from
U8 = struct.Struct("<Q").unpack_from
U2 = struct.Struct("<H").unpack_from


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


FIXED, COUNTED, LINES = _tables()


BY_NAME = {o.name: ord(o.code) for o in pickletools.opcodes}


def opcode(name: str) -> int:
    return BY_NAME[name]


# opcodes by what they do to the abstract stack
PUSH_ANY = frozenset(
    opcode(n)
    for n in (
        "INT",
        "LONG",
        "LONG1",
        "LONG4",
        "FLOAT",
        "BINFLOAT",
        "STRING",
        "BINSTRING",
        "SHORT_BINSTRING",
        "UNICODE",
        "BINBYTES",
        "SHORT_BINBYTES",
        "BINBYTES8",
        "BYTEARRAY8",
    )
)
PUSH_STR = frozenset(opcode(n) for n in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8"))
REFUSED = {opcode(n): n for n in ("INST", "OBJ", "EXT1", "EXT2", "EXT4", "PERSID", "NEXT_BUFFER", "READONLY_BUFFER")}
NAMES = {ord(o.code): o.name for o in pickletools.opcodes}


# the opcodes the check handles one by one (OP_ + pickletools' name)
# fmt: off
(
    OP_MARK, OP_STOP, OP_POP, OP_POP_MARK, OP_DUP, OP_BINPERSID, OP_REDUCE, OP_APPEND, OP_APPENDS, OP_BUILD,
    OP_GLOBAL, OP_DICT, OP_EMPTY_DICT, OP_GET, OP_BINGET, OP_LONG_BINGET, OP_LIST, OP_EMPTY_LIST, OP_PUT,
    OP_BINPUT, OP_LONG_BINPUT, OP_SETITEM, OP_SETITEMS, OP_TUPLE, OP_EMPTY_TUPLE, OP_TUPLE1, OP_TUPLE2, OP_TUPLE3,
    OP_NEWOBJ, OP_NEWOBJ_EX, OP_EMPTY_SET, OP_ADDITEMS, OP_FROZENSET, OP_STACK_GLOBAL, OP_MEMOIZE, OP_FRAME,
    OP_PROTO, OP_NONE, OP_BININT1, OP_BININT2, OP_BININT, OP_NEWTRUE, OP_NEWFALSE, OP_SHORT_BINBYTES,
) = (opcode(n) for n in ["MARK", "STOP", "POP", "POP_MARK", "DUP", "BINPERSID", "REDUCE", "APPEND", "APPENDS", "BUILD", "GLOBAL", "DICT", "EMPTY_DICT", "GET", "BINGET", "LONG_BINGET", "LIST", "EMPTY_LIST", "PUT", "BINPUT", "LONG_BINPUT", "SETITEM", "SETITEMS", "TUPLE", "EMPTY_TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "NEWOBJ", "NEWOBJ_EX", "EMPTY_SET", "ADDITEMS", "FROZENSET", "STACK_GLOBAL", "MEMOIZE", "FRAME", "PROTO", "NONE", "BININT1", "BININT2", "BININT", "NEWTRUE", "NEWFALSE", "SHORT_BINBYTES"])
# fmt: on
