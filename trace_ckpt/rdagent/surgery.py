"""Trace surgery on checkpoints: keep some nodes, merge several runs into one trace, compare two files.

    from trace_ckpt import prune, merge, diff
    prune("run1.tckpt", "sota.tckpt", keep="sota")               # the SOTA node of each sub-trace
    prune("run1.tckpt", "last3.tckpt", keep="last:3", action="factor")
    merge(["run1.tckpt", "run2.tckpt"], "both.tckpt")           # each input becomes a sub-trace (a root)
    diff("run1.tckpt", "both.tckpt").equal

``prune`` and ``merge`` load through ``open_checkpoint`` (checksums, signature, allowlist) and write through
``write_checkpoint_carrying``: workspace files are copied from the inputs' stored blobs, so they survive
byte-exactly and need not exist on disk. ``diff`` reads manifests and file indexes only: it never
unpickles and never imports rdagent.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from trace_ckpt.checkpoint import CarriedFolder, LoadedCheckpoint, PathLike, open_checkpoint, write_checkpoint_carrying
from trace_ckpt.errors import NothingToExportError, UntrustedContentError
from trace_ckpt.format.manifest import Manifest
from trace_ckpt.quant import FACTOR_FILE, RESULT_FILE, accepted, class_path, factor_name, node_factor_name
from trace_ckpt.rdagent.checkpoint import check_trace_shape, new_manifest
from trace_ckpt.rdagent.trace import experiment_kind, iter_workspaces, workspace_key
from trace_ckpt.settings import get_settings
from trace_ckpt.signing import configured_key, configured_private_key

log = logging.getLogger("trace_ckpt")

Action = Literal["factor", "model"]
ACTIONS: tuple[str, ...] = ("factor", "model")
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


# ---------------------------------------------------------------------------------------------- selection


@dataclass(frozen=True)
class Keep:
    """Which nodes ``prune`` keeps: ``sota`` (the last accepted node of each sub-trace), ``accepted``, ``last:N``."""

    rule: Literal["sota", "accepted", "last"]
    n: int = 0

    @classmethod
    def parse(cls, spec: str | Keep) -> Keep:
        """``"sota"``, ``"accepted"`` or ``"last:N"`` (N >= 1); ValueError otherwise."""
        if isinstance(spec, Keep):
            return spec
        text = str(spec).strip().lower()
        if text in ("sota", "accepted"):
            return cls(text)  # type: ignore[arg-type]
        m = re.fullmatch(r"last:(\d+)", text)
        if m and int(m.group(1)) >= 1:
            return cls("last", int(m.group(1)))
        raise ValueError(f"{spec!r} is not one of sota, accepted, last:N (N >= 1)")

    def __str__(self) -> str:
        return f"last:{self.n}" if self.rule == "last" else self.rule


def node_action(exp: Any) -> str:
    """A node's action: its hypothesis' ``action`` (fin_quant), else its experiment kind (fin_factor, fin_model)."""
    return getattr(getattr(exp, "hypothesis", None), "action", None) or experiment_kind(exp)


def _root(parents: Sequence[tuple[int, ...]], i: int) -> int:
    seen = set()
    while parents[i] and i not in seen and 0 <= parents[i][0] < len(parents):
        seen.add(i)
        i = parents[i][0]  # RD-Agent follows the first parent (Trace.get_parents)
    return i


def select_nodes(trace: Any, keep: str | Keep, action: Action | None = None) -> list[int]:
    """The indices of ``trace.hist`` that ``keep`` selects among the nodes of ``action`` (all when None).

    ``sota`` is, per sub-trace (root tree), the last accepted node: what ``Trace.get_sota_hypothesis_and_experiment``
    returns for a one-tree trace.
    """
    rule = Keep.parse(keep)
    if action is not None and action not in ACTIONS:
        raise ValueError(f"action {action!r} is not one of {', '.join(ACTIONS)}")
    candidates = [i for i, (exp, _) in enumerate(trace.hist) if action is None or node_action(exp) == action]
    if rule.rule == "last":
        return candidates[-rule.n :]
    chosen = [i for i in candidates if accepted(trace.hist[i][1])]
    if rule.rule == "accepted":
        return chosen
    parents = [tuple(p) for p in trace.dag_parent]
    last: dict[int, int] = {}
    for i in chosen:
        last[_root(parents, i)] = i
    return sorted(last.values())


def nearest_kept(parents: Sequence[tuple[int, ...]], kept: set[int], i: int) -> tuple[int, ...]:
    """The nearest kept ancestors of node ``i`` (old indices), walking up through dropped nodes."""
    found: list[int] = []
    seen: set[int] = {i}
    stack = list(reversed(parents[i]))
    while stack:
        p = stack.pop()
        if p in seen or not 0 <= p < len(parents):
            continue
        seen.add(p)
        if p in kept:
            found.append(p)
        else:
            stack.extend(reversed(parents[p]))
    return tuple(found)


def _remap_selection(sel: Any, new: dict[int, int], parents: Sequence[tuple[int, ...]], kept: set[int]) -> Any:
    """A selection tuple in new indices: () and (-1,) ("the latest node") keep their meaning; a dropped node
    becomes its nearest kept ancestor, or () (a new root) when it has none."""
    if not isinstance(sel, tuple) or not sel or any(not isinstance(i, int) or i < 0 for i in sel):
        return sel
    out: list[int] = []
    for i in sel:
        if i in kept:
            targets: tuple[int, ...] = (i,)
        else:
            targets = nearest_kept(parents, kept, i) if i < len(parents) else ()
        out.extend(new[j] for j in targets if new[j] not in out)
    return tuple(out)


def keep_nodes(trace: Any, indices: Sequence[int]) -> Any:
    """Reduce ``trace`` in place to the nodes ``indices`` (in hist order), re-indexing ``dag_parent``,
    ``idx2loop_id``, ``current_selection`` and the kept experiments' ``local_selection``; return it."""
    kept_list = sorted(set(indices))
    kept = set(kept_list)
    new = {old: k for k, old in enumerate(kept_list)}
    parents = [tuple(p) for p in trace.dag_parent]
    hist = [trace.hist[i] for i in kept_list]
    trace.dag_parent = [tuple(new[p] for p in nearest_kept(parents, kept, i)) for i in kept_list]
    trace.idx2loop_id = {new[i]: trace.idx2loop_id[i] for i in kept_list if i in trace.idx2loop_id}
    if hasattr(trace, "current_selection"):
        trace.current_selection = _remap_selection(trace.current_selection, new, parents, kept)
    for exp in {id(e): e for e, _ in hist}.values():
        if hasattr(exp, "local_selection"):
            exp.local_selection = _remap_selection(exp.local_selection, new, parents, kept)
    trace.hist = hist
    return trace


