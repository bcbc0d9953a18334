"""A linear check of a pickle's opcodes, run on the graph before it is unpickled.

Two things are checked in one pass, both before the C unpickler sees a byte:

* **Bombs.** CPython's C unpickler sizes its memo table from the index a PUT opcode names, so six bytes
  such as ``]r\\xff\\xff\\xff\\x7f`` make it allocate and zero 34 GB (CPython gh-115952, fixed only in
  newer releases than the 3.11.7 we run). A checkpoint's pickle numbers its memo entries in order (pickle's
  own writers do), so an index far beyond the entries stored so far, a length beyond the end of the
  input, or an unknown opcode means a crafted or damaged graph.
* **How each class is used.** The stack is simulated abstractly (what each slot is: a named class or
  function, an object made from one, a plain container, something else), so every call the unpickler
  would make is known before it makes it: ``REDUCE`` may call only a name whose rule allows calling,
  ``NEWOBJ`` may only give a class its ``__new__`` with no arguments (unless its rule allows arguments),
  ``BUILD`` may only set the state of an object the pickle made from an allowed name, and item opcodes
  may only fill plain lists, dicts and sets (or a class whose rule says it is a container). Opcodes no
  writer of ours emits (``INST``, ``OBJ``, extension codes, text persistent ids, out-of-band buffers) are
  refused. The rules themselves live in :mod:`trace_ckpt.codec.allowlist`.

Usage::

    reason = check_pickle(data, allowlist.rule)   # None, or why the graph must not be unpickled
"""

from __future__ import annotations

import pickletools
import struct
from collections.abc import Callable

from trace_ckpt.codec.allowlist import Rule

# an index this far past the entries stored so far is refused (pickle's writers use exactly that count)
MEMO_SLACK = 1024

_U4 = struct.Struct("<I").unpack_from
_I4 = struct.Struct("<i").unpack_from
_U8 = struct.Struct("<Q").unpack_from
_U2 = struct.Struct("<H").unpack_from


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


_BY_NAME = {o.name: ord(o.code) for o in pickletools.opcodes}


def _op(name: str) -> int:
    return _BY_NAME[name]


