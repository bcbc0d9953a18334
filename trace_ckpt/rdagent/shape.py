"""Is a loaded object a Trace shaped as RD-Agent and trace-ckpt read it? ``check_trace_shape`` says, in one walk.

The restricted unpickler decides which classes a checkpoint may build; this module checks what their fields hold
(a crafted file can put a DataFrame where RD-Agent reads a str), so a restore or a prune fails with one line
instead of an exception deep inside RD-Agent.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from trace_ckpt.errors import CorruptCheckpointError
from trace_ckpt.rdagent.trace import held_workspaces

_MISSING = object()
_STR = {str}
_PATH_TYPES = (str, Path)  # not any os.PathLike: str() of a workspace_path must be the plain path RD-Agent made


class _Bad(Exception):
    """What is wrong, said from the object being checked (``.name is a int, not a str``); callers prefix the path."""


def _name(x: Any) -> str:
    """``a int``, ``a pandas.DataFrame``, ``a numpy.bool`` (numpy's is named bool too), or ``missing``."""
    if x is _MISSING:
        return "missing"
    t = type(x)
    package = t.__module__.partition(".")[0]
    return f"a {t.__qualname__}" if package == "builtins" else f"a {package}.{t.__qualname__}"


def _is_int(x: Any) -> bool:
    return type(x) is int  # not bool, not a numpy integer: what RD-Agent's own code puts there


def _check(ok: bool, value: Any, where: str, what: str) -> None:
    """The one field check: unless ``ok``, ``where`` is ``value``'s kind, not ``what``."""
    if not ok:
        raise _Bad(f"{where} is {_name(value)}, not {what}")


def _field(
    state: dict[str, Any], name: str, types: type | tuple[type, ...], what: str, *, optional: bool = False
) -> Any:
    """``state[name]`` when it is one of ``types`` (or None, when ``optional``); a missing one is a problem too."""
    value = state.get(name, None if optional else _MISSING)
    _check((optional and value is None) or isinstance(value, types), value, f".{name}", what)
    return value


def _prefixed(where: str, e: _Bad) -> _Bad:
    return _Bad(f"{where}{e.args[0]}")


def _selection(sel: Any, n: int | None, where: str) -> None:
    """A selection: a tuple of node indices, -1 meaning "the latest" (below ``n`` when given)."""
    _check(isinstance(sel, tuple), sel, where, "a tuple")
    for k, i in enumerate(sel):
        _check(_is_int(i), i, f"{where}[{k}]", "an int")
        if n is not None and not -1 <= i < n:
            raise _Bad(f"{where}[{k}] is {i}, not -1 or a node index below {n}")


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


def _trace_fields(trace: Any, trace_class: type) -> list[Any]:
    """The Trace's own fields (hist, dag_parent, idx2loop_id, current_selection, a QuantTrace's controller); hist."""
    _check(isinstance(trace, trace_class), trace, "the root", "a Trace")
    state = vars(trace)
    hist = _field(state, "hist", list, "a list")
    n = len(hist)
    dag_parent = _field(state, "dag_parent", list, "a list")
    if len(dag_parent) != n:
        raise _Bad(f"dag_parent has {len(dag_parent)} entries for {n} nodes")
    for i, parents in enumerate(dag_parent):
        _check(isinstance(parents, tuple), parents, f"dag_parent[{i}]", "a tuple")
        for p in parents:
            # an earlier node (or the node itself, which RD-Agent's get_parents reads as a root): RD-Agent's
            # get_parents walks first parents until a root, so a later one could close a cycle it never leaves
            if not (_is_int(p) and 0 <= p <= i):
                held = _name(p) if not _is_int(p) else p
                raise _Bad(f"dag_parent[{i}] holds {held}, not the index of node {i} or an earlier one")
    loop_ids = _field(state, "idx2loop_id", dict, "a dict")
    for i, loop_id in loop_ids.items():
        if not (_is_int(i) and 0 <= i < n):
            raise _Bad(f"idx2loop_id has the key {_name(i) if not _is_int(i) else i}, not a node index below {n}")
        _check(_is_int(loop_id), loop_id, f"idx2loop_id[{i}]", "an int")
    if "current_selection" in state:
        _selection(state["current_selection"], n, "current_selection")
    quant = sys.modules.get("rdagent.scenarios.qlib.proposal.quant_proposal")  # loaded if the trace is a QuantTrace
    if quant is not None and isinstance(trace, quant.QuantTrace):
        from rdagent.scenarios.qlib.proposal.bandit import EnvController

        _field(state, "controller", EnvController, "an EnvController")
    return hist


def _trace_shape_problem(trace: Any) -> str | None:
    """What is wrong with ``trace`` as a Trace RD-Agent and trace-ckpt can use, or None; one linear walk."""
    from rdagent.core.experiment import Experiment, FBWorkspace, RunningInfo, Task
    from rdagent.core.proposal import ExperimentFeedback, Hypothesis, Trace

    try:
        hist = _trace_fields(trace, Trace)
        labels: dict[int, Any] = {}  # id(experiment) -> (id of the experiment it was reached from, step)
        stack: list[Any] = []
        for i in range(len(hist) - 1, -1, -1):
            node = hist[i]
            if not (isinstance(node, tuple) and len(node) == 2):
                raise _Bad(f"hist[{i}] is {_name(node)}, not an (experiment, feedback) pair")
            exp, fb = node
            _check(isinstance(exp, Experiment), exp, f"hist[{i}][0]", "an Experiment")
            if fb is not None:
                _check(isinstance(fb, ExperimentFeedback), fb, f"hist[{i}][1]", "an ExperimentFeedback")
                decision = vars(fb).get("decision", _MISSING)
                _check(type(decision) is bool, decision, f"hist[{i}][1].decision", "a bool")
            if id(exp) not in labels:
                labels[id(exp)] = (None, f"hist[{i}][0]")
                stack.append(exp)
    except _Bad as e:
        return e.args[0].removeprefix(".")
    known: set[Any] = set()  # the experiments of labels that hash (for the fast test of based_experiments)
    _remember(known, stack)
    seen = _Seen(Experiment, FBWorkspace, RunningInfo, Task, Hypothesis)
    while stack:
        exp = stack.pop()
        try:
            stack.extend(seen.experiment(exp, labels, known))
        except _Bad as e:
            return f"{_label(labels, id(exp))}{e.args[0]}"
    return None


class _Seen:
    """The walk's classes and the tasks and workspaces checked already (each is checked once)."""

    def __init__(self, *classes: type) -> None:
        self.experiment_class, self.workspace_class, self.info_class, self.task_class, self.hyp_class = classes
        self.tasks: set[int] = set()
        self.workspaces: set[int] = set()

    def experiment(self, exp: Any, labels: dict[int, Any], known: set[Any]) -> list[Any]:
        """Check one experiment; return its based experiments not reached before (labelled, to walk next)."""
        state = vars(exp)
        sub_tasks = _field(state, "sub_tasks", (list, tuple), "a list")
        subs = _field(state, "sub_workspace_list", (list, tuple), "a list")
        if len(subs) != len(sub_tasks):
            raise _Bad(f" has {len(subs)} sub-workspaces for {len(sub_tasks)} sub-tasks")
        for k, task in enumerate(sub_tasks):
            try:
                self.task(task)
            except _Bad as e:
                raise _prefixed(f".sub_tasks[{k}]", e) from None
        for k, ws in enumerate((state.get("experiment_workspace", None), *subs)):
            if ws is None or id(ws) in self.workspaces:
                continue
            try:
                self.workspace(ws)
            except _Bad as e:
                raise _prefixed(".experiment_workspace" if k == 0 else f".sub_workspace_list[{k - 1}]", e) from None
            self.workspaces.add(id(ws))
        hyp = state.get("hypothesis", None)
        if hyp is not None:
            try:
                _check(isinstance(hyp, self.hyp_class), hyp, "", "a Hypothesis")
                _field(vars(hyp), "hypothesis", str, "a str", optional=True)
                _field(vars(hyp), "action", str, "a str", optional=True)  # QlibQuantHypothesis'
            except _Bad as e:
                raise _prefixed(".hypothesis", e) from None
        _field(state, "running_info", self.info_class, "a RunningInfo")
        sel = state.get("local_selection", None)
        if sel is not None:
            # indices of the trace the experiment was made in: a based experiment's are not re-indexed by a prune
            _selection(sel, None, ".local_selection")
        based = _field(state, "based_experiments", (list, tuple), "a list")
        # RD-Agent's based_experiments repeat the accepted nodes (quadratic in all): a set test at C speed skips
        # a list of experiments all seen (RD-Agent's have the default hash; on any error the loop below checks)
        with contextlib.suppress(Exception):  # an element that cannot be hashed: the loop below names it
            if known.issuperset(based):
                return []
        new = []
        for k, b in enumerate(based):
            if id(b) in labels:
                continue
            _check(isinstance(b, self.experiment_class), b, f".based_experiments[{k}]", "an Experiment")
            labels[id(b)] = (id(exp), f".based_experiments[{k}]")
            _remember(known, (b,))
            new.append(b)
        return new

    def task(self, task: Any) -> None:
        if id(task) in self.tasks:
            return
        _check(isinstance(task, self.task_class), task, "", "a Task")
        _field(vars(task), "name", str, "a str")
        _field(vars(task), "factor_name", str, "a str", optional=True)  # FactorTask's
        self.tasks.add(id(task))

    def workspace(self, ws: Any) -> None:
        _check(isinstance(ws, self.workspace_class), ws, "", "an FBWorkspace")
        state = vars(ws)
        _field(state, "workspace_path", _PATH_TYPES, "a str or Path")
        files = _field(state, "file_dict", dict, "a dict")
        if not {*map(type, files), *map(type, files.values())} <= _STR:  # at C speed; the loop names the first
            for name, text in files.items():
                if not (type(name) is str and type(text) is str):
                    raise _Bad(f".file_dict holds {_name(name)} -> {_name(text)}, not str -> str")
        task = state.get("target_task", None)
        if task is not None:
            try:
                self.task(task)
            except _Bad as e:
                raise _prefixed(".target_task", e) from None


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