# ------------------------------------------------------------------------------------------- load / write


@contextlib.contextmanager
def _load(path: PathLike, allow_modules: Sequence[str], require_signature: bool | None) -> Iterator[LoadedCheckpoint]:
    settings = get_settings()
    require = settings.require_signature if require_signature is None else require_signature
    with open_checkpoint(
        path, allow_modules=[*settings.allowed, *allow_modules], key=configured_key(settings), require_signature=require
    ) as ck:
        check_trace_shape(ck.root, str(path))
        yield ck


def _write(
    trace: Any,
    out: PathLike,
    folders: dict[str, CarriedFolder],
    metadata: dict[str, Any],
    level: int | None,
    allow_modules: Sequence[str],
    sources: Sequence[LoadedCheckpoint],
) -> Manifest:
    """Write a pruned or merged trace, signed only when a key of yours verified every source: signing content
    nobody here vouched for would make resume trust a stranger's file."""
    settings = get_settings()
    manifest = new_manifest(trace, metadata)
    unverified = [ck._reader.source for ck in sources if ck.signature != "ok"]
    key = configured_key(settings)
    if unverified and (key or configured_private_key()):  # it would have been signed
        log.warning(
            "%s is written unsigned: %s %s not verified by a key of yours",
            out,
            ", ".join(unverified),
            "is" if len(unverified) == 1 else "are",
        )
    return write_checkpoint_carrying(
        out,
        trace,
        manifest,
        folders,
        level=settings.level if level is None else level,
        threads=settings.threads,
        min_blob=settings.min_blob_bytes,
        allow_modules=[*settings.allowed, *allow_modules],
        key=key,
        sign=not unverified,
    )


