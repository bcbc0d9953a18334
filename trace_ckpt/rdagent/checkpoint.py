"""save_trace / restore_trace: a whole RD-Agent Trace, workspaces included, to and from one file.

from trace_ckpt import save_trace, restore_trace
save_trace(trace, "run1.tckpt")                      # after the factor run
trace = restore_trace("run1.tckpt", workspace_root="ws/")   # in the model run
"""

from __future__ import annotations

import contextlib
import platform
import sys
from collections.abc import Iterable
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from trace_ckpt.checkpoint import PathLike, open_checkpoint, write_checkpoint
from trace_ckpt.codec.files import Progress
from trace_ckpt.errors import CheckpointError, CorruptCheckpointError
from trace_ckpt.format.container import FORMAT_VERSION
from trace_ckpt.format.manifest import Manifest, Producer
from trace_ckpt.quant import class_path
from trace_ckpt.rdagent.trace import (
    held_workspaces,
    iter_workspaces,
    relocation,
    summarize,
    workspace_key,
)
from trace_ckpt.settings import get_settings
from trace_ckpt.signing import configured_key


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def producer() -> Producer:
    """Versions of the packages that shape a checkpoint's content, for the manifest."""
    return Producer(
        trace_ckpt=_version("trace-ckpt") or "0+unknown",
        rdagent=_version("rdagent"),
        python=platform.python_version(),
        pandas=_version("pandas"),
        pyarrow=_version("pyarrow"),
        zstandard=_version("zstandard"),
        platform=sys.platform,
    )


def new_manifest(trace: Any, metadata: dict[str, Any] | None = None) -> Manifest:
    """The manifest of a save of ``trace``: producer versions, counts and one summary per node."""
    nodes, counts, sota = summarize(trace)
    scen = getattr(trace, "scen", None)
    return Manifest(
        format_version=FORMAT_VERSION,
        created_at=datetime.now(timezone.utc),
        producer=producer(),
        trace_class=class_path(trace),
        scenario_class=None if scen is None else class_path(scen),
        counts=counts,
        sota_index=sota,
        nodes=nodes,
        metadata=dict(metadata or {}),
    )


def save_trace(
    trace: Any,
    path: PathLike,
    *,
    level: int | None = None,
    max_file_bytes: int | None = None,
    metadata: dict[str, Any] | None = None,
    progress: Progress | None = None,
    allow_modules: Iterable[str] = (),
) -> Manifest:
    """Write ``trace`` (hist, DAG, experiments, workspace files on disk) atomically to ``path``.

    Returns the manifest written; ``level``/``max_file_bytes`` default to the TRACE_CKPT_ settings.
    A trace holding classes a load would refuse (see ``allow_modules``) is refused before writing.
    """
    if not (hasattr(trace, "hist") and hasattr(trace, "dag_parent")):
        raise CheckpointError(f"save_trace needs an RD-Agent Trace, got {type(trace).__name__}")
    settings = get_settings()
    manifest = new_manifest(trace, metadata)
    keys = list(dict.fromkeys(workspace_key(ws) for ws in iter_workspaces(trace)))
    return write_checkpoint(
        path,
        trace,
        manifest,
        keys,
        level=settings.level if level is None else level,
        threads=settings.threads,
        max_file_bytes=settings.max_file_bytes if max_file_bytes is None else max_file_bytes,
        min_blob=settings.min_blob_bytes,
        progress=progress,
        allow_modules=[*settings.allowed, *allow_modules],
        key=configured_key(settings),
    )


def default_workspace_root() -> Path:
    """RD-Agent's current ``RD_AGENT_SETTINGS.workspace_path`` (set WORKSPACE_PATH before importing rdagent)."""
    from rdagent.core.conf import RD_AGENT_SETTINGS

    return Path(RD_AGENT_SETTINGS.workspace_path)


_MISSING = object()
_STR = {str}
_PATH_TYPES = (str, Path)  # not any os.PathLike: str() of a workspace_path must be the plain path RD-Agent made


def _name(x: Any) -> str:
    """``a int``, ``a pandas.DataFrame``, ``a numpy.bool`` (numpy's is named bool too), or ``missing``."""
    if x is _MISSING:
        return "missing"
    t = type(x)
    package = t.__module__.partition(".")[0]
    return f"a {t.__qualname__}" if package == "builtins" else f"a {package}.{t.__qualname__}"


