"""Merge: several checkpoints' traces into one, each input a sub-trace (a root) of the merged trace.

    from trace_ckpt.rdagent.merge import merge
    merge(["run1.tckpt", "run2.tckpt"], "both.tckpt")

Across inputs an identical SOTA factor.py is stored and counted once, and a SOTA factor name already taken by
other code is renamed ``<name>_in<k>`` (in the task and, through a trailer, in the values its code writes).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trace_ckpt.ckpt import Checkpoint, PathLike
from trace_ckpt.errors import UntrustedContentError
from trace_ckpt.format.manifest import Manifest
from trace_ckpt.pipeline import CarriedFolder
from trace_ckpt.quant import FACTOR_FILE, RESULT_FILE, accepted, class_path, factor_name
from trace_ckpt.rdagent.logs import without_rdagent_logs
from trace_ckpt.rdagent.rewrite import load_for_surgery, write_surgery
from trace_ckpt.rdagent.trace import experiment_kind, iter_workspaces, workspace_key

# Appended to the factor.py of a renamed factor: RD-Agent names a factor's data column after what its code
# writes, so only the code itself can carry the new name into every re-execution (model and factor runners).
RENAME_TRAILER = """

# --- trace-ckpt merge: factor {old!r} renamed to {new!r} (another merged input has a different {old!r}) ---
import pandas as _tckpt_pd
_tckpt_values = _tckpt_pd.read_hdf({result!r})
if isinstance(_tckpt_values, _tckpt_pd.Series):
    _tckpt_values = _tckpt_values.to_frame()
if _tckpt_values.shape[1] == 1:
    _tckpt_values.columns = [{new!r}]
else:
    _tckpt_values = _tckpt_values.rename(columns={{{old!r}: {new!r}}})
_tckpt_values.to_hdf({result!r}, key="data", mode="w")
"""


@dataclass
class FactorRename:
    """A SOTA factor renamed by ``merge``: its name clashed with a different factor of an earlier input."""

    node: int  # index in the merged trace
    old: str
    new: str


@dataclass
class FactorDuplicate:
    """A SOTA factor whose factor.py equals one of an earlier input: node ``node`` now uses ``same_as``'s workspace."""

    node: int
    name: str
    same_as: int


@dataclass
class MergeReport:
    """What ``merge`` wrote: the manifest, where each input's nodes start, renamed and shared factors, notes."""

    manifest: Manifest
    first_index: list[int]
    renamed: list[FactorRename] = field(default_factory=list)
    duplicates: list[FactorDuplicate] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def factor_code(ws: Any) -> str | None:
    """The factor.py text RD-Agent executes for a factor workspace (its ``file_dict``), or None."""
    code = (getattr(ws, "file_dict", None) or {}).get(FACTOR_FILE) if ws is not None else None
    return code if isinstance(code, str) else None


def code_hash(code: str) -> str:
    """SHA-256 of a factor's code: what makes two factor implementations "the same"."""
    return hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest()


def _sota_factors(hist: Sequence[Any]) -> Iterator[tuple[int, Any, int, Any, Any]]:
    """(node, experiment, sub-task position, task, workspace) of every implemented factor of an accepted node."""
    for i, (exp, fb) in enumerate(hist):
        if not accepted(fb) or experiment_kind(exp) != "factor":
            continue
        tasks = list(getattr(exp, "sub_tasks", None) or [])
        for s, ws in enumerate(list(getattr(exp, "sub_workspace_list", None) or [])):
            if factor_code(ws) is not None:
                yield i, exp, s, (tasks[s] if s < len(tasks) else getattr(ws, "target_task", None)), ws


def _renamed_values(data: bytes, old: str, new: str, where: str) -> bytes:
    """The captured result.h5 with the factor's column renamed as RENAME_TRAILER renames it."""
    import pandas as pd

    from trace_ckpt.codec.hdf import factor_values_bytes, read_factor_values

    values = read_factor_values(data, f"{where}/{RESULT_FILE}")
    if isinstance(values, pd.Series):
        values = values.to_frame()
    if values.shape[1] == 1:
        values.columns = [new]
    else:
        values = values.rename(columns={old: new})
    return factor_values_bytes(values)


def _shift(sel: Any, offset: int) -> Any:
    if not isinstance(sel, tuple) or not sel or any(not isinstance(i, int) or i < 0 for i in sel):
        return sel  # () and (-1,) keep their meaning
    return tuple(i + offset for i in sel)


