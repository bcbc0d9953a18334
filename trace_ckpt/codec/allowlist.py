"""What a checkpoint's pickle may name, and how it may use each name.

A pickle can call any callable it names, so loading resolves only the fully qualified names listed in
:mod:`trace_ckpt.codec.classes` (plus the classes a user allows per call or by setting), and each name
carries a :class:`Rule` saying how the pickle may use it. ``opcodes.check_pickle`` enforces the rules on
the whole graph before the unpickler runs; ``find_class`` enforces the names again while it runs.

Usage::

    allow = Allowlist(["my_pkg.scen.MyScenario"])
    reason = check_pickle(data, allow.rule)      # before unpickling
    obj = allow.resolve("pathlib", "PosixPath")  # what find_class returns
"""

from __future__ import annotations

import builtins
import enum
import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

from trace_ckpt.errors import MissingClassError, UntrustedContentError


@dataclass(frozen=True)
class Rule:
    """How a name the pickle resolves may be used (checked by ``opcodes.check_pickle`` before unpickling)."""

    call: bool = False
    """REDUCE may call it with arguments: a value type whose construction has no side effect, or a reconstructor."""
    new: bool = False
    """NEWOBJ may make an instance with ``cls.__new__(cls)``."""
    new_args: bool = False
    """...and pass arguments to ``__new__`` (a value type)."""
    state: bool = False
    """BUILD may give objects made from it their state (``__setstate__`` or ``__dict__``)."""
    items: bool = False
    """SETITEM(S) may fill objects made from it (a mapping)."""
    append: bool = False
    """APPEND(S) may fill objects made from it (a sequence)."""
    check_args: Callable[[tuple], str | None] | None = None
    """For a callable: why these (abstract) arguments are refused, or None."""
    check_state: Callable[[object, object], str | None] | None = None
    """For BUILD on an object made from it: why this (abstract) state is refused, or None; called with the
    object (``opcodes.Made``, its ``args`` as checked) and the state, strings read back as text."""
    setstate: bool = True
    """Its objects take their state through ``__setstate__``. When False, BUILD fills ``__dict__`` only: pickle's
    other form, a ``(dict, slots)`` pair, would ``setattr`` each slot and reach properties and ``__class__``."""


# The usage rules (docs/security.md, "Classes and how they may be used").
NAME_ONLY = Rule()
"""A class or function the graph may hold as a value (a dtype's scalar type), never call or instantiate."""
STATE = Rule(new=True, state=True)
"""Built with ``cls.__new__(cls)`` (no arguments) and given its state: never called, so no constructor runs."""
VALUE = Rule(call=True, new=True, new_args=True, state=True)
"""A value type whose construction has no side effect (``datetime``, ``PosixPath``): may be called."""
MAPPING = Rule(call=True, new=True, state=True, items=True)
"""A mapping that may be called with no side effect and filled with items (the built-in list checks its
collections' arguments instead: see ``classes.py``)."""


def one_arg(args: tuple) -> str | None:
    """A check_args: exactly one argument."""
    return None if len(args) == 1 else f"takes one argument here, not {len(args)}"


ENUM = Rule(call=True, check_args=one_arg)
"""An Enum: called with one value, which looks a member up (two or more arguments would create a class)."""
EXCEPTION = Rule(call=True, state=True)
"""A builtin exception class (or a listed one whose constructor only stores its arguments)."""


class Allowlist:
    """Decides which ``module.name`` a checkpoint's pickle may resolve, and with what :class:`Rule`.

    ``extra`` names what the user allows beyond :mod:`~trace_ckpt.codec.classes`: a fully qualified class
    name allows that class, a module name every class *defined* in that module or below it (your own
    code). They get the STATE rule (enums and exceptions their own), never VALUE. ``rules`` replaces the
    built-in list (tests of the mechanism).
    """

    def __init__(self, extra: Iterable[str] = (), *, rules: Mapping[str, Rule] | None = None) -> None:
        from trace_ckpt.codec.classes import RULES

        self._rules = RULES if rules is None else rules
        self.extra = tuple(e for e in extra if e)
        self._classes = frozenset(self.extra)
        self._cache: dict[tuple[str, str], tuple[object, Rule]] = {}

    def rule(self, module: str, name: str) -> Rule:
        """The rule for ``module.name``; raises UntrustedContentError (not allowed) or MissingClassError."""
        return self._get(module, name)[1]

    def resolve(self, module: str, name: str) -> object:
        """Import and return ``module.name`` (what find_class returns), or raise naming it."""
        return self._get(module, name)[0]

    def _get(self, module: str, name: str) -> tuple[object, Rule]:
        key = (module, name)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._cache[key] = self._lookup_rule(module, name)
        return hit

    def _lookup_rule(self, module: str, name: str) -> tuple[object, Rule]:
        where = f"{module}.{name}"
        if any(part.startswith("__") and part.endswith("__") for part in name.split(".")) and where not in self._rules:
            raise self._refused(where, module)
        # a listed name only as pickle writes it, module then a plain name: "pandas" + "core.frame.DataFrame"
        # could reach another object through a package attribute that shadows a submodule
        listed = self._rules.get(where) if "." not in name else None
        if listed is None and where not in self._classes and not self._module_allowed(module):
            raise self._refused(where, module)
        obj = _import(module, name)
        if obj is None:
            raise MissingClassError(
                f"checkpoint refers to {where}, which cannot be imported here: install the package that "
                f"provides {module} or put it on PYTHONPATH"
            )
        if listed is not None:
            return obj, _with_setstate(obj, listed)
        # a user-allowed name: a class defined where it is named (a re-export such as my_pkg.Popen is refused)
        if not isinstance(obj, type):
            raise UntrustedContentError(
                f"checkpoint refers to {where}, a {type(obj).__name__} and not a class; only classes are loaded "
                "from allowed modules"
            )
        defined = f"{obj.__module__}.{obj.__qualname__}"
        if defined != where and not (defined in self._classes or self._module_allowed(obj.__module__)):
            raise self._refused(f"{defined} (as {where})", obj.__module__)
        return obj, _with_setstate(obj, rule_for_class(obj))

    def _module_allowed(self, module: str) -> bool:
        return any(module == m or module.startswith(m + ".") for m in self.extra)

    def _refused(self, where: str, module: str) -> UntrustedContentError:
        name, top = where.split(" ")[0], module.split(".")[0]
        return UntrustedContentError(
            f"checkpoint refers to {where}, which is not on the allowlist; if you trust this file and it is your "
            f"own class, allow it with allow_modules=[{name!r}] or [{top!r}] (CLI: --allow-class {name} or "
            f"--allow-module {top}; setting: TRACE_CKPT_ALLOW_CLASSES)"
        )


def _with_setstate(obj: object, rule: Rule) -> Rule:
    """A class without ``__setstate__`` gets ``setstate=False`` (functions keep it: they return library objects)."""
    if isinstance(obj, type) and rule.state and getattr(obj, "__setstate__", None) is None:
        return replace(rule, setstate=False)
    return rule


def rule_for_class(cls: type) -> Rule:
    """The rule a user-allowed class gets: STATE, except enums (looked up by value) and exceptions."""
    if issubclass(cls, enum.Enum):
        return ENUM
    if issubclass(cls, BaseException):
        return EXCEPTION
    return STATE


def _import(module: str, name: str) -> object | None:
    if module == "builtins":
        return getattr(builtins, name, None)
    try:
        obj: object = importlib.import_module(module)
    except Exception:  # noqa: BLE001 — an allowed module that fails to import is "cannot be imported here"
        return None
    for part in name.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj
