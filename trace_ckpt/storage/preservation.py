"""An autosave folder: the names autosave writes, the latest checkpoint, and which ones a policy preserves.

The policies are those of Orbax's ``CheckpointManager`` (``LatestN``, ``BestN``, any of several): each
says, for the checkpoints of a folder (oldest loop first), which to keep. Only files named as autosave
names its own (``loop-NNNN.tckpt``) are ever candidates: a policy never deletes a file autosave did not write.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from trace_ckpt.errors import CheckpointNotFoundError
from trace_ckpt.storage.door import PathLike, list_files

AUTOSAVE_NAME = re.compile(r"^loop-(\d+)\.tckpt$")


def checkpoint_name(loop_id: int) -> str:
    """``loop-0007.tckpt``: names sort by loop id (more than 9999 loops still sort, by number)."""
    return f"loop-{loop_id:04d}.tckpt"


@dataclass(frozen=True)
class Saved:
    """One autosave checkpoint of a folder: its loop id, its path or URL, and its size."""

    loop: int
    url: str
    size: int


def autosaves(folder: PathLike) -> list[Saved]:
    """The ``loop-NNNN.tckpt`` files directly in a local folder or behind a URL prefix, oldest loop first."""
    found = []
    for e in list_files(folder):
        m = AUTOSAVE_NAME.match(e.url.rstrip("/").rsplit("/", 1)[-1])
        if m:
            found.append(Saved(int(m.group(1)), e.url, e.size))
    return sorted(found, key=lambda s: s.loop)


def latest_checkpoint(folder: PathLike) -> str:
    """The path or URL of the newest autosave checkpoint (highest loop id) in ``folder``.

    A folder with none is a :class:`~trace_ckpt.errors.CheckpointNotFoundError` (exit 3).
    """
    found = autosaves(folder)
    if not found:
        raise CheckpointNotFoundError(
            f"no autosave checkpoint (loop-NNNN.tckpt) in {folder}: give a checkpoint file, or the --autosave folder of a run"
        )
    return found[-1].url


class PreservationPolicy(Protocol):
    """Which checkpoints of a folder to keep: one flag per checkpoint, in the order given (oldest loop first)."""

    def should_preserve(self, checkpoints: Sequence[Saved], score: Callable[[Saved], float | None]) -> list[bool]:
        """``score(c)`` is a checkpoint's metric value (read on demand: only policies that rank ask for it)."""
        ...


@dataclass(frozen=True)
class LatestN:
    """Keep the last ``n`` checkpoints (``None``: every one)."""

    n: int | None = 3

    def __post_init__(self) -> None:
        if self.n is not None and self.n < 0:
            raise ValueError(f"LatestN needs n >= 0 (or None for all), got {self.n}")

    def should_preserve(self, checkpoints: Sequence[Saved], score: Callable[[Saved], float | None]) -> list[bool]:
        if self.n is None:
            return [True] * len(checkpoints)
        cut = len(checkpoints) - self.n
        return [i >= cut for i in range(len(checkpoints))]


@dataclass(frozen=True)
class BestN:
    """Keep the ``n`` checkpoints with the best score (highest for ``mode="max"``; the newest of equals).

    Checkpoints without a score (no SOTA yet, no such metric) are kept only with ``keep_without_metric``.
    """

    n: int = 1
    mode: Literal["max", "min"] = "max"
    keep_without_metric: bool = False

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError(f"BestN needs n >= 0, got {self.n}")
        if self.mode not in ("max", "min"):
            raise ValueError(f"BestN mode is 'max' or 'min', got {self.mode!r}")

    def should_preserve(self, checkpoints: Sequence[Saved], score: Callable[[Saved], float | None]) -> list[bool]:
        if self.n == 0:
            return [self.keep_without_metric and score(c) is None for c in checkpoints]
        scores = [score(c) for c in checkpoints]
        sign = 1.0 if self.mode == "max" else -1.0
        ranked = sorted((sign * s, i) for i, s in enumerate(scores) if s is not None)
        best = {i for _, i in ranked[-self.n :]}
        return [i in best or (self.keep_without_metric and s is None) for i, s in enumerate(scores)]


@dataclass(frozen=True)
class AnyOf:
    """Keep a checkpoint when any of ``policies`` keeps it (Orbax's ``AnyPreservationPolicy``)."""

    policies: tuple[PreservationPolicy, ...]

    def should_preserve(self, checkpoints: Sequence[Saved], score: Callable[[Saved], float | None]) -> list[bool]:
        keep = [False] * len(checkpoints)
        for policy in self.policies:
            keep = [a or b for a, b in zip(keep, policy.should_preserve(checkpoints, score))]
        return keep
