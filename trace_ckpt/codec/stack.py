"""The abstract values the pickle check's stack holds (:mod:`trace_ckpt.codec.opcodes`), which the class rules'
argument and state checks (:mod:`trace_ckpt.codec.reconstructors`) read."""

from __future__ import annotations

from collections.abc import Callable

from trace_ckpt.codec.allowlist import Rule
from trace_ckpt.codec.pickle_ops import NAMES, OP_APPENDS, OP_SETITEMS


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


# resolve(module, name) -> the name's rule, or raises a CheckpointError to refuse it
Resolver = Callable[[str, str], "Rule"]


class Refused(Exception):
    """Why the check stops: the pickle must not reach the unpickler."""


def check_fill(code: int, target: object, at: int, items: list) -> None:
    """Item opcodes may fill only what the pickle built as that container, or a class whose rule allows it."""
    if code == OP_SETITEMS:
        ok = isinstance(target, Dict) or (isinstance(target, Made) and target.name.rule.items)
        if ok and isinstance(target, Dict):
            target.items.extend(items)
    elif code == OP_APPENDS:
        ok = isinstance(target, List) or (isinstance(target, Made) and target.name.rule.append)
        if isinstance(target, List):
            target.count += len(items)
    else:
        ok = target is SET
    if not ok:
        raise Refused(f"{NAMES[code]} at byte {at} fills {target!r}, which is not a container the pickle built")
