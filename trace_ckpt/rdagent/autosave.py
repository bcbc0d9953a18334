"""Auto-checkpointing: a checkpoint after every completed RD-Agent loop, only the last N kept.

    from trace_ckpt.rdagent.autosave import autosave
    loop = FactorRDLoop(FACTOR_PROP_SETTING)
    saver = autosave(loop, "ckpts/", keep=3, keep_best=True)
    asyncio.run(loop.run(loop_n=10))     # ckpts/loop-0007.tckpt, loop-0008.tckpt, loop-0009.tckpt (+ the best)

In a hand-written loop, call ``Autosaver("ckpts/", keep=3).save(trace, loop_id)`` after each loop.
A failed autosave logs one warning on the ``trace_ckpt`` logger and returns None: it never stops the
research loop. ``run_app`` is ``trace-ckpt run``: RD-Agent's fin_factor / fin_model / fin_quant with autosave.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trace_ckpt.ckpt import PathLike, read_manifest
from trace_ckpt.errors import CheckpointError, CheckpointNotFoundError
from trace_ckpt.quant import IC, class_path
from trace_ckpt.rdagent.checkpoint import save_trace
from trace_ckpt.rdagent.sessions import loop_metadata, session_dump
from trace_ckpt.settings import get_settings

log = logging.getLogger("trace_ckpt")
_NAME = re.compile(r"^loop-(\d+)\.tckpt$")

# trace-ckpt run APP -> (module of the app's main, loop class, its settings object in rdagent.app.qlib_rd_loop.conf)
APPS: dict[str, tuple[str, str, str]] = {
    "fin_factor": ("rdagent.app.qlib_rd_loop.factor", "FactorRDLoop", "FACTOR_PROP_SETTING"),
    "fin_model": ("rdagent.app.qlib_rd_loop.model", "ModelRDLoop", "MODEL_PROP_SETTING"),
    "fin_quant": ("rdagent.app.qlib_rd_loop.quant", "QuantRDLoop", "QUANT_PROP_SETTING"),
}


def checkpoint_name(loop_id: int) -> str:
    """``loop-0007.tckpt``: names sort by loop id (more than 9999 loops still sort, by number)."""
    return f"loop-{loop_id:04d}.tckpt"


def sota_ic(path: PathLike) -> float | None:
    """The IC of the checkpoint's SOTA node (its last accepted one), from the manifest only; None if it has none."""
    try:
        m = read_manifest(path)
    except CheckpointError:
        return None
    node = next((n for n in m.nodes if n.index == m.sota_index), None)
    return None if node is None else node.metrics.get(IC)


def _reason(e: BaseException) -> str:
    text = str(e) if isinstance(e, CheckpointError) else f"{type(e).__name__}: {e}"
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:299] + "…"


@dataclass
class Autosaver:
    """Saves a trace as ``directory/loop-NNNN.tckpt`` and prunes the folder to the last ``keep``
    checkpoints (``None``: keep all), plus, with ``keep_best``, the one whose SOTA node has the best IC."""

    directory: Path
    keep: int | None = 3
    keep_best: bool = False
    allow_modules: tuple[str, ...] = ()
    level: int | None = None
    max_file_bytes: int | None = None
    saved: list[Path] = field(default_factory=list)
    """Every checkpoint this saver wrote (older ones may have been pruned since)."""
    failed: list[int] = field(default_factory=list)
    """Loop ids whose autosave failed."""

    def __post_init__(self) -> None:
        self.directory = Path(self.directory)
        self.allow_modules = tuple(self.allow_modules)
        if self.keep is not None and self.keep < 1:
            raise ValueError(f"keep must be at least 1 (or None to keep every checkpoint), got {self.keep}")

    def save(self, trace: Any, loop_id: int, *, metadata: dict[str, Any] | None = None) -> Path | None:
        """Save ``trace`` as the checkpoint of loop ``loop_id`` and prune; on failure warn and return None."""
        target = self.directory / checkpoint_name(loop_id)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
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
            f" (removed {', '.join(p.name for p in removed)})" if removed else "",
        )
        return target

    def checkpoints(self) -> list[Path]:
        """The ``loop-NNNN.tckpt`` files in the folder, oldest loop first."""
        if not self.directory.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.directory.iterdir() if (m := _NAME.match(p.name)) and p.is_file()]
        return [p for _, p in sorted(found)]

    def best(self) -> Path | None:
        """The checkpoint whose SOTA node has the highest IC (the newest of equals); None when none has one."""
        scored = [(ic, i, p) for i, p in enumerate(self.checkpoints()) if (ic := sota_ic(p)) is not None]
        return max(scored)[2] if scored else None

    def prune(self, *, protect: Path | None = None) -> list[Path]:
        """Delete all checkpoints but the last ``keep``, ``protect`` (the one just written) and the best.

        Returns the paths deleted. Only ``loop-NNNN.tckpt`` files are ever touched.
        """
        found = self.checkpoints()
        if self.keep is None:
            return []
        keep = set(found[-self.keep :])
        if protect is not None:
            keep.add(Path(protect))  # even if the folder holds higher loop ids from another run
        if self.keep_best and (best := self.best()) is not None:
            keep.add(best)
        removed = [p for p in found if p not in keep]
        for p in removed:
            p.unlink(missing_ok=True)
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
    keep_best: bool = False,
    allow_modules: Iterable[str] = (),
    level: int | None = None,
    max_file_bytes: int | None = None,
) -> Autosaver:
    """Make an RD-Agent loop (any ``LoopBase``) checkpoint its trace after every loop it completes.

    Checkpoints go to ``directory/loop-NNNN.tckpt``; see ``Autosaver`` for pruning. Call before ``loop.run``;
    loops already finished (a loaded session, a restored trace) are not saved again.
    """
    saver = Autosaver(
        Path(directory),
        keep=keep,
        keep_best=keep_best,
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
    def kept(self) -> list[Path]:
        return self.saver.checkpoints()


def run_app(
    app: str,
    directory: PathLike,
    *,
    keep: int | None = 3,
    keep_best: bool = False,
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

    The arguments after ``directory``..``keep_best`` are those of the app's ``main``; ``setup`` (or
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
    saver = autosave(loop, directory, keep=keep, keep_best=keep_best, allow_modules=allow_modules)
    finished_before = sum(si >= len(loop.steps) for si in loop.step_idx.values())
    asyncio.run(loop.run(step_n=step_n, loop_n=loop_n, all_duration=all_duration))
    finished = sum(si >= len(loop.steps) for si in loop.step_idx.values())
    return RunReport(
        app=app, log_dir=Path(loop.session_folder).parent, saver=saver, completed_loops=finished - finished_before
    )