def _workspace_keys(trace: Any) -> list[str]:
    return list(dict.fromkeys(workspace_key(ws) for ws in iter_workspaces(trace)))


# -------------------------------------------------------------------------------------------------- prune


@dataclass
class PruneReport:
    """What ``prune`` wrote: the manifest, the old indices of the kept nodes (new order), how many were dropped."""

    manifest: Manifest
    kept: list[int]
    dropped: int


def prune(
    ckpt: PathLike,
    out: PathLike,
    *,
    keep: str | Keep,
    action: Action | None = None,
    level: int | None = None,
    allow_modules: Sequence[str] = (),
    require_signature: bool | None = None,
) -> PruneReport:
    """Write to ``out`` a checkpoint of only the nodes ``keep`` selects (among ``action``'s nodes when given).

    A kept node hangs from its nearest kept ancestor (or becomes a root); workspaces of dropped nodes go,
    unless a kept node still uses them through ``based_experiments``.
    """
    rule = Keep.parse(keep)
    with _load(ckpt, allow_modules, require_signature) as ck:
        trace = ck.root
        total = len(trace.hist)
        indices = select_nodes(trace, rule, action)
        if not indices:
            what = f"{action} node" if action else "node"
            raise NothingToExportError(f"{ckpt}: --keep {rule} selects no {what} of its {total}; nothing written")
        keep_nodes(trace, indices)
        metadata = dict(ck.manifest.metadata)
        metadata["pruned_from"] = {
            "path": str(ckpt),
            "created_at": ck.manifest.created_at.isoformat(),
            "nodes": total,
            "keep": str(rule),
            "action": action,
            "kept": indices,
        }
        # Workspace files are carried over from the source's blobs rather than materialized and re-captured:
        # no temporary copy of every folder, no dependence on the disk, and the bytes cannot change on the way.
        folders = {key: CarriedFolder(ck, key) for key in _workspace_keys(trace)}
        manifest = _write(trace, out, folders, metadata, level, allow_modules, [ck])
    return PruneReport(manifest, indices, total - len(indices))


# -------------------------------------------------------------------------------------------------- merge


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


def merge(
    inputs: Sequence[PathLike],
    out: PathLike,
    *,
    level: int | None = None,
    allow_modules: Sequence[str] = (),
    require_signature: bool | None = None,
) -> MergeReport:
    """Write to ``out`` one trace holding every input's nodes, in input order, each input a separate sub-trace.

    The trace class, scenario and plan are the first input's. Across inputs, an identical SOTA factor.py is
    stored and counted once, and a SOTA factor name already taken by other code is renamed ``<name>_in<k>``.
    """
    if len(inputs) < 2:
        raise ValueError("merge needs at least two checkpoints")
    with contextlib.ExitStack() as stack:
        cks = [stack.enter_context(_load(p, allow_modules, require_signature)) for p in inputs]
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
        manifest = _write(merged, out, folders, metadata, level, allow_modules, cks)
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
    cks: Sequence[LoadedCheckpoint],
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


# --------------------------------------------------------------------------------------------------- diff


@dataclass
class NodeChange:
    """One difference at node ``index`` (aligned by position in ``hist``)."""

    index: int
    what: str
    a: Any
    b: Any


@dataclass
class FilesChange:
    """Files that differ (content, presence, kind) in one workspace folder of node ``index``."""

    index: int
    workspace: str  # "experiment workspace" or "sub-workspace <factor name>"
    paths: list[str]


@dataclass
class FactorChange:
    """A SOTA factor whose code differs, or that only one side has (None = absent); values are factor.py content digests."""

    name: str
    a: list[str] | None
    b: list[str] | None