def _is_int(x: Any) -> bool:
    return type(x) is int  # not bool, not a numpy integer: what RD-Agent's own code puts there


def _selection_problem(sel: Any, n: int | None, where: str) -> str | None:
    """A selection: a tuple of node indices, -1 meaning "the latest" (below ``n`` when given)."""
    if not isinstance(sel, tuple):
        return f"{where} is {_name(sel)}, not a tuple"
    for k, i in enumerate(sel):
        if not _is_int(i):
            return f"{where}[{k}] is {_name(i)}, not an int"
        if n is not None and not -1 <= i < n:
            return f"{where}[{k}] is {i}, not -1 or a node index below {n}"
    return None


def _remember(known: set[Any], exps: Iterable[Any]) -> None:
    for exp in exps:
        with contextlib.suppress(Exception):  # an experiment class without a hash is only never skipped
            known.add(exp)


def _label(labels: dict[int, Any], key: int) -> str:
    """The path an experiment was first reached by, e.g. hist[3][0].based_experiments[1] (built only for a message)."""
    parts = []
    while True:
        parent, step = labels[key]
        parts.append(step)
        if parent is None:
            return "".join(reversed(parts))
        key = parent


def _trace_shape_problem(trace: Any) -> str | None:
    """What is wrong with ``trace`` as a Trace RD-Agent and trace-ckpt can use, or None; one linear walk."""
    from rdagent.core.experiment import Experiment, FBWorkspace, RunningInfo, Task
    from rdagent.core.proposal import ExperimentFeedback, Hypothesis, Trace

    if not isinstance(trace, Trace):
        return f"the root is {_name(trace)}, not a Trace"
    state = vars(trace)
    hist = state.get("hist", _MISSING)
    if not isinstance(hist, list):
        return f"hist is {_name(hist)}, not a list"
    n = len(hist)
    dag_parent = state.get("dag_parent", _MISSING)
    if not isinstance(dag_parent, list):
        return f"dag_parent is {_name(dag_parent)}, not a list"
    if len(dag_parent) != n:
        return f"dag_parent has {len(dag_parent)} entries for {n} nodes"
    for i, parents in enumerate(dag_parent):
        if not isinstance(parents, tuple):
            return f"dag_parent[{i}] is {_name(parents)}, not a tuple"
        for p in parents:
            # an earlier node (or the node itself, which RD-Agent's get_parents reads as a root): RD-Agent's
            # get_parents walks first parents until a root, so a later one could close a cycle it never leaves
            if not (_is_int(p) and 0 <= p <= i):
                return f"dag_parent[{i}] holds {_name(p) if not _is_int(p) else p}, not the index of node {i} or an earlier one"
    loop_ids = state.get("idx2loop_id", _MISSING)
    if not isinstance(loop_ids, dict):
        return f"idx2loop_id is {_name(loop_ids)}, not a dict"
    for i, loop_id in loop_ids.items():
        if not (_is_int(i) and 0 <= i < n):
            return f"idx2loop_id has the key {_name(i) if not _is_int(i) else i}, not a node index below {n}"
        if not _is_int(loop_id):
            return f"idx2loop_id[{i}] is {_name(loop_id)}, not an int"
    if "current_selection" in state:
        problem = _selection_problem(state["current_selection"], n, "current_selection")
        if problem:
            return problem
    quant = sys.modules.get("rdagent.scenarios.qlib.proposal.quant_proposal")  # loaded if the trace is a QuantTrace
    if quant is not None and isinstance(trace, quant.QuantTrace):
        from rdagent.scenarios.qlib.proposal.bandit import EnvController

        controller = state.get("controller", _MISSING)
        if not isinstance(controller, EnvController):
            return f"controller is {_name(controller)}, not an EnvController"

    labels: dict[int, Any] = {}  # id(experiment) -> (id of the experiment it was reached from, step)
    known: set[Any] = set()  # the experiments of labels that hash (for the fast test of based_experiments)
    stack: list[Any] = []
    for i in range(n - 1, -1, -1):
        node = hist[i]
        if not (isinstance(node, tuple) and len(node) == 2):
            return f"hist[{i}] is {_name(node)}, not an (experiment, feedback) pair"
        exp, fb = node
        if not isinstance(exp, Experiment):
            return f"hist[{i}][0] is {_name(exp)}, not an Experiment"
        if fb is not None:
            if not isinstance(fb, ExperimentFeedback):
                return f"hist[{i}][1] is {_name(fb)}, not an ExperimentFeedback"
            decision = vars(fb).get("decision", _MISSING)
            if type(decision) is not bool:
                return f"hist[{i}][1].decision is {_name(decision)}, not a bool"
        if id(exp) not in labels:
            labels[id(exp)] = (None, f"hist[{i}][0]")
            stack.append(exp)
    _remember(known, stack)
    tasks: set[int] = set()
    workspaces: set[int] = set()
    while stack:
        exp = stack.pop()
        state = vars(exp)
        sub_tasks = state.get("sub_tasks", _MISSING)
        if not isinstance(sub_tasks, (list, tuple)):
            return f"{_label(labels, id(exp))}.sub_tasks is {_name(sub_tasks)}, not a list"
        subs = state.get("sub_workspace_list", _MISSING)
        if not isinstance(subs, (list, tuple)):
            return f"{_label(labels, id(exp))}.sub_workspace_list is {_name(subs)}, not a list"
        if len(subs) != len(sub_tasks):
            return f"{_label(labels, id(exp))} has {len(subs)} sub-workspaces for {len(sub_tasks)} sub-tasks"
        for k, task in enumerate(sub_tasks):
            if id(task) not in tasks:
                problem = _task_problem(task, Task)
                if problem:
                    return f"{_label(labels, id(exp))}.sub_tasks[{k}]{problem}"
                tasks.add(id(task))
        for k, ws in enumerate((state.get("experiment_workspace", None), *subs)):
            if ws is None or id(ws) in workspaces:
                continue
            problem = _workspace_problem(ws, FBWorkspace, Task, tasks)
            if problem:
                where = ".experiment_workspace" if k == 0 else f".sub_workspace_list[{k - 1}]"
                return f"{_label(labels, id(exp))}{where}{problem}"
            workspaces.add(id(ws))
        hyp = state.get("hypothesis", None)
        if hyp is not None:
            problem = _hypothesis_problem(hyp, Hypothesis)
            if problem:
                return f"{_label(labels, id(exp))}.hypothesis{problem}"
        info = state.get("running_info", _MISSING)
        if not isinstance(info, RunningInfo):
            return f"{_label(labels, id(exp))}.running_info is {_name(info)}, not a RunningInfo"
        sel = state.get("local_selection", None)
        if sel is not None:
            # indices of the trace the experiment was made in: a based experiment's are not re-indexed by a prune
            problem = _selection_problem(sel, None, ".local_selection")
            if problem:
                return _label(labels, id(exp)) + problem
        based = state.get("based_experiments", _MISSING)
        if not isinstance(based, (list, tuple)):
            return f"{_label(labels, id(exp))}.based_experiments is {_name(based)}, not a list"
        # RD-Agent's based_experiments repeat the accepted nodes (quadratic in all): a set test at C speed skips
        # a list of experiments all seen (RD-Agent's have the default hash; on any error the loop below checks)
        with contextlib.suppress(Exception):  # an element that cannot be hashed: the loop below names it
            if known.issuperset(based):
                continue
        me = id(exp)
        for k, b in enumerate(based):
            if id(b) in labels:
                continue
            if not isinstance(b, Experiment):
                return f"{_label(labels, me)}.based_experiments[{k}] is {_name(b)}, not an Experiment"
            labels[id(b)] = (me, f".based_experiments[{k}]")
            _remember(known, (b,))
            stack.append(b)
    return None


