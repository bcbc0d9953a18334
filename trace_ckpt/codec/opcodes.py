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

from trace_ckpt.codec.allowlist import Rule

# isort: off
# fmt: off
from trace_ckpt.codec.pickle_ops import (
    COUNTED, FIXED, I4, LINES, MEMO_SLACK, NAMES, OP_ADDITEMS, OP_APPEND, OP_APPENDS, OP_BINGET, OP_BININT,
    OP_BININT1, OP_BININT2, OP_BINPERSID, OP_BINPUT, OP_BUILD, OP_DICT, OP_DUP, OP_EMPTY_DICT, OP_EMPTY_LIST,
    OP_EMPTY_SET, OP_EMPTY_TUPLE, OP_FRAME, OP_FROZENSET, OP_GET, OP_GLOBAL, OP_LIST, OP_LONG_BINGET,
    OP_LONG_BINPUT, OP_MARK, OP_MEMOIZE, OP_NEWFALSE, OP_NEWOBJ, OP_NEWOBJ_EX, OP_NEWTRUE, OP_NONE, OP_POP,
    OP_POP_MARK, OP_PROTO, OP_PUT, OP_REDUCE, OP_SETITEM, OP_SETITEMS, OP_SHORT_BINBYTES, OP_STACK_GLOBAL, OP_STOP,
    OP_TUPLE, OP_TUPLE1, OP_TUPLE2, OP_TUPLE3, PUSH_ANY, PUSH_STR, REFUSED, U2, U4, U8, opcode,
)
# fmt: on
# isort: on
from trace_ckpt.codec.stack import NONE, OTHER, SET, Const, Dict, List, Made, Name, Refused, Resolver, check_fill

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
    except Refused as e:
        return str(e)


def _text(data: bytes, pos: int) -> str:
    """The string a SHORT_BINUNICODE / BINUNICODE / BINUNICODE8 opcode at ``pos`` pushes."""
    code = data[pos]
    if code == _PUSH_STR_SHORT:
        n, at = data[pos + 1], pos + 2
    elif code == _PUSH_STR_4:
        n, at = U4(data, pos + 1)[0], pos + 5
    else:
        n, at = U8(data, pos + 1)[0], pos + 9
    try:
        return data[at : at + n].decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        raise Refused(f"a name at byte {pos} is not valid UTF-8") from None


_PUSH_STR_SHORT, _PUSH_STR_4 = opcode("SHORT_BINUNICODE"), opcode("BINUNICODE")


