"""Auto-checkpointing: a checkpoint after every completed RD-Agent loop, to a folder or a URL, with
Orbax-style preservation policies (the last N, the best N by a metric you name).

    from trace_ckpt.rdagent.autosave import autosave
    loop = FactorRDLoop(FACTOR_PROP_SETTING)
    saver = autosave(loop, "s3://bucket/runs/r1/", keep=3, keep_best=1, metric="Rank IC")
    asyncio.run(loop.run(loop_n=10))     # loop-0007.tckpt, loop-0008.tckpt, loop-0009.tckpt (+ the best)

In a hand-written loop, call ``Autosaver("ckpts/", keep=3).save(trace, loop_id)`` after each loop.
A failed autosave logs one warning on the ``trace_ckpt`` logger and returns None: it never stops the
research loop. ``run_app`` is ``trace-ckpt run``: RD-Agent's fin_factor / fin_model / fin_quant with autosave.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from trace_ckpt.ckpt import PathLike, read_manifest
from trace_ckpt.errors import CheckpointError, CheckpointNotFoundError
from trace_ckpt.quant import IC, class_path, metric_key, metric_value
from trace_ckpt.rdagent.checkpoint import save_trace
from trace_ckpt.rdagent.sessions import loop_metadata, session_dump
from trace_ckpt.settings import get_settings
from trace_ckpt.storage import is_remote, make_folder, remove
from trace_ckpt.storage.preservation import (
    AnyOf,
    BestN,
    LatestN,
    PreservationPolicy,
    Saved,
    autosaves,
    checkpoint_name,
)
from trace_ckpt.storage.stores import local_path

log = logging.getLogger("trace_ckpt")

# trace-ckpt run APP -> (module of the app's main, loop class, its settings object in rdagent.app.qlib_rd_loop.conf)
APPS: dict[str, tuple[str, str, str]] = {
    "fin_factor": ("rdagent.app.qlib_rd_loop.factor", "FactorRDLoop", "FACTOR_PROP_SETTING"),
    "fin_model": ("rdagent.app.qlib_rd_loop.model", "ModelRDLoop", "MODEL_PROP_SETTING"),
    "fin_quant": ("rdagent.app.qlib_rd_loop.quant", "QuantRDLoop", "QUANT_PROP_SETTING"),
}


def sota_metric(path: PathLike, metric: str = IC) -> float | None:
    """A checkpoint's score: ``metric`` (a key or label of ``trace_ckpt.quant``) of its SOTA node (the last
    accepted one), from the manifest only; None if it has no SOTA, no such finite value, or cannot be read."""
    try:
        m = read_manifest(path)
    except CheckpointError:
        return None
    node = next((n for n in m.nodes if n.index == m.sota_index), None)
    return None if node is None else metric_value(node, metric)


def sota_ic(path: PathLike) -> float | None:
    """The IC of the checkpoint's SOTA node (its last accepted one), from the manifest only; None if it has none."""
    return sota_metric(path, IC)


def _reason(e: BaseException) -> str:
    text = str(e) if isinstance(e, CheckpointError) else f"{type(e).__name__}: {e}"
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:299] + "…"


Where = Path | str
"""A checkpoint or folder: a local ``Path``, or a URL string (``s3://bucket/prefix/loop-0003.tckpt``)."""


def _where(url: str) -> Where:
    return url if is_remote(url) else local_path(url)


def _name(where: Where) -> str:
    return where.name if isinstance(where, Path) else where.rstrip("/").rsplit("/", 1)[-1]


@dataclass
class Autosaver:
    """Saves a trace as ``directory/loop-NNNN.tckpt`` (a local folder or a URL prefix, ``s3://bucket/runs/``)
    and then deletes the checkpoints its preservation policy does not keep: by default the last ``keep``
    (``None``: every one) and the ``keep_best`` whose SOTA node has the best ``metric`` (``mode`` "max" or
    "min"); ``policy`` (``LatestN``, ``BestN``, ``AnyOf`` of ``trace_ckpt.storage.preservation``) replaces both.
    Only ``loop-NNNN.tckpt`` files are ever deleted, and never the one just written."""

    directory: Where
    keep: int | None = 3
    keep_best: int = 0
    metric: str = IC
    mode: Literal["max", "min"] = "max"
    policy: PreservationPolicy | None = None
    allow_modules: tuple[str, ...] = ()
    level: int | None = None
    max_file_bytes: int | None = None
    saved: list[Where] = field(default_factory=list)
    """Every checkpoint this saver wrote (older ones may have been pruned since)."""
    failed: list[int] = field(default_factory=list)
    """Loop ids whose autosave failed."""
    _scores: dict[tuple[str, int], float | None] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.directory = _where(os.fspath(self.directory))
        self.allow_modules = tuple(self.allow_modules)
        self.keep_best = int(self.keep_best)  # keep_best=True: the one best
        if self.keep is not None and self.keep < 1:
            raise ValueError(f"keep must be at least 1 (or None to keep every checkpoint), got {self.keep}")
        if self.keep_best < 0:
            raise ValueError(f"keep_best must be 0 or more, got {self.keep_best}")
        self.metric = metric_key(self.metric)  # an unknown metric fails here, not at the first prune
        if self.mode not in ("max", "min"):
            raise ValueError(f"mode is 'max' or 'min', got {self.mode!r}")
        if self.policy is None:
            self.policy = LatestN(self.keep)
            if self.keep_best and self.keep is not None:
                self.policy = AnyOf((self.policy, BestN(self.keep_best, self.mode)))

    def _url(self, name: str) -> Where:
        d = self.directory
        return d / name if isinstance(d, Path) else _where(f"{d.rstrip('/')}/{name}")

    def save(self, trace: Any, loop_id: int, *, metadata: dict[str, Any] | None = None) -> Where | None:
        """Save ``trace`` as the checkpoint of loop ``loop_id`` and prune; on failure warn and return None."""
        target = self._url(checkpoint_name(loop_id))
        try:
            make_folder(self.directory)
            save_trace(
                trace,
                target,
                level=self.level,
                max_file_bytes=self.max_file_bytes,
                metadata=metadata,
                allow_modules=self.allow_modules,
            )
        except Exception as e:  # noqa: BLE001 - by contract an autosave never stops the research loop
            self.failed.append(loop_id)
            log.warning("autosave of loop %d to %s failed, the loop goes on: %s", loop_id, target, _reason(e))
            return None
        self.saved.append(target)
        try:
            removed = self.prune(protect=target)
        except Exception as e:  # noqa: BLE001 - a checkpoint that is not pruned costs only disk space
            log.warning("autosave could not prune old checkpoints in %s: %s", self.directory, _reason(e))
            removed = []
        log.info(
            "autosaved loop %d to %s%s",
            loop_id,
            target,
            f" (removed {', '.join(_name(p) for p in removed)})" if removed else "",
        )
        return target

    def _found(self) -> list[Saved]:
        try:
            return autosaves(self.directory)
        except CheckpointNotFoundError:
            return []  # no folder yet

    def checkpoints(self) -> list[Where]:
        """The ``loop-NNNN.tckpt`` files in the folder, oldest loop first."""
        return [_where(s.url) for s in self._found()]

    def score(self, checkpoint: Saved) -> float | None:
        """A checkpoint's ``metric`` (of its SOTA node), read once per file version (path and size)."""
        key = (checkpoint.url, checkpoint.size)
        if key not in self._scores:
            self._scores[key] = sota_metric(checkpoint.url, self.metric)
        return self._scores[key]

    def best(self) -> Where | None:
        """The checkpoint whose SOTA node has the best ``metric`` (the newest of equals); None when none has one."""
        found = self._found()
        flags = BestN(1, self.mode).should_preserve(found, self.score)
        return next((_where(s.url) for s, keep in zip(found, flags) if keep), None)

    def prune(self, *, protect: Where | None = None) -> list[Where]:
        """Delete the checkpoints the policy does not keep, except ``protect`` (the one just written).

        Returns what was deleted. Only ``loop-NNNN.tckpt`` files are ever touched.
        """
        found = self._found()
        assert self.policy is not None
        flags = self.policy.should_preserve(found, self.score)
        spared = None if protect is None else os.fspath(protect)
        removed = []
        for s, keep in zip(found, flags):
            if keep or s.url == spared:  # the new one, even if the folder holds higher loop ids of another run
                continue
            remove(s.url)
            removed.append(_where(s.url))
        return removed


# --- hooking a LoopBase ---------------------------------------------------------------------------------
#
# RD-Agent 1.0 has no callback for "a loop finished". LoopBase._run_step calls ``self.dump(path)`` after
# every step that went forward, once ``step_idx`` is updated, with path ``__session__/<loop>/<step>_<name>``;
# ``dump`` is the method RD-Agent expects subclasses to override (LoopMeta keeps "load"/"dump" out of the
# steps for that reason). So the hook is a subclass overriding ``dump``: RD-Agent's own dump first, then, if
# that dump's loop is now finished (its last step done), a checkpoint. The apps build or load their loop
# themselves, so ``autosave`` makes the subclass on the fly and switches the instance's class; nothing of
# RD-Agent is patched and other loops are untouched. The subclass pickles as the original class, so session
# dumps stay plain RD-Agent objects: loadable without trace-ckpt, and not autosaving when RD-Agent resumes them.


def _dump_then_checkpoint(self: Any, path: str | Path) -> None:
    hooked = type(self)
    hooked._tckpt_base.dump(self, path)  # the session dump first: the checkpoint's metadata points at it
    dump = session_dump(Path(path))
    if dump.loop < 0 or self.step_idx.get(dump.loop, 0) < len(self.steps):
        return  # not the last step of a loop
    try:
        metadata = loop_metadata(self, dump)
        metadata["source"]["loop_class"] = class_path(hooked._tckpt_base)
    except Exception as e:  # noqa: BLE001 - metadata is a nicety; the checkpoint is what matters
        log.debug("autosave: no loop metadata (%s)", e)
        metadata = None
    hooked._tckpt_saver.save(self.trace, dump.loop, metadata=metadata)