@without_rdagent_logs  # no RD-Agent log files in the current folder
def merge(
    inputs: Sequence[PathLike],
    out: PathLike,
    *,
    level: int | None = None,
    allow_modules: Sequence[str] = (),
    require_signature: bool | None = None,
    overwrite: bool | None = None,
) -> MergeReport:
    """Write to ``out`` one trace holding every input's nodes, in input order, each input a separate sub-trace.

    The trace class, scenario and plan are the first input's. Across inputs, an identical SOTA factor.py is
    stored and counted once, and a SOTA factor name already taken by other code is renamed ``<name>_in<k>``.
    """
    if len(inputs) < 2:
        raise ValueError("merge needs at least two checkpoints")
    with contextlib.ExitStack() as stack:
        cks = [stack.enter_context(load_for_surgery(p, allow_modules, require_signature)) for p in inputs]
        traces = [ck.root for ck in cks]
        sizes = [len(t.hist) for t in traces]
        notes: list[str] = []
        origin: dict[int, int] = {}  # id(workspace) -> input it was loaded from
        for k, t in enumerate(traces):
            for ws in iter_workspaces(t):
                origin.setdefault(id(ws), k)
            if type(t) is not type(traces[0]):
                notes.append(
                    f"{inputs[k]} holds a {class_path(t)}; the merged trace is a {class_path(traces[0])}, like the first input"
                )
            if cks[k].manifest.metadata.get("plan") != cks[0].manifest.metadata.get("plan"):
                notes.append(
                    f"{inputs[k]} has other base features (plan) than the first input; the first input's are kept"
                )

        first_index, hist, dag_parent, idx2loop_id = [], [], [], {}
        loop_base = 0
        for t in traces:
            offset = len(hist)
            first_index.append(offset)
            hist.extend(t.hist)
            dag_parent.extend(tuple(p + offset for p in parents) for parents in t.dag_parent)
            # loop ids stay unique: input k's are shifted past every loop id of the inputs before it
            idx2loop_id.update({i + offset: lid + loop_base for i, lid in t.idx2loop_id.items()})
            for exp in {id(e): e for e, _ in t.hist}.values():
                if hasattr(exp, "local_selection"):
                    exp.local_selection = _shift(exp.local_selection, offset)
            loop_base += max(t.idx2loop_id.values(), default=-1) + 1
        last = traces[-1]
        current_selection = _shift(getattr(last, "current_selection", (-1,)), first_index[-1])

        renamed, duplicates, replaced = _merge_factors(traces, first_index)

        merged = traces[0]  # its class, scenario, knowledge base (and a QuantTrace's controller)
        merged.hist, merged.dag_parent, merged.idx2loop_id = hist, dag_parent, idx2loop_id
        merged.current_selection = current_selection

        folders = _merge_folders(merged, cks, origin, replaced, notes)
        provenance = ("source", "pruned_from", "merged_from", "merge")
        metadata = {key: v for key, v in cks[0].manifest.metadata.items() if key not in provenance}
        metadata["merged_from"] = [
            {
                "path": str(p),
                "created_at": ck.manifest.created_at.isoformat(),
                "nodes": sizes[k],
                "first_index": first_index[k],
                "trace_class": ck.manifest.trace_class,
                "source": ck.manifest.metadata.get("source"),
            }
            for k, (p, ck) in enumerate(zip(inputs, cks))
        ]
        metadata["merge"] = {"renamed": [asdict(r) for r in renamed], "duplicates": [asdict(d) for d in duplicates]}
        manifest = write_surgery(merged, out, folders, metadata, level, allow_modules, cks, overwrite)
    return MergeReport(manifest, first_index, renamed, duplicates, notes)