@dataclass
class TraceDiff:
    """What differs between two checkpoints: trace header, nodes (by position), SOTA factors."""

    a: str
    b: str
    nodes_a: int
    nodes_b: int
    header: list[NodeChange] = field(default_factory=list)  # index -1: the trace itself
    nodes: list[NodeChange] = field(default_factory=list)
    files: list[FilesChange] = field(default_factory=list)
    factors: list[FactorChange] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return not (self.header or self.nodes or self.files or self.factors) and self.nodes_a == self.nodes_b

    def lines(self) -> list[str]:
        """The differences, one per line (a summary line when there are none)."""
        if self.equal:
            return [f"no differences: {self.nodes_a} nodes, same decisions, metrics, factors and files"]
        out = [f"A: {self.a} ({self.nodes_a} nodes)   B: {self.b} ({self.nodes_b} nodes)"]
        out += [f"{c.what}: {_show(c.a)} -> {_show(c.b)}" for c in self.header]
        if self.nodes_a != self.nodes_b:
            side = "A" if self.nodes_a > self.nodes_b else "B"
            out.append(
                f"nodes only in {side}: {_ranges(range(min(self.nodes_a, self.nodes_b), max(self.nodes_a, self.nodes_b)))}"
            )
        out += [f"node {c.index}: {c.what}: {_show(c.a)} -> {_show(c.b)}" for c in self.nodes]
        out += [f"node {c.index}: files of the {c.workspace} differ: {', '.join(c.paths)}" for c in self.files]
        for f in self.factors:
            if f.a is None or f.b is None:
                out.append(f"SOTA factor {f.name}: only in {'B' if f.a is None else 'A'}")
            else:
                out.append(f"SOTA factor {f.name}: code differs ({_short(f.a)} -> {_short(f.b)})")
        return out


def _show(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.6g}"
    if isinstance(x, list):
        return "[" + ", ".join(_show(v) for v in x) + "]"
    return "-" if x is None else str(x)


def _short(digests: list[str]) -> str:
    return ",".join(d[:12] for d in digests) or "-"


def _ranges(r: range) -> str:
    return str(r.start) if len(r) == 1 else f"{r.start}-{r.stop - 1}"


def _read_index(
    path: PathLike, require: bool, algorithm: str | None = None
) -> tuple[Manifest, dict[str, dict[str, Any]]]:
    """The manifest and files index of a checkpoint (its signature checked as every reader checks it); with
    ``algorithm`` (another than the file's, as when a v1 file is compared with a v2 one) its file digests are
    recomputed from the stored bytes with it."""
    from trace_ckpt.checkpoint import check_signature
    from trace_ckpt.codec.blobs import BlobSource
    from trace_ckpt.codec.files import FilesIndex
    from trace_ckpt.format.container import ContainerReader, new_hash
    from trace_ckpt.storage import open_read

    with open_read(path) as f:
        reader = ContainerReader(f, source=str(path))
        check_signature(reader, configured_key(), require)
        blobs = BlobSource(reader)  # a v3 files index names blobs by their number in the blob index
        files = FilesIndex.read(reader, blobs).workspaces
        if algorithm is None or algorithm == reader.hash_algorithm:
            return reader.manifest, files
        entries = [e for ws in files.values() for e in ws.get("entries", []) if e.get("type") == "file"]
        address: dict[str, str] = {}
        for digest in blobs.in_file_order({e.get("digest") for e in entries} & blobs.index.keys()):
            h = new_hash(algorithm)
            for chunk in blobs.chunks(digest):
                h.update(chunk)
            address[digest] = str(h.hexdigest())
        for e in entries:
            e["digest"] = address.get(e.get("digest"), e.get("digest"))
        return reader.manifest, files


def _tree(files: dict[str, dict[str, Any]], key: str | None) -> dict[str, tuple] | None:
    ws = files.get(key) if key is not None else None
    if not ws or not ws.get("exists", False):
        return None
    # a symlink counts by presence: its target names a folder (the data) of the machine that ran RD-Agent
    return {
        str(e.get("path")): (
            e.get("type"),
            e.get("digest") if e.get("type") == "file" else e.get("size") if e.get("type") == "skipped" else None,
        )
        for e in ws.get("entries", [])
    }