def _reduce_as_base(self: Any, protocol: int) -> tuple[Any, ...]:
    # object.__new__(Base) + Base.__setstate__(state): what pickle does for Base itself (LoopBase has no __new__)
    return object.__new__, (type(self)._tckpt_base,), self.__getstate__()


def autosave(
    loop: Any,
    directory: PathLike,
    *,
    keep: int | None = 3,
    keep_best: int = 0,
    metric: str = IC,
    mode: Literal["max", "min"] = "max",
    policy: PreservationPolicy | None = None,
    allow_modules: Iterable[str] = (),
    level: int | None = None,
    max_file_bytes: int | None = None,
) -> Autosaver:
    """Make an RD-Agent loop (any ``LoopBase``) checkpoint its trace after every loop it completes.

    Checkpoints go to ``directory/loop-NNNN.tckpt`` (a folder or URL); see ``Autosaver`` for the preservation
    policy. Call before ``loop.run``;
    loops already finished (a loaded session, a restored trace) are not saved again.
    """
    saver = Autosaver(
        os.fspath(directory),
        keep=keep,
        keep_best=keep_best,
        metric=metric,
        mode=mode,
        policy=policy,
        allow_modules=tuple(allow_modules),
        level=level,
        max_file_bytes=max_file_bytes,
    )
    base = getattr(type(loop), "_tckpt_base", type(loop))  # autosave twice: the new settings replace the old
    hooked = type(base)(  # type(base) is RD-Agent's LoopMeta: underscored names and "dump" are not steps
        f"Autosaving{base.__name__}",
        (base,),
        {
            "__module__": __name__,
            "_tckpt_base": base,
            "_tckpt_saver": saver,
            "dump": _dump_then_checkpoint,
            "__reduce_ex__": _reduce_as_base,
        },
    )
    loop.__class__ = hooked
    return saver


# --- trace-ckpt run ---------------------------------------------------------------------------------------


@dataclass
class RunReport:
    """What ``run_app`` did, for the caller to print."""

    app: str
    log_dir: Path
    saver: Autosaver
    completed_loops: int = 0

    @property
    def kept(self) -> list[Where]:
        """The checkpoints in the autosave folder after the run (none when it cannot be listed)."""
        try:
            return self.saver.checkpoints()
        except CheckpointError:
            return []

    @property
    def kept_names(self) -> list[str]:
        """Their file names (``loop-0007.tckpt``)."""
        return [_name(p) for p in self.kept]


def run_app(
    app: str,
    directory: PathLike,
    *,
    keep: int | None = 3,
    keep_best: int = 0,
    metric: str = IC,
    path: str | None = None,
    step_n: int | None = None,
    loop_n: int | None = None,
    all_duration: str | None = None,
    checkout: bool = True,
    base_features_path: str | None = None,
    allow_modules: Iterable[str] = (),
    setup: str | None = None,
) -> RunReport:
    """Run RD-Agent's ``fin_factor`` / ``fin_model`` / ``fin_quant`` as its ``main`` does, with autosave.

    ``keep``, ``keep_best`` and ``metric`` are :class:`Autosaver`'s; the arguments after them are those of the
    app's ``main``; ``setup`` (or
    TRACE_CKPT_RESUME_SETUP, "module:function") gets the loop before it starts.
    """
    from rdagent.app.qlib_rd_loop import conf

    from trace_ckpt.rdagent.resume import run_setup_hook

    if app not in APPS:
        raise ValueError(f"unknown app {app!r}: one of {', '.join(APPS)}")
    module, cls_name, setting_name = APPS[app]
    loop_cls = getattr(importlib.import_module(module), cls_name)
    # what the app's main does (rdagent/app/qlib_rd_loop/*.py), minus the UI's interaction queues
    if path is None:
        loop = loop_cls(getattr(conf, setting_name))
    else:
        if not Path(path).exists():
            raise CheckpointNotFoundError(f"--path {path}: no such session file or log folder")
        loop = loop_cls.load(path, checkout=checkout)
    loop._init_base_features(base_features_path)
    run_setup_hook(setup or get_settings().resume_setup, loop)
    saver = autosave(loop, directory, keep=keep, keep_best=keep_best, metric=metric, allow_modules=allow_modules)
    finished_before = sum(si >= len(loop.steps) for si in loop.step_idx.values())
    asyncio.run(loop.run(step_n=step_n, loop_n=loop_n, all_duration=all_duration))
    finished = sum(si >= len(loop.steps) for si in loop.step_idx.values())
    return RunReport(
        app=app, log_dir=Path(loop.session_folder).parent, saver=saver, completed_loops=finished - finished_before
    )
