"""What ``resume`` will do, worked out before RD-Agent starts and without writing anything.

The checkpoint (an autosave folder means its latest checkpoint), the restored nodes and their loop ids,
the SOTA factor set the model phase trains on, the base features, the new loop ids and the bound on them,
and what this machine offers the phase (:mod:`trace_ckpt.rdagent.preflight`). ``resume --dry-run``
prints it; ``resume`` checks the same things first.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trace_ckpt.errors import ResumeError, SaveError
from trace_ckpt.format.manifest import Manifest
from trace_ckpt.quant import sota_factor_names, sota_factor_nodes

UNBOUNDED = "none: RD-Agent runs until you stop it (Ctrl-C); give --loop-n, --step-n or --all-duration"


@dataclass
class ResumePlan:
    """What a resume would run; ``not_ready`` says why this machine cannot (None: it can)."""

    checkpoint: str
    phase: str  # model, factor or quant
    restored_nodes: int
    restored_loop_ids: list[int]
    first_loop_id: int
    new_loop_ids: list[int] | None  # None: not bounded by a loop count
    bound: str
    sota_factor_experiments: int
    sota_factors: list[str]
    base_features: dict[str, str]  # name -> Qlib expression
    base_features_from: str
    features_validated: bool | None
    log_dir: str
    workspace_root: str
    ready: list[str] = field(default_factory=list)
    not_ready: str | None = None
    feature_codes: dict[str, str] = field(default_factory=dict, repr=False)  # file name -> code
    pin_signature: bool = field(default=False, repr=False)  # the restore must check the signature again

    def to_json(self) -> str:
        """One JSON object (``resume --dry-run --json``); feature code files by name."""
        doc = asdict(self)
        doc["feature_codes"] = sorted(self.feature_codes)
        del doc["pin_signature"]
        return json.dumps(doc)

    def lines(self) -> list[str]:
        """The plan as text, one fact a line."""
        ids = self.restored_loop_ids
        new = (
            f"{self.new_loop_ids[0]}..{self.new_loop_ids[-1]}"
            if self.new_loop_ids
            else f"from {self.first_loop_id}, no loop count"
        )
        return [
            f"checkpoint: {self.checkpoint}",
            f"phase: {self.phase}",
            f"restored nodes: {self.restored_nodes} (loop ids {_ranges(ids) or 'none'})",
            f"SOTA factors: {len(self.sota_factors)} from {self.sota_factor_experiments} accepted factor "
            f"experiment(s)" + (f": {', '.join(self.sota_factors)}" if self.sota_factors else ""),
            f"base features: {len(self.base_features)} from {self.base_features_from}"
            + {True: ", validated by Qlib", False: "", None: ""}[self.features_validated],
            f"new loop ids: {new}",
            f"bound: {self.bound}",
            f"log folder: {self.log_dir}",
            f"workspace root: {self.workspace_root}",
            *(f"ready: {r}" for r in self.ready),
            *([f"NOT ready: {self.not_ready}"] if self.not_ready else []),
        ]


def _ranges(ids: list[int]) -> str:
    runs: list[list[int]] = []
    for i in sorted(set(ids)):
        if runs and runs[-1][1] == i - 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def resolve_checkpoint(ckpt: str | os.PathLike[str]) -> str:
    """``ckpt`` itself, or the latest autosave checkpoint when it names a folder (local or a URL prefix)."""
    from trace_ckpt.storage import is_folder, latest_checkpoint

    return latest_checkpoint(ckpt) if is_folder(ckpt) else str(ckpt)


def bound(loop_n: int | None, step_n: int | None, all_duration: str | None) -> str:
    """What stops the new run, in words (:data:`UNBOUNDED` when nothing does)."""
    parts = [f"{loop_n} new loop(s)" if loop_n else "", f"{step_n} step(s)" if step_n else ""]
    parts.append(f"time budget {all_duration}" if all_duration else "")
    return ", ".join(p for p in parts if p) or UNBOUNDED


def check_writable(folder: Path, what: str) -> None:
    """Refuse a folder that cannot be created or written (SaveError), creating nothing: the probe is a
    temporary file in the nearest existing folder, removed at once."""
    folder = Path(folder).absolute()
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise SaveError(f"{what} {folder} is not writable: {existing} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise SaveError(f"{what} {folder} is not writable: {e.strerror or e}") from None


def load_base_features(folder: Path) -> tuple[dict[str, str], dict[str, str]]:
    """RD-Agent's base-features folder format: ``base_factors.json`` (name -> Qlib expression) and *.py."""
    if not folder.is_dir():
        raise ResumeError(f"--base-features {folder}: no such folder")
    codes = {p.name: p.read_text() for p in sorted(folder.glob("*.py"))}
    features: dict[str, str] = {}
    spec = folder / "base_factors.json"
    if spec.exists():
        try:
            features = json.loads(spec.read_text())
        except ValueError as e:
            raise ResumeError(f"{spec} is not valid JSON ({e})") from None
        if not isinstance(features, dict) or not all(isinstance(v, str) for v in features.values()):
            raise ResumeError(f"{spec} must be a JSON object of feature name -> Qlib expression")
    elif not codes:
        raise ResumeError(f"--base-features {folder} holds neither base_factors.json nor *.py feature code")
    return features, codes


def checkpoint_plan(manifest: Manifest) -> tuple[dict[str, str], dict[str, str]]:
    """The base features and feature code files the checkpoint's loop used (its plan)."""
    plan: Any = manifest.metadata.get("plan") if isinstance(manifest.metadata, dict) else None
    return dict((plan or {}).get("features") or {}), dict((plan or {}).get("feature_codes") or {})


def make_plan(
    ckpt: str,
    manifest: Manifest,
    *,
    only: str | None,
    loop_n: int | None,
    step_n: int | None,
    all_duration: str | None,
    features: dict[str, str],
    features_from: str,
    validated: bool | None,
    log_dir: Path,
    workspace_root: Path,
) -> ResumePlan:
    """The plan of a resume of ``manifest`` (readiness is filled in by the caller)."""
    ids = [n.loop_id for n in manifest.nodes if n.loop_id is not None]
    first = max(ids, default=-1) + 1
    return ResumePlan(
        checkpoint=ckpt,
        phase=only or "quant",
        restored_nodes=len(manifest.nodes),
        restored_loop_ids=ids,
        first_loop_id=first,
        new_loop_ids=list(range(first, first + loop_n)) if loop_n else None,
        bound=bound(loop_n, step_n, all_duration),
        sota_factor_experiments=len(sota_factor_nodes(manifest.nodes)),
        sota_factors=sota_factor_names(manifest.nodes),
        base_features=dict(features),
        base_features_from=features_from,
        features_validated=validated,
        log_dir=str(Path(log_dir).absolute()),
        workspace_root=str(Path(workspace_root).absolute()),
    )