def _tree_change(a: dict | None, b: dict | None) -> list[str]:
    if a == b:
        return []
    if a is None or b is None:
        return [f"(no folder in {'A' if a is None else 'B'})"]
    return sorted(p for p in a.keys() | b.keys() if a.get(p) != b.get(p))


def _sota_code(m: Manifest, files: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, set[str]] = {}
    for n in m.nodes:
        if not (n.decision and n.kind == "factor"):
            continue
        for i, key in enumerate(n.sub_workspaces):
            tree = _tree(files, key) or {}
            entry = tree.get(FACTOR_FILE)
            if entry and entry[0] == "file":
                out.setdefault(node_factor_name(n, i), set()).add(entry[1])
    return {name: sorted(d) for name, d in out.items()}


def diff(a: PathLike, b: PathLike, *, require_signature: bool | None = None) -> TraceDiff:
    """Compare two checkpoints from their manifests and file indexes (nothing is unpickled): nodes by position
    (decision, parents, loop id, kind, hypothesis, factors, metrics, workspace files) and the SOTA factors' code."""
    from trace_ckpt.errors import CorruptCheckpointError

    require = get_settings().require_signature if require_signature is None else require_signature
    ma, fa = _read_index(a, require)
    mb, fb = _read_index(b, require, ma.hash_algorithm)  # files are compared by digest: B's are made A's kind
    try:
        return _compare(str(a), str(b), ma, fa, mb, fb)
    except (AttributeError, TypeError, KeyError, IndexError) as e:  # a checksum-valid but malformed files index
        raise CorruptCheckpointError(
            f"cannot compare {a} and {b}: a files index has an unexpected shape ({type(e).__name__}: {e})"
        ) from None


def _compare(
    a: str, b: str, ma: Manifest, fa: dict[str, dict[str, Any]], mb: Manifest, fb: dict[str, dict[str, Any]]
) -> TraceDiff:
    d = TraceDiff(a, b, len(ma.nodes), len(mb.nodes))
    for what in ("trace_class", "scenario_class"):
        if getattr(ma, what) != getattr(mb, what):
            d.header.append(NodeChange(-1, what.replace("_", " "), getattr(ma, what), getattr(mb, what)))
    for na, nb in zip(ma.nodes, mb.nodes):
        i = na.index
        for what, x, y in (
            ("decision", na.decision, nb.decision),
            ("parents", na.parents, nb.parents),
            ("loop id", na.loop_id, nb.loop_id),
            ("kind", na.kind, nb.kind),
            ("action", na.action, nb.action),
            ("experiment class", na.experiment_class, nb.experiment_class),
            ("hypothesis", na.hypothesis, nb.hypothesis),
            ("factors", na.factors, nb.factors),
        ):
            if x != y:
                d.nodes.append(NodeChange(i, what, x, y))
        for k in sorted(na.metrics.keys() | nb.metrics.keys()):
            if na.metrics.get(k) != nb.metrics.get(k):
                d.nodes.append(NodeChange(i, k, na.metrics.get(k), nb.metrics.get(k)))
        spaces = [("experiment workspace", na.experiment_workspace, nb.experiment_workspace)]
        for s in range(max(len(na.sub_workspaces), len(nb.sub_workspaces))):
            name = na.factors[s] if s < len(na.factors) else str(s)
            spaces.append(
                (
                    f"sub-workspace {name}",
                    na.sub_workspaces[s] if s < len(na.sub_workspaces) else None,
                    nb.sub_workspaces[s] if s < len(nb.sub_workspaces) else None,
                )
            )
        for what, ka, kb in spaces:
            changed = _tree_change(_tree(fa, ka), _tree(fb, kb))
            if changed:
                d.files.append(FilesChange(i, what, changed))
    ca, cb = _sota_code(ma, fa), _sota_code(mb, fb)
    for name in sorted(ca.keys() | cb.keys()):
        if ca.get(name) != cb.get(name):
            d.factors.append(FactorChange(name, ca.get(name), cb.get(name)))
    return d
