"""What the commands print: plain text streams, progress bars, sizes, metric cells and aligned tables.

Plain text, not rich's Console: importing rich costs ~0.1 s of every command, and ``inspect`` must start
fast; rich is imported only when a progress bar first moves.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TextIO


class Stream:
    """Plain text to stdout or stderr, looked up at each call (so redirection and test capture work)."""

    def __init__(self, stderr: bool = False) -> None:
        self._stderr = stderr

    @property
    def file(self) -> TextIO:
        return sys.stderr if self._stderr else sys.stdout

    @property
    def is_terminal(self) -> bool:
        return self.file.isatty()

    def print(self, text: object = "") -> None:
        self.file.write(f"{text}\n")


out = Stream()
err = Stream(stderr=True)


@dataclass
class RunState:
    """What one command run was asked and did: ``--quiet``/``--verbose``, and the outputs it finished writing
    (so an interrupt can say which files are complete). ``main`` starts each run with a fresh one."""

    verbosity: int = 1  # 0: --quiet, 1: normal, 2: --verbose
    written: list[str] = field(default_factory=list)


state = RunState()


def reset_state() -> None:
    """A fresh :class:`RunState` for the next command run."""
    global state
    state = RunState()


def say(text: object) -> None:
    """A result line on stdout (``saved ...``, ``ok: ...``), left out under ``--quiet``."""
    if state.verbosity > 0:
        out.print(text)


def note(text: object) -> None:
    """A ``trace-ckpt: note: ...`` line on stderr, left out under ``--quiet``."""
    if state.verbosity > 0:
        err.print(f"trace-ckpt: note: {text}")


def detail(text: object) -> None:
    """A line on stderr only under ``--verbose``."""
    if state.verbosity > 1:
        err.print(f"trace-ckpt: {text}")


def wrote(path: object) -> None:
    """Record that ``path`` is completely written (an interrupt from here on says so)."""
    state.written.append(str(path))


def timestamp(dt: datetime) -> str:
    """The one timestamp form of every JSON output: UTC, ISO 8601 to the second, ``2026-11-20T14:03:07Z``."""
    if dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def shown_time(stamp: str) -> str:
    """A :func:`timestamp` as text output shows it (``ls``'s column, ``inspect``'s header): ``2026-11-20 14:03:07``, UTC."""
    return stamp.replace("T", " ").rstrip("Z")


def _jsonable(x: Any) -> Any:
    return timestamp(x) if isinstance(x, datetime) else str(x)


def emit_json(doc: Any) -> None:
    """``doc`` as one line of JSON on stdout (datetimes as :func:`timestamp`, paths as strings), whatever the
    verbosity."""
    sys.stdout.write(json.dumps(doc, default=_jsonable) + "\n")


class ProgressBars:
    """The command's progress bars on stderr, on a terminal only: one rich ``Progress``, started when a bar
    first moves and stopped when every bar is done, so a download, the files of a restore and the upload of a
    save share it, and RD-Agent's logs after a restore never run through it."""

    def __init__(self) -> None:
        self._progress: Any = None
        self._live = 0

    @contextlib.contextmanager
    def bar(
        self, label: str, total_bytes: int | None = None, total_files: int | None = None, count_files: bool = True
    ) -> Iterator[Callable[..., None]]:
        """Yield ``advance(n_bytes, n_files=0)``; the bar goes when the block ends or ``total_files`` are done."""
        if not err.is_terminal or total_files == 0 or state.verbosity == 0:
            yield lambda n_bytes, n_files=0: None
            return
        task: Any = None
        done, finished = 0, False

        def advance(n_bytes: int, n_files: int = 0) -> None:
            nonlocal task, done
            if finished:
                return
            if task is None:
                task = self._start(label, total_bytes)
            done += n_files
            self._progress.update(task, advance=n_bytes, files=f"{done} files" if count_files else "")
            if total_files is not None and done >= total_files:
                finish()

        def finish() -> None:
            nonlocal finished
            finished = True
            if task is not None:
                self._progress.remove_task(task)
                self._live -= 1
                if not self._live:
                    self._progress.stop()

        try:
            yield advance
        finally:
            if not finished:
                finish()

    def _start(self, label: str, total: int | None) -> Any:
        if self._progress is None:
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TextColumn("{task.fields[files]}"),
                console=Console(stderr=True, highlight=False),
                transient=True,
            )
        if not self._live:
            self._progress.start()
        self._live += 1
        return self._progress.add_task(label, total=total, files="")


bars = ProgressBars()


def human_size(n: float) -> str:
    """A byte count as people read it (1024-based): ``512 B``, ``74.5 KB``, ``1.2 GB``."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def clip(text: str, room: int) -> str:
    """``text`` cut to ``room`` characters, an ellipsis marking the cut."""
    return text if len(text) <= room else text[: room - 1] + "…"


def metric(x: float | None) -> str:
    """A metric table cell: four decimals, empty when the node has no such metric."""
    return "" if x is None else f"{x:.4f}"


def terminal_width() -> int:
    """The terminal's width in columns (120 when stdout is no terminal and COLUMNS is unset)."""
    return shutil.get_terminal_size((120, 24)).columns


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int], flexible_last: bool = False) -> str:
    """Rows aligned under headers, two spaces apart; columns in ``right`` right-aligned. With ``flexible_last``
    the last column takes what is left of the terminal width and is clipped to it.

    Plain formatting: rich's Table takes seconds for a 500-node trace, this takes milliseconds."""
    fixed = len(headers) - 1 if flexible_last else len(headers)
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers[:fixed])]
    room = max(16, terminal_width() - sum(widths) - 2 * len(widths))
    lines = []
    for r in [headers, *rows]:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r[:fixed], widths))]
        if flexible_last:
            cells.append(clip(r[-1], room))
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