def _merge_factors(
    traces: Sequence[Any], first_index: Sequence[int]
) -> tuple[list[FactorRename], list[FactorDuplicate], dict[int, tuple[str, str]]]:
    """Share identical SOTA factor implementations and rename clashing names, input by input, in place."""
    renamed: list[FactorRename] = []
    duplicates: list[FactorDuplicate] = []
    replaced: dict[int, tuple[str, str]] = {}  # id(workspace) -> (old name, new name)
    taken = {factor_name(task) for t in traces for _, _, _, task, _ in _sota_factors(t.hist)}
    by_code: dict[str, tuple[int, Any]] = {}  # code hash -> (merged node, workspace) of its first SOTA implementation
    by_name: dict[str, set[str]] = {}  # SOTA factor name -> code hashes, over the inputs before this one
    for k, t in enumerate(traces):
        seen_code: dict[str, tuple[int, Any]] = {}
        seen_name: dict[str, set[str]] = {}
        new_names: dict[str, str] = {}
        for j, exp, s, task, ws in list(_sota_factors(t.hist)):
            node, name, h = first_index[k] + j, factor_name(task), code_hash(factor_code(ws) or "")
            if h in by_code:  # the same code is SOTA in an earlier input: one implementation, counted once
                first_node, first_ws = by_code[h]
                subs = list(exp.sub_workspace_list)
                subs[s] = first_ws
                exp.sub_workspace_list = subs
                duplicates.append(FactorDuplicate(node, name, first_node))
                old, new = replaced.get(id(first_ws), (None, None))
                if name == old and hasattr(task, "factor_name"):  # that implementation was renamed: so is its twin
                    task.factor_name = new
                    renamed.append(FactorRename(node, name, new))
                continue
            if name in by_name and h not in by_name[name]:
                if name not in new_names:
                    n, candidate = 1, f"{name}_in{k + 1}"
                    while candidate in taken:
                        n += 1
                        candidate = f"{name}_in{k + 1}_{n}"
                    taken.add(candidate)
                    new_names[name] = candidate
                new = new_names[name]
                for obj in {id(o): o for o in (task, getattr(ws, "target_task", None)) if o is not None}.values():
                    if factor_name(obj) == name and hasattr(obj, "factor_name"):
                        obj.factor_name = new
                ws.file_dict[FACTOR_FILE] = factor_code(ws) + RENAME_TRAILER.format(
                    old=name, new=new, result=RESULT_FILE
                )
                if getattr(ws, "ws_ckp", None) is not None:
                    ws.ws_ckp = None  # a snapshot of the folder from before the rename would undo it
                replaced[id(ws)] = (name, new)
                renamed.append(FactorRename(node, name, new))
                name = new
            seen_code.setdefault(h, (node, ws))
            seen_name.setdefault(name, set()).add(h)
        for h, v in seen_code.items():
            by_code.setdefault(h, v)
        for name, hashes in seen_name.items():
            by_name.setdefault(name, set()).update(hashes)
    return renamed, duplicates, replaced


def _same_folder(a: CarriedFolder, b: CarriedFolder) -> bool:
    """Whether two workspaces can share one stored folder: neither rewritten, and the same entries."""
    if a.replace or b.replace:
        return False
    return (a.source is b.source and a.key == b.key) or (
        a.source.files.workspaces.get(a.key) == b.source.files.workspaces.get(b.key)
    )


def _renamed_files(ws: Any, names: tuple[str, str], where: str, notes: list[str]) -> dict[str, Any]:
    """The files of a renamed factor's folder that change: factor.py (with the trailer) and its captured values."""
    old, new = names

    def rename_values(data: bytes) -> bytes:
        try:
            return _renamed_values(data, old, new, where)
        except UntrustedContentError:  # values that could run code when read are refused, never carried on
            raise
        except Exception as e:  # noqa: BLE001 - unreadable values only cost a re-execution of the factor
            notes.append(
                f"{where}/{RESULT_FILE} of factor {old} could not be renamed ({type(e).__name__}); kept as it was"
            )
            return data

    return {FACTOR_FILE: (factor_code(ws) or "").encode("utf-8", "surrogatepass"), RESULT_FILE: rename_values}


def _merge_folders(
    merged: Any,
    cks: Sequence[Checkpoint],
    origin: dict[int, int],
    replaced: dict[int, tuple[str, str]],
    notes: list[str],
) -> dict[str, CarriedFolder]:
    """The merged trace's workspace folders, carried from the input each came from.

    Two inputs holding the same folder path (checkpoints of one run) share it when its entries are the same;
    otherwise the later input's folder is stored under ``<path>-in<k>`` and its workspaces point there.
    """
    folders: dict[str, CarriedFolder] = {}
    for ws in iter_workspaces(merged):
        k = origin[id(ws)]
        ck = cks[k]
        key = workspace_key(ws)
        replace = _renamed_files(ws, replaced[id(ws)], key, notes) if id(ws) in replaced else None
        new_key, n = key, 0
        while new_key in folders and not _same_folder(folders[new_key], CarriedFolder(ck, key, replace)):
            n += 1
            new_key = f"{key}-in{k + 1}" + (f"-{n}" if n > 1 else "")
        if new_key != key:
            ws.workspace_path = Path(new_key)
        folders.setdefault(new_key, CarriedFolder(ck, key, replace))
    return folders