def _task_problem(task: Any, task_class: type) -> str | None:
    if not isinstance(task, task_class):
        return f" is {_name(task)}, not a Task"
    state = vars(task)
    name = state.get("name", _MISSING)
    if not isinstance(name, str):
        return f".name is {_name(name)}, not a str"
    factor_name = state.get("factor_name", None)  # FactorTask's
    if factor_name is not None and not isinstance(factor_name, str):
        return f".factor_name is {_name(factor_name)}, not a str"
    return None


def _workspace_problem(ws: Any, ws_class: type, task_class: type, tasks: set[int]) -> str | None:
    if not isinstance(ws, ws_class):
        return f" is {_name(ws)}, not an FBWorkspace"
    state = vars(ws)
    path = state.get("workspace_path", _MISSING)
    if not isinstance(path, _PATH_TYPES):
        return f".workspace_path is {_name(path)}, not a str or Path"
    files = state.get("file_dict", _MISSING)
    if not isinstance(files, dict):
        return f".file_dict is {_name(files)}, not a dict"
    if not {*map(type, files), *map(type, files.values())} <= _STR:  # at C speed; the loop names the first
        for name, text in files.items():
            if not (type(name) is str and type(text) is str):
                return f".file_dict holds {_name(name)} -> {_name(text)}, not str -> str"
    task = state.get("target_task", None)
    if task is not None and id(task) not in tasks:
        problem = _task_problem(task, task_class)
        if problem:
            return f".target_task{problem}"
        tasks.add(id(task))
    return None