def _simulate(data: bytes, resolve: Resolver) -> str | None:
    """The bounds checks (lengths, frames, memo indexes) and the abstract stack: every call the unpickler would
    make is checked against the rule of the name it calls."""
    pos, end = 0, len(data)
    fixed, counted, lines = FIXED, COUNTED, LINES
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

    def underflow(at: int) -> Refused:
        return Refused(f"{NAMES.get(data[at], '?')} at byte {at} reads below the stack")

    def pop_mark(at: int) -> list[object]:
        nonlocal fence
        if not marks:
            raise Refused(f"{NAMES.get(data[at], '?')} at byte {at} has no MARK")
        m = marks.pop()
        fence = marks[-1] if marks else 0
        items = stack[m:]
        del stack[m:]
        return items

    push = stack.append
    # the hot path's opcodes as locals (a local is read faster than a module global)
    LONG_BINGET, BINGET, MEMOIZE, SHORT_BINUNICODE = OP_LONG_BINGET, OP_BINGET, OP_MEMOIZE, _PUSH_STR_SHORT
    EMPTY_DICT, MARK, EMPTY_TUPLE, NONE_OP = OP_EMPTY_DICT, OP_MARK, OP_EMPTY_TUPLE, OP_NONE
    while pos < end:
        code = data[pos]
        # --- the hot path: the opcodes that make up most of a trace's graph, each advancing by itself ---
        if code == LONG_BINGET:
            if pos + 5 > end:
                return f"opcode at byte {pos} is cut off"
            value = memo.get(U4(data, pos + 1)[0], memo)
            if value is memo:
                return f"memo entry {U4(data, pos + 1)[0]} read at byte {pos} was never stored"
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
                    length = (I4 if signed else U4)(data, pos + 1)[0]
                else:
                    length = U8(data, pos + 1)[0]
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
        if code in PUSH_STR:
            push(at)  # an int: a string whose text is read back only if a STACK_GLOBAL names it
        elif code == OP_GET:
            text = data[at + 1 : pos - 1]
            index = int(text) if text.isdigit() and len(text) <= 18 else -1
            if index not in memo:
                return f"memo entry {index} read at byte {at} was never stored"
            push(memo[index])
        elif code == OP_NEWTRUE or code == OP_NEWFALSE:
            push(Const(code == OP_NEWTRUE))
        elif code == OP_SHORT_BINBYTES:
            push(Const(data[at + 2 : pos]))
        elif code == OP_BININT1:
            push(Const(data[at + 1]))
        elif code == OP_BININT2:
            push(Const(U2(data, at + 1)[0]))
        elif code == OP_BININT:
            push(Const(I4(data, at + 1)[0]))
        elif code in PUSH_ANY:
            push(OTHER)
        elif code == OP_BINPERSID:
            if len(stack) <= fence:
                raise underflow(at)
            stack[-1] = OTHER  # persistent_load checks the reference itself
        elif code == OP_TUPLE1 or code == OP_TUPLE2 or code == OP_TUPLE3:
            n = 1 if code == OP_TUPLE1 else 2 if code == OP_TUPLE2 else 3
            if len(stack) - n < fence:
                raise underflow(at)
            items = tuple(stack[-n:])
            del stack[-n:]
            stack.append(items)
        elif code == OP_TUPLE:
            stack.append(tuple(pop_mark(at)))
        elif code == OP_EMPTY_LIST:
            push(List())
        elif code == OP_EMPTY_SET:
            stack.append(SET)
        elif code == OP_DICT:
            items = pop_mark(at)
            if len(items) % 2:
                return f"DICT at byte {at} has an odd number of items"
            push(Dict(items))
        elif code == OP_LIST:
            push(List(len(pop_mark(at))))
        elif code == OP_FROZENSET:
            pop_mark(at)
            stack.append(OTHER)
        elif code == OP_SETITEMS or code == OP_APPENDS or code == OP_ADDITEMS:
            if not marks:
                raise Refused(f"{NAMES[code]} at byte {at} has no MARK")
            x = marks[-1]
            items = pop_mark(at)
            if x < 1:
                raise underflow(at)
            if items:
                if code == OP_SETITEMS and len(items) % 2:
                    return f"SETITEMS at byte {at} has an odd number of items"
                check_fill(code, stack[x - 1], at, items)
        elif code == OP_SETITEM or code == OP_APPEND:
            n = 2 if code == OP_SETITEM else 1
            if len(stack) - n < 1:
                raise underflow(at)
            target = stack[-n - 1]
            items = stack[-n:]
            del stack[-n:]
            check_fill(OP_SETITEMS if code == OP_SETITEM else OP_APPENDS, target, at, items)
        elif code == OP_BUILD:
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
        elif code == OP_NEWOBJ or code == OP_NEWOBJ_EX:
            n = 3 if code == OP_NEWOBJ_EX else 2
            if len(stack) - n < fence:
                raise underflow(at)
            parts = stack[-n:]
            del stack[-n:]
            cls, args = parts[0], parts[1]
            if not isinstance(cls, Name):
                return f"{NAMES[code]} at byte {at} makes an object of {cls!r}, not of a named class"
            rule = cls.rule
            if not rule.new:
                return f"{NAMES[code]} at byte {at}: {cls.where} may not be made with __new__"
            if not isinstance(args, tuple):
                return f"{NAMES[code]} at byte {at}: the arguments of {cls.where} are not a tuple"
            # NEWOBJ_EX passes keyword arguments: pickle writes it only for __getnewargs_ex__, which no listed class has
            if (args or code == OP_NEWOBJ_EX) and not rule.new_args:
                return f"{NAMES[code]} at byte {at}: {cls.where}.__new__ may not be given arguments"
            stack.append(Made(cls))
        elif code == OP_REDUCE:
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
        elif code == OP_STACK_GLOBAL:
            if len(stack) - 2 < fence:
                raise underflow(at)
            module, qual = stack[-2], stack[-1]
            del stack[-2:]
            if type(module) is not int or type(qual) is not int:
                return f"STACK_GLOBAL at byte {at} names a class by a computed value"
            stack.append(name(_text(data, module), _text(data, qual), at))
        elif code == OP_GLOBAL:
            first = data.find(b"\n", at + 1)
            try:
                module = data[at + 1 : first].decode("utf-8")
                qual = data[first + 1 : pos - 1].decode("utf-8")
            except UnicodeDecodeError:
                return f"GLOBAL at byte {at} is not valid UTF-8"
            stack.append(name(module, qual, at))
        elif code == OP_BINPUT or code == OP_LONG_BINPUT or code == OP_PUT:
            if code == OP_BINPUT:
                index = data[at + 1]
            elif code == OP_LONG_BINPUT:
                index = U4(data, at + 1)[0]
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
        elif code == OP_POP:
            if marks and marks[-1] == len(stack):
                marks.pop()
                fence = marks[-1] if marks else 0
            elif len(stack) <= fence:
                raise underflow(at)
            else:
                stack.pop()
        elif code == OP_POP_MARK:
            pop_mark(at)
        elif code == OP_DUP:
            if len(stack) <= fence:
                raise underflow(at)
            stack.append(stack[-1])
        elif code == OP_FRAME:
            if U8(data, at + 1)[0] > end - pos:
                return f"a frame at byte {at} runs past the end of the data"
        elif code == OP_PROTO:
            if data[at + 1] > 5:
                return f"pickle protocol {data[at + 1]} at byte {at} is newer than this reader knows"
        elif code == OP_STOP:
            return None
        elif code in REFUSED:
            return f"{REFUSED[code]} at byte {at} is not used by checkpoints and is refused"
        else:  # every opcode of pickletools' table is handled above; a new one is refused, not guessed at
            return f"opcode {NAMES.get(code, hex(code))} at byte {at} is not handled"
    return "the data ends without a STOP opcode"
