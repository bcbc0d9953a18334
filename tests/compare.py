"""Deep comparison of two object graphs, for fidelity tests.

Compares every attribute of every object reachable from the roots (so every field RD-Agent reads),
and checks that object identity maps one-to-one: an object shared in the original is shared in the
copy, and two distinct originals stay distinct. Paths listed in ``path_map`` must come back relocated.
"""

from __future__ import annotations

import math
from pathlib import PurePath
from typing import Any

import numpy as np
import pandas as pd

_ATOMS = (str, bytes, int, float, complex, bool, type(None))


class GraphMismatch(AssertionError):
    pass


def assert_same_graph(a: Any, b: Any, *, path_map: dict[str, str] | None = None) -> int:
    """Raise GraphMismatch naming the first differing field; return the number of objects compared."""
    fwd: dict[int, Any] = {}
    back: dict[int, Any] = {}
    keep: list[Any] = []  # keep originals alive so ids stay unique
    pm = path_map or {}
    stack: list[tuple[Any, Any, str]] = [(a, b, "root")]
    count = 0
    while stack:
        x, y, where = stack.pop()
        count += 1
        if isinstance(x, _ATOMS) or x is Ellipsis:
            if type(x) is not type(y):
                raise GraphMismatch(f"{where}: type {type(x).__name__} != {type(y).__name__}")
            if isinstance(x, float) and math.isnan(x) and math.isnan(y):
                continue
            if x != y:
                raise GraphMismatch(f"{where}: {x!r:.80} != {y!r:.80}")
            continue
        if type(x) is not type(y):
            raise GraphMismatch(f"{where}: type {type(x).__name__} != {type(y).__name__}")
        if id(x) in fwd:
            if fwd[id(x)] is not y:
                raise GraphMismatch(f"{where}: a shared object came back as two objects")
            continue
        if id(y) in back:
            raise GraphMismatch(f"{where}: two distinct objects came back as one")
        fwd[id(x)] = y
        back[id(y)] = x
        keep.extend((x, y))
        if isinstance(x, PurePath):
            expect = pm.get(str(x), str(x))
            if str(y) != expect:
                raise GraphMismatch(f"{where}: path {y} != expected {expect}")
        elif isinstance(x, pd.DataFrame):
            pd.testing.assert_frame_equal(x, y, check_exact=True, check_freq=True, check_flags=True)
            if list(map(type, x.columns)) != list(map(type, y.columns)):
                raise GraphMismatch(f"{where}: column label types differ")
        elif isinstance(x, pd.Series):
            pd.testing.assert_series_equal(x, y, check_exact=True)
            if type(x.name) is not type(y.name):
                raise GraphMismatch(f"{where}: Series name type {type(x.name)} != {type(y.name)}")
        elif isinstance(x, np.ndarray):
            if x.dtype != y.dtype or x.shape != y.shape or not np.array_equal(x, y, equal_nan=x.dtype.kind == "f"):
                raise GraphMismatch(f"{where}: arrays differ")
        elif isinstance(x, np.generic):
            if x != y and not (np.isnan(x) and np.isnan(y)):
                raise GraphMismatch(f"{where}: {x} != {y}")
        elif isinstance(x, dict):
            if list(x.keys()) != list(y.keys()):
                raise GraphMismatch(f"{where}: keys {list(x)[:5]} != {list(y)[:5]}")
            stack.extend((x[k], y[k], f"{where}[{k!r}]") for k in x)
            if type(x) is not dict and hasattr(x, "__dict__"):
                stack.append((vars(x), vars(y), f"{where}.__dict__"))
        elif isinstance(x, (list, tuple)):
            if len(x) != len(y):
                raise GraphMismatch(f"{where}: length {len(x)} != {len(y)}")
            stack.extend((xi, yi, f"{where}[{i}]") for i, (xi, yi) in enumerate(zip(x, y)))
            if type(x) not in (list, tuple) and hasattr(x, "__dict__"):
                stack.append((vars(x), vars(y), f"{where}.__dict__"))
        elif isinstance(x, (set, frozenset)):
            if x != y:
                raise GraphMismatch(f"{where}: sets differ")
        elif isinstance(x, BaseException):
            if x.args != y.args:
                raise GraphMismatch(f"{where}: exception args differ")
            stack.append((vars(x), vars(y), f"{where}.__dict__"))
        elif hasattr(x, "__dict__"):
            stack.append((vars(x), vars(y), where + ".__dict__"))
        else:
            if x != y:
                raise GraphMismatch(f"{where}: {x!r:.80} != {y!r:.80}")
    return count


def snapshot_folder(root: Any) -> dict[str, tuple[str, Any]]:
    """relative path -> ('file', bytes) | ('symlink', target) | ('dir', None), without following links."""
    import os
    from pathlib import Path

    root = Path(root)
    out: dict[str, tuple[str, Any]] = {}
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out[rel] = ("symlink", os.readlink(p))
            elif p.is_dir():
                out[rel] = ("dir", None)
            else:
                out[rel] = ("file", p.read_bytes())
    return out


def folder_digests(root: Any) -> dict[str, list]:
    """Like ``snapshot_folder``, with each file's content as its hex SHA-256 (JSON-able, for fixtures)."""
    import hashlib

    return {
        rel: [kind, hashlib.sha256(value).hexdigest() if kind == "file" else value]
        for rel, (kind, value) in snapshot_folder(root).items()
    }
