"""What a checkpoint's pickle may name: the allowlist of the restricted unpickler.

A pickle can call any callable it names, so loading resolves a name only when its module is allowed
AND it is a class, or a reconstructor function listed here. Everything else (os.system, eval,
getattr, subprocess, ...) is refused with an error naming it, before it is ever called.
"""

from __future__ import annotations

import builtins
import importlib
from collections.abc import Iterable

from trace_ckpt.errors import MissingClassError, UntrustedContentError

DEFAULT_MODULES: tuple[str, ...] = (
    "rdagent",
    "trace_ckpt",
    "pandas",
    "numpy",
    "pyarrow",
    "datetime",
    "pathlib",
    "collections",
    "uuid",
    "decimal",
    "enum",
)

# builtins classes a trace needs: containers, scalars, and exceptions (feedback.exception).
_BUILTIN_CLASSES = frozenset(
    {"set", "frozenset", "slice", "complex", "bytearray", "bytes", "list", "dict", "tuple", "str", "int",
     "float", "bool", "range", "object"}
)

# Functions (not classes) that pickles of allowed objects legitimately call.
SAFE_FUNCTIONS = frozenset(
    {
        ("copyreg", "_reconstructor"),
        ("copyreg", "__newobj__"),
        ("copyreg", "__newobj_ex__"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy.random._pickle", "__randomstate_ctor"),
        ("numpy.random._pickle", "__bit_generator_ctor"),
        ("numpy.random._pickle", "__generator_ctor"),
        ("pandas._libs.internals", "_unpickle_block"),
        ("pandas.core.internals.blocks", "new_block"),
        ("pandas.core.indexes.base", "_new_Index"),
        ("pandas._libs.tslibs.timestamps", "_unpickle_timestamp"),
        ("pandas._libs.tslibs.timedeltas", "_timedelta_unpickle"),
        ("pandas._libs.tslibs.nattype", "__nat_unpickle"),
        ("pandas.core.arrays.categorical", "_unpickle"),
        ("pathlib", "_make_child_relpath"),
    }
)


class Allowlist:
    """Decides which ``module.name`` a checkpoint's pickle may resolve."""

    def __init__(self, extra_modules: Iterable[str] = ()) -> None:
        self.modules = tuple(DEFAULT_MODULES) + tuple(m for m in extra_modules if m)

    def module_allowed(self, module: str) -> bool:
        """True when ``module`` is an allowed module or inside one."""
        return any(module == m or module.startswith(m + ".") for m in self.modules)

    def resolve(self, module: str, name: str) -> object:
        """Import and return ``module.name``, or raise UntrustedContentError naming it.

        A class must also be *defined* in an allowed module, so ``rdagent.x.subprocess.Popen`` style
        re-exports are refused; dunder attributes are never traversed.
        """
        if module == "copy_reg":
            module = "copyreg"
        where = f"{module}.{name}"
        if module == "builtins":
            obj = getattr(builtins, name, None)
            if name in _BUILTIN_CLASSES or (isinstance(obj, type) and issubclass(obj, BaseException)):
                return obj
            raise self._refused(where, module)
        safe_function = (module, name) in SAFE_FUNCTIONS
        if not (safe_function or self.module_allowed(module)):
            raise self._refused(where, module)
        if any(part.startswith("__") and part.endswith("__") for part in name.split(".")) and not safe_function:
            raise self._refused(where, module)
        obj = self._lookup(module, name)
        if obj is None:
            raise MissingClassError(
                f"checkpoint refers to {where}, which cannot be imported here: install the package that "
                f"provides {module} or put it on PYTHONPATH"
            )
        if safe_function:
            return obj
        if not isinstance(obj, type):
            raise UntrustedContentError(
                f"checkpoint refers to {where}, a {type(obj).__name__} and not a class; only classes and known "
                "reconstructors are loaded"
            )
        if not self.module_allowed(getattr(obj, "__module__", "") or ""):
            raise self._refused(f"{obj.__module__}.{obj.__qualname__} (as {where})", obj.__module__)
        return obj

    def _refused(self, where: str, module: str) -> UntrustedContentError:
        top = module.split(".")[0]
        return UntrustedContentError(
            f"checkpoint refers to {where}, which is not on the allowlist; if you trust this file and {top} is "
            f"your own code, allow it with allow_modules=[{top!r}] (CLI: --allow-module {top})"
        )

    @staticmethod
    def _lookup(module: str, name: str) -> object:
        try:
            mod = importlib.import_module(module)
        except Exception:  # an allowed module that fails to import is "cannot be imported here"
            return None
        obj: object = mod
        for part in name.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                return None
        return obj
