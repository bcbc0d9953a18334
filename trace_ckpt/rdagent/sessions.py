"""RD-Agent run folders in: find the right session dump and load it with RD-Agent's own secure loader.

A run folder looks like ``log/<run>/__session__/<loop>/<step>_<name>``; every step re-dumps the whole
loop object (signed by rdagent >= 1.0). We pick the last step of the last loop (or of ``--loop N``),
skip a half-written last dump with a warning, and load it through ``rdagent.core.serialization`` so the
signing key and the refusal of unsigned legacy dumps apply.
"""

from __future__ import annotations

import logging
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trace_ckpt.errors import (
    CheckpointError,
    CheckpointNotFoundError,
    CorruptCheckpointError,
    MissingClassError,
    UntrustedContentError,
)
from trace_ckpt.quant import class_path
from trace_ckpt.rdagent.logs import without_rdagent_logs

log = logging.getLogger("trace_ckpt")
_STEP = re.compile(r"^(\d+)_(.+)$")
_COMPONENTS = ("hypothesis_gen", "hypothesis2experiment", "coder", "runner", "summarizer")


@dataclass(frozen=True)
class SessionDump:
    """One dump file: ``__session__/<loop>/<step>_<name>``."""

    path: Path
    loop: int
    step: int
    name: str


def session_folder(source: Path) -> Path:
    """The ``__session__`` folder of a run folder (or the folder itself)."""
    if source.name == "__session__":
        return source
    if (source / "__session__").is_dir():
        return source / "__session__"
    raise CheckpointNotFoundError(
        f"{source} holds no __session__ folder: pass RD-Agent's log folder of the run (log/<run>) or one session file"
    )


def list_dumps(folder: Path) -> list[SessionDump]:
    """Every step dump in a ``__session__`` folder, in (loop, step) order."""
    dumps = []
    for loop_dir in folder.iterdir():
        if not (loop_dir.is_dir() and loop_dir.name.isdigit()):
            continue
        for f in loop_dir.iterdir():
            m = _STEP.match(f.name)
            if m and f.is_file():
                dumps.append(SessionDump(f, int(loop_dir.name), int(m.group(1)), m.group(2)))
    return sorted(dumps, key=lambda d: (d.loop, d.step))


def _not_a_dump(path: Path, data: bytes) -> str | None:
    """What ``data`` is when it is no RD-Agent session dump (signed, or a legacy pickle), else None."""
    from rdagent.core.serialization import _MAGIC

    from trace_ckpt.format.container import MAGIC

    if data.startswith(_MAGIC) or data[:1] == b"\x80":  # signed, or a pickle of protocol 2 or later
        return None
    if not data:
        return f"{path} is empty, not an RD-Agent session dump"
    if data.startswith(MAGIC):
        return f"{path} is a trace-ckpt checkpoint, not an RD-Agent session dump: use inspect, resume or prune on it"
    if b"\x00" in data[:4096]:
        return f"{path} is not an RD-Agent session dump (unknown binary data)"
    return f"{path} is a text file, not an RD-Agent session dump"


def _load_one(path: Path, trust_legacy: bool) -> Any:
    from rdagent.core.serialization import UntrustedArtifactError, loads

    data = path.read_bytes()
    what = _not_a_dump(path, data)
    if what is not None:
        raise CorruptCheckpointError(f"{what} (give the run's log folder, log/<run>, or a __session__ step file)")
    try:
        return loads(data, allow_unsafe_legacy=True if trust_legacy else None)
    except UntrustedArtifactError as e:
        if "legacy" in str(e).lower():
            raise UntrustedContentError(
                f"{path} is an unsigned (pre-1.0) RD-Agent dump; if you trust it, pass --trust-legacy"
            ) from None
        raise UntrustedContentError(
            f"{path}: RD-Agent's signature check failed (damaged, or signed with another key: set "
            "ARTIFACT_SIGNING_KEY or copy ~/.rdagent/artifact_signing.key from the machine that ran RD-Agent)"
        ) from None
    except ModuleNotFoundError as e:
        raise MissingClassError(
            f"{path} needs module {e.name!r}, which is not importable here: install it or add its folder to "
            "PYTHONPATH (session dumps pickle every component class of the loop)"
        ) from None
    except AttributeError as e:
        raise MissingClassError(
            f"{path} needs a class that is missing here ({e}); use the same code version that ran RD-Agent"
        ) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError) as e:
        raise CorruptCheckpointError(f"{path} is not a complete session dump ({type(e).__name__}: {e})") from None


def session_dump(path: Path) -> SessionDump:
    """Describe one dump file by its place, ``<loop>/<step>_<name>`` (-1 where the name does not say)."""
    path = Path(path)
    m = _STEP.match(path.name)
    return SessionDump(
        path,
        int(path.parent.name) if path.parent.name.isdigit() else -1,
        int(m.group(1)) if m else -1,
        m.group(2) if m else path.name,
    )


@without_rdagent_logs  # unpickling imports RD-Agent's modules, whose logger would write ./log/<time>/
def load_session(source: str | Path, *, loop: int | None = None, trust_legacy: bool = False) -> tuple[Any, SessionDump]:
    """The loop object of a run: the latest complete dump (of loop ``loop`` when given)."""
    src = Path(source)
    if not src.exists():
        raise CheckpointNotFoundError(f"no such file or folder: {src}")
    if src.is_file():
        return _load_one(src, trust_legacy), session_dump(src)
    dumps = list_dumps(session_folder(src))
    if loop is not None:
        dumps = [d for d in dumps if d.loop == loop]
        if not dumps:
            raise CheckpointNotFoundError(f"{src} has no session dump for loop {loop}")
    if not dumps:
        raise CheckpointNotFoundError(f"{src} has an empty __session__ folder: the run wrote no step yet")
    last = dumps[-1]
    try:
        return _load_one(last.path, trust_legacy), last
    except (CorruptCheckpointError, UntrustedContentError) as first_error:
        if len(dumps) < 2 or (isinstance(first_error, UntrustedContentError) and "unsigned" in str(first_error)):
            raise
        prev = dumps[-2]
        try:
            obj = _load_one(prev.path, trust_legacy)
        except CheckpointError:
            raise first_error from None
        log.warning("skipped %s (half-written: %s); using %s", last.path, first_error, prev.path)
        return obj, prev


def loop_metadata(loop_obj: Any, dump: SessionDump) -> dict[str, Any]:
    """What the manifest keeps of the loop: where it came from, its components and its plan."""
    components = {}
    for name in _COMPONENTS:
        comp = getattr(loop_obj, name, None)
        if comp is not None:
            components[name] = class_path(comp)
    plan = getattr(loop_obj, "plan", None)
    plan_doc = None
    if isinstance(plan, dict):
        plan_doc = {
            "features": dict(plan.get("features") or {}),
            "feature_codes": dict(plan.get("feature_codes") or {}),
        }
    return {
        "source": {
            "kind": "rdagent-session",
            "path": str(dump.path),
            "loop": dump.loop,
            "step": dump.step,
            "step_name": dump.name,
            "loop_class": class_path(loop_obj),
        },
        "components": components,
        "plan": plan_doc,
    }