# opcodes by what they do to the abstract stack
_PUSH_ANY = frozenset(
    _op(n)
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
_PUSH_STR = frozenset(_op(n) for n in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8"))
_REFUSED = {_op(n): n for n in ("INST", "OBJ", "EXT1", "EXT2", "EXT4", "PERSID", "NEXT_BUFFER", "READONLY_BUFFER")}
(
    _MARK,
    _STOP,
    _POP,
    _POP_MARK,
    _DUP,
    _BINPERSID,
    _REDUCE,
    _APPEND,
    _APPENDS,
    _BUILD,
    _GLOBAL,
    _DICT,
    _EMPTY_DICT,
    _GET,
    _BINGET,
    _LONG_BINGET,
    _LIST,
    _EMPTY_LIST,
    _PUT,
    _BINPUT,
    _LONG_BINPUT,
    _SETITEM,
    _SETITEMS,
    _TUPLE,
    _EMPTY_TUPLE,
    _TUPLE1,
    _TUPLE2,
    _TUPLE3,
    _NEWOBJ,
    _NEWOBJ_EX,
    _EMPTY_SET,
    _ADDITEMS,
    _FROZENSET,
    _STACK_GLOBAL,
    _MEMOIZE,
    _FRAME,
    _PROTO,
    _NONE,
    _BININT1,
    _BININT2,
    _BININT,
    _NEWTRUE,
    _NEWFALSE,
    _SHORT_BINBYTES,
) = (
    _op(n)
    for n in (
        "MARK",
        "STOP",
        "POP",
        "POP_MARK",
        "DUP",
        "BINPERSID",
        "REDUCE",
        "APPEND",
        "APPENDS",
        "BUILD",
        "GLOBAL",
        "DICT",
        "EMPTY_DICT",
        "GET",
        "BINGET",
        "LONG_BINGET",
        "LIST",
        "EMPTY_LIST",
        "PUT",
        "BINPUT",
        "LONG_BINPUT",
        "SETITEM",
        "SETITEMS",
        "TUPLE",
        "EMPTY_TUPLE",
        "TUPLE1",
        "TUPLE2",
        "TUPLE3",
        "NEWOBJ",
        "NEWOBJ_EX",
        "EMPTY_SET",
        "ADDITEMS",
        "FROZENSET",
        "STACK_GLOBAL",
        "MEMOIZE",
        "FRAME",
        "PROTO",
        "NONE",
        "BININT1",
        "BININT2",
        "BININT",
        "NEWTRUE",
        "NEWFALSE",
        "SHORT_BINBYTES",
    )
)
_NAMES = {ord(o.code): o.name for o in pickletools.opcodes}


class _Kind:
    """An abstract stack value that is not a name or an object made from one."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what

    def __repr__(self) -> str:
        return self.what


# plain containers the pickle built itself (item opcodes may fill them), and anything else
SET, OTHER, NONE = _Kind("a set"), _Kind("a value"), _Kind("None")


class Dict:
    """A dict the pickle built, with its keys and values so far (flat: key, value, key, value...), so the rules
    that check a reconstructor's keyword dict (``_new_Index``) can read it."""

    __slots__ = ("items",)

    def __init__(self, items: list | None = None) -> None:
        self.items = items if items is not None else []

    def __repr__(self) -> str:
        return "a dict"


class List:
    """A list the pickle built, with how many items it holds so far (an object array's state must match)."""

    __slots__ = ("count",)

    def __init__(self, count: int = 0) -> None:
        self.count = count

    def __repr__(self) -> str:
        return "a list"


class Name:
    """A ``module.name`` the pickle resolved (GLOBAL / STACK_GLOBAL), with its rule."""

    __slots__ = ("rule", "where")

    def __init__(self, where: str, rule: Rule) -> None:
        self.where, self.rule = where, rule

    def __repr__(self) -> str:
        return self.where


class Const:
    """A small constant the rules may read: an int (BININT1/2, BININT: shapes, RangeIndex bounds), short
    bytes or a bool (a dtype's state)."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __repr__(self) -> str:
        return repr(self.value)


class Made:
    """An object the pickle made by calling (REDUCE) or ``__new__`` (NEWOBJ) of a name, with the arguments
    (strings read back as text) when the name's rule checks them."""

    __slots__ = ("args", "name")

    def __init__(self, name: Name, args: tuple = ()) -> None:
        self.name, self.args = name, args

    def __repr__(self) -> str:
        return f"a {self.name.where}"


Resolver = Callable[[str, str], Rule]


class _Refused(Exception):
    pass


# every use of every name allowed: what is left is the bounds and the stack's shape
_ANY = Rule(call=True, new=True, new_args=True, state=True, items=True, append=True)


def unsafe_opcode(data: bytes) -> str | None:
    """Why ``data`` must not reach the C unpickler on size and shape grounds alone (names and their use are not
    checked), or None."""
    return check_pickle(data, lambda module, name: _ANY)


def check_pickle(data: bytes, resolve: Resolver) -> str | None:
    """Why ``data`` must not reach the C unpickler (a short reason), or None when the check finds nothing.

    ``resolve(module, name)`` gives each name's rule, or raises a CheckpointError to refuse the name.
    """
    if not isinstance(data, bytes):
        data = bytes(data)  # a memoryview has no find() or decode()
    try:
        return _simulate(data, resolve)
    except _Refused as e:
        return str(e)


def _text(data: bytes, pos: int) -> str:
    """The string a SHORT_BINUNICODE / BINUNICODE / BINUNICODE8 opcode at ``pos`` pushes."""
    code = data[pos]
    if code == _PUSH_STR_SHORT:
        n, at = data[pos + 1], pos + 2
    elif code == _PUSH_STR_4:
        n, at = _U4(data, pos + 1)[0], pos + 5
    else:
        n, at = _U8(data, pos + 1)[0], pos + 9
    try:
        return data[at : at + n].decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        raise _Refused(f"a name at byte {pos} is not valid UTF-8") from None


_PUSH_STR_SHORT, _PUSH_STR_4 = _op("SHORT_BINUNICODE"), _op("BINUNICODE")


def _simulate(data: bytes, resolve: Resolver) -> str | None:
    """The bounds checks (lengths, frames, memo indexes) and the abstract stack: every call the unpickler would
    make is checked against the rule of the name it calls."""
    pos, end = 0, len(data)
    fixed, counted, lines = _FIXED, _COUNTED, _LINES
    stack: list[object] = []
    marks: list[int] = []
    fence = 0
    memo: dict[int, object] = {}
    names: dict[tuple[str, str], Name] = {}

    def name(module: str, qualname: str, at: int) -> Name:
        key = (module, qualname)
        got = names.get(key)
        if got is None:
            got = names[key] = Name(f"{module}.{qualname}", resolve(module, qualname))
        return got

    def texts(value: object) -> object:
        """``value`` with its strings read back as text (for the rules that check arguments or state)."""
        if type(value) is int:
            return _text(data, value)
        if type(value) is tuple:
            return tuple(texts(v) for v in value)
        if isinstance(value, Dict):  # a keyword dict: read as {name: value} when every key is a string
            keys = value.items[0::2]
            if all(type(k) is int for k in keys):
                return {_text(data, k): texts(v) for k, v in zip(keys, value.items[1::2])}
        return value

    def underflow(at: int) -> _Refused:
        return _Refused(f"{_NAMES.get(data[at], '?')} at byte {at} reads below the stack")

    def pop_mark(at: int) -> list[object]:
        nonlocal fence
        if not marks:
            raise _Refused(f"{_NAMES.get(data[at], '?')} at byte {at} has no MARK")
        m = marks.pop()
        fence = marks[-1] if marks else 0
        items = stack[m:]
        del stack[m:]
        return items

    push = stack.append
    LONG_BINGET, BINGET, MEMOIZE, SHORT_BINUNICODE, NONE_OP = _LONG_BINGET, _BINGET, _MEMOIZE, _PUSH_STR_SHORT, _NONE
    EMPTY_DICT, MARK, EMPTY_TUPLE = _EMPTY_DICT, _MARK, _EMPTY_TUPLE
    while pos < end:
        code = data[pos]
        # --- the hot path: the opcodes that make up most of a trace's graph, each advancing by itself ---
        if code == LONG_BINGET:
            if pos + 5 > end:
                return f"opcode at byte {pos} is cut off"
            value = memo.get(_U4(data, pos + 1)[0], memo)
            if value is memo:
                return f"memo entry {_U4(data, pos + 1)[0]} read at byte {pos} was never stored"
            push(value)
            pos += 5
            continue
        if code == BINGET:
            if pos + 2 > end:
                return f"opcode at byte {pos} is cut off"
            value = memo.get(data[pos + 1], memo)
            if value is memo:
                return f"memo entry {data[pos + 1]} read at byte {pos} was never stored"
            push(value)
            pos += 2
            continue
        if code == MEMOIZE:
            if len(stack) <= fence:
                raise underflow(pos)
            memo[len(memo)] = stack[-1]
            pos += 1
            continue
        if code == SHORT_BINUNICODE:
            if pos + 2 > end or pos + 2 + data[pos + 1] > end:
                return f"opcode at byte {pos} is cut off"
            push(pos)  # an int: a string whose text is read back only if a STACK_GLOBAL names it
            pos += 2 + data[pos + 1]
            continue
        if code == NONE_OP:
            push(NONE)
            pos += 1
            continue
        if code == EMPTY_DICT:
            push(Dict())
            pos += 1
            continue
        if code == MARK:
            marks.append(len(stack))
            fence = len(stack)
            pos += 1
            continue
        if code == EMPTY_TUPLE:
            push(())
            pos += 1
            continue
        at = pos
        # --- advance past the opcode and its argument, within the data ---
        size = fixed.get(code)
        if size is not None:
            if pos + size > end:
                return f"opcode at byte {pos} is cut off"
            pos += size
        else:
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
            else:
                n_lines = lines.get(code)
                if n_lines is None:
                    return f"unknown opcode {code:#04x} at byte {pos}"
                for _ in range(n_lines):
                    pos = data.find(b"\n", pos + 1)
                    if pos < 0:
                        return f"opcode at byte {at} is cut off"
                pos += 1

        # --- what the opcode does to the stack ---
        if code in _PUSH_STR:
            push(at)  # an int: a string whose text is read back only if a STACK_GLOBAL names it
        elif code == _GET:
            text = data[at + 1 : pos - 1]
            index = int(text) if text.isdigit() and len(text) <= 18 else -1
            if index not in memo:
                return f"memo entry {index} read at byte {at} was never stored"
            push(memo[index])
        elif code == _NEWTRUE or code == _NEWFALSE:
            push(Const(code == _NEWTRUE))
        elif code == _SHORT_BINBYTES:
            push(Const(data[at + 2 : pos]))
        elif code == _BININT1:
            push(Const(data[at + 1]))
        elif code == _BININT2:
            push(Const(_U2(data, at + 1)[0]))
        elif code == _BININT:
            push(Const(_I4(data, at + 1)[0]))
        elif code in _PUSH_ANY:
            push(OTHER)
        elif code == _BINPERSID:
            if len(stack) <= fence:
                raise underflow(at)
            stack[-1] = OTHER  # persistent_load checks the reference itself
        elif code == _TUPLE1 or code == _TUPLE2 or code == _TUPLE3:
            n = 1 if code == _TUPLE1 else 2 if code == _TUPLE2 else 3
            if len(stack) - n < fence:
                raise underflow(at)
            items = tuple(stack[-n:])
            del stack[-n:]
            stack.append(items)
        elif code == _TUPLE:
            stack.append(tuple(pop_mark(at)))
        elif code == _EMPTY_LIST:
            push(List())
        elif code == _EMPTY_SET:
            stack.append(SET)
        elif code == _DICT:
            items = pop_mark(at)
            if len(items) % 2:
                return f"DICT at byte {at} has an odd number of items"
            push(Dict(items))
        elif code == _LIST:
            push(List(len(pop_mark(at))))
        elif code == _FROZENSET:
            pop_mark(at)
            stack.append(OTHER)
        elif code == _SETITEMS or code == _APPENDS or code == _ADDITEMS:
            if not marks:
                raise _Refused(f"{_NAMES[code]} at byte {at} has no MARK")
            x = marks[-1]
            items = pop_mark(at)
            if x < 1:
                raise underflow(at)
            if items:
                if code == _SETITEMS and len(items) % 2:
                    return f"SETITEMS at byte {at} has an odd number of items"
                _check_fill(code, stack[x - 1], at, items)
        elif code == _SETITEM or code == _APPEND:
            n = 2 if code == _SETITEM else 1
            if len(stack) - n < 1:
                raise underflow(at)
            target = stack[-n - 1]
            items = stack[-n:]
            del stack[-n:]
            _check_fill(_SETITEMS if code == _SETITEM else _APPENDS, target, at, items)
        elif code == _BUILD:
            if len(stack) - 1 <= fence:
                raise underflow(at)
            state = stack.pop()
            target = stack[-1]
            if not isinstance(target, Made) or not target.name.rule.state:
                return f"BUILD at byte {at} sets the state of {target!r}, not of an object made from an allowed class"
            if type(state) is tuple and len(state) == 2 and state[1] is not NONE and not target.name.rule.setstate:
                return f"BUILD at byte {at} sets attributes of {target!r} one by one (slot state), which it never uses"
            if target.name.rule.check_state is not None:
                why = target.name.rule.check_state(target, texts(state))
                if why:
                    return f"BUILD at byte {at}: the state of {target!r} {why}"
        elif code == _NEWOBJ or code == _NEWOBJ_EX:
            n = 3 if code == _NEWOBJ_EX else 2
            if len(stack) - n < fence:
                raise underflow(at)
            parts = stack[-n:]
            del stack[-n:]
            cls, args = parts[0], parts[1]
            if not isinstance(cls, Name):
                return f"{_NAMES[code]} at byte {at} makes an object of {cls!r}, not of a named class"
            rule = cls.rule
            if not rule.new:
                return f"{_NAMES[code]} at byte {at}: {cls.where} may not be made with __new__"
            if not isinstance(args, tuple):
                return f"{_NAMES[code]} at byte {at}: the arguments of {cls.where} are not a tuple"
            # NEWOBJ_EX passes keyword arguments: pickle writes it only for __getnewargs_ex__, which no listed class has
            if (args or code == _NEWOBJ_EX) and not rule.new_args:
                return f"{_NAMES[code]} at byte {at}: {cls.where}.__new__ may not be given arguments"
            stack.append(Made(cls))
        elif code == _REDUCE:
            if len(stack) - 1 <= fence:
                raise underflow(at)
            args = stack.pop()
            func = stack[-1]
            if not isinstance(func, Name):
                return f"REDUCE at byte {at} calls {func!r}, not a named class or function"
            rule = func.rule
            if not rule.call:
                return f"REDUCE at byte {at}: {func.where} may not be called (its objects are built from their state)"
            if not isinstance(args, tuple):
                return f"REDUCE at byte {at}: the arguments of {func.where} are not a tuple"
            if rule.check_args is not None:
                args = texts(args)
                why = rule.check_args(args)
                if why:
                    return f"REDUCE at byte {at}: {func.where} {why}"
            stack[-1] = Made(func, args)
        elif code == _STACK_GLOBAL:
            if len(stack) - 2 < fence:
                raise underflow(at)
            module, qual = stack[-2], stack[-1]
            del stack[-2:]
            if type(module) is not int or type(qual) is not int:
                return f"STACK_GLOBAL at byte {at} names a class by a computed value"
            stack.append(name(_text(data, module), _text(data, qual), at))
        elif code == _GLOBAL:
            first = data.find(b"\n", at + 1)
            try:
                module = data[at + 1 : first].decode("utf-8")
                qual = data[first + 1 : pos - 1].decode("utf-8")
            except UnicodeDecodeError:
                return f"GLOBAL at byte {at} is not valid UTF-8"
            stack.append(name(module, qual, at))
        elif code == _BINPUT or code == _LONG_BINPUT or code == _PUT:
            if code == _BINPUT:
                index = data[at + 1]
            elif code == _LONG_BINPUT:
                index = _U4(data, at + 1)[0]
            else:
                text = data[at + 1 : pos - 1]
                if not text.isdigit() or len(text) > 18:
                    return f"memo index {text[:20]!r} at byte {at} is not a small number"
                index = int(text)
            if index > len(memo) + MEMO_SLACK:
                return f"memo index {index} at byte {at} is far beyond the {len(memo)} entries stored"
            if len(stack) <= fence:
                raise underflow(at)
            memo[index] = stack[-1]
        elif code == _POP:
            if marks and marks[-1] == len(stack):
                marks.pop()
                fence = marks[-1] if marks else 0
            elif len(stack) <= fence:
                raise underflow(at)
            else:
                stack.pop()
        elif code == _POP_MARK:
            pop_mark(at)
        elif code == _DUP:
            if len(stack) <= fence:
                raise underflow(at)
            stack.append(stack[-1])
        elif code == _FRAME:
            if _U8(data, at + 1)[0] > end - pos:
                return f"a frame at byte {at} runs past the end of the data"
        elif code == _PROTO:
            if data[at + 1] > 5:
                return f"pickle protocol {data[at + 1]} at byte {at} is newer than this reader knows"
        elif code == _STOP:
            return None
        elif code in _REFUSED:
            return f"{_REFUSED[code]} at byte {at} is not used by checkpoints and is refused"
        else:  # every opcode of pickletools' table is handled above; a new one is refused, not guessed at
            return f"opcode {_NAMES.get(code, hex(code))} at byte {at} is not handled"
    return "the data ends without a STOP opcode"


def _check_fill(code: int, target: object, at: int, items: list) -> None:
    """Item opcodes may fill only what the pickle built as that container, or a class whose rule allows it."""
    if code == _SETITEMS:
        ok = isinstance(target, Dict) or (isinstance(target, Made) and target.name.rule.items)
        if ok and isinstance(target, Dict):
            target.items.extend(items)
    elif code == _APPENDS:
        ok = isinstance(target, List) or (isinstance(target, Made) and target.name.rule.append)
        if isinstance(target, List):
            target.count += len(items)
    else:
        ok = target is SET
    if not ok:
        raise _Refused(f"{_NAMES[code]} at byte {at} fills {target!r}, which is not a container the pickle built")
