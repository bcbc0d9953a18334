"""RD-Agent's file log, kept out of the commands that only read or write checkpoints.

RD-Agent's logger (``rdagent.log.rdagent_logger``) writes every prompt template it renders to
``LOG_SETTINGS.trace_path`` (default ``./log/<timestamp>/debug_tpl/...pkl``), including the ones rendered
when ``rdagent.utils.env`` is first imported, which unpickling a trace does. Only ``resume`` and ``run``
write RD-Agent's logs, where the user said; inside :func:`rdagent_logs_off` the logger's storages drop
what they are given, in the current thread or task only (a loop running in another thread keeps its log).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar, cast

F = TypeVar("F", bound=Callable[..., Any])
_OFF: ContextVar[bool] = ContextVar("trace_ckpt_rdagent_logs_off", default=False)


class _Gate:
    """One of RD-Agent's log storages, passed through except inside :func:`rdagent_logs_off`."""

    __slots__ = ("_inner",)

    def __init__(self, inner: Any) -> None:
        object.__setattr__(self, "_inner", inner)

    def log(self, *args: Any, **kwargs: Any) -> Any:
        return None if _OFF.get() else self._inner.log(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:  # path, iter_msg, truncate, ...: the storage's own
        return getattr(self._inner, name)

    def __setattr__(self, name: str, value: Any) -> None:  # RDAgentLog.set_storages_path sets .path
        setattr(self._inner, name, value)


def _install() -> None:
    from rdagent.log import rdagent_logger

    if not isinstance(rdagent_logger.storage, _Gate):
        rdagent_logger.storage = _Gate(rdagent_logger.storage)
    rdagent_logger.other_storages = [s if isinstance(s, _Gate) else _Gate(s) for s in rdagent_logger.other_storages]


@contextmanager
def rdagent_logs_off() -> Iterator[None]:
    """Within the block, RD-Agent's logger writes no files (its console output is unchanged)."""
    _install()
    token = _OFF.set(True)
    try:
        yield
    finally:
        _OFF.reset(token)


def without_rdagent_logs(func: F) -> F:
    """Decorator: ``func`` runs inside :func:`rdagent_logs_off`."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with rdagent_logs_off():
            return func(*args, **kwargs)

    return cast(F, wrapper)