def _hypothesis_problem(hyp: Any, hyp_class: type) -> str | None:
    if not isinstance(hyp, hyp_class):
        return f" is {_name(hyp)}, not a Hypothesis"
    state = vars(hyp)
    text = state.get("hypothesis", None)
    if text is not None and not isinstance(text, str):
        return f".hypothesis is {_name(text)}, not a str"
    action = state.get("action", None)  # QlibQuantHypothesis'
    if action is not None and not isinstance(action, str):
        return f".action is {_name(action)}, not a str"
    return None


def check_trace_shape(trace: Any, source: str, *, held: bool = False) -> list[Any]:
    """Refuse (CorruptCheckpointError) a loaded object that is not a Trace shaped as RD-Agent and trace-ckpt read it.

    Checks hist, dag_parent, idx2loop_id, current_selection, a QuantTrace's controller and every reachable
    experiment, task, workspace, hypothesis and feedback. With ``held``, also returns (checked) every object of
    the graph holding a ``workspace_path`` (``held_workspaces``: knowledge base, any attribute).
    """
    problem = _trace_shape_problem(trace)
    found = held_workspaces(trace) if held and problem is None else []
    for ws in found:
        path = vars(ws).get("workspace_path", _MISSING)
        if not isinstance(path, _PATH_TYPES):
            problem = (
                f"a {type(ws).__name__} in the trace has a workspace_path that is {_name(path)}, not a str or Path"
            )
            break
    if problem:
        raise CorruptCheckpointError(f"{source}: the checkpoint is crafted or damaged: {problem}")
    return found


def restore_trace(
    path: PathLike,
    *,
    workspace_root: PathLike | None = None,
    overwrite: bool = False,
    allow_modules: Iterable[str] = (),
    require_signature: bool | None = None,
    progress: Progress | None = None,
) -> Any:
    """Load the Trace saved at ``path`` and re-create its workspace folders under ``workspace_root``.

    Every ``workspace_path`` is rewritten to ``workspace_root/<folder name>``; existing different
    files are never overwritten unless ``overwrite=True``. A signed file is checked against the
    configured key (TRACE_CKPT_SIGNING_KEY...); ``require_signature`` refuses unsigned files.
    ``progress(n_bytes, n_files)`` is told what is written, as it is written.
    """
    settings = get_settings()
    root = Path(workspace_root) if workspace_root is not None else default_workspace_root()
    allow = [*settings.allowed, *allow_modules]
    require = settings.require_signature if require_signature is None else require_signature
    with open_checkpoint(path, allow_modules=allow, key=configured_key(settings), require_signature=require) as ck:
        trace = ck.root
        # every workspace the graph holds moves under the root, listed in the files index or not: RD-Agent
        # writes into (and clears) a workspace's folder, so none may keep the path the file chose
        elsewhere = check_trace_shape(trace, str(path), held=True)
        held = {id(ws): ws for ws in (*iter_workspaces(trace), *elsewhere)}
        keys = [(ws, workspace_key(ws)) for ws in held.values()]
        names = dict.fromkeys([*ck.files.workspaces, *(key for _, key in keys)])
        mapping = relocation(list(names), root.absolute(), str(path))
        ck.materialize(mapping, overwrite=overwrite, progress=progress)
        for ws, key in keys:
            try:
                ws.workspace_path = mapping[key]
            except (AttributeError, TypeError, ValueError) as e:
                raise CorruptCheckpointError(
                    f"{path}: a {type(ws).__name__}'s workspace_path cannot be moved under {root} ({e}); "
                    "the checkpoint is crafted"
                ) from None
    return trace
