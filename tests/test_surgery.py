"""prune / merge / diff on checkpoints of traces built from RD-Agent's real classes (tests/builders.py).

Every expectation is computed here from the input trace, independently of trace_ckpt.rdagent.surgery.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rdagent.core.proposal import Trace
from rdagent.scenarios.qlib.proposal.quant_proposal import QuantTrace

from tests.builders import build_trace, data_folder
from tests.clirun import run_cli as run
from tests.compare import assert_same_graph, snapshot_folder
from tests.strategies import dags
from trace_ckpt import diff, merge, prune, read_manifest, restore_trace, save_trace
from trace_ckpt.ckpt import Checkpoint
from trace_ckpt.errors import CheckpointNotFoundError, NothingToExportError
from trace_ckpt.rdagent.surgery import Keep
from trace_ckpt.settings import Options

_DATA = data_folder(Path(os.environ["WORKSPACE_PATH"]).parent / "surgery-data")  # in the session's temp folder


# ------------------------------------------------------------------------------------ independent model


def workspaces_of(exp: Any) -> list[Any]:
    return [w for w in [exp.experiment_workspace, *exp.sub_workspace_list] if w is not None]


def reachable_paths(exps: list[Any]) -> set[str]:
    """Workspace paths of the experiments and, recursively, of their based_experiments."""
    out: set[str] = set()
    seen: set[int] = set()
    stack = list(exps)
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        out |= {str(w.workspace_path) for w in workspaces_of(e)}
        stack.extend(e.based_experiments)
    return out


def action_of(exp: Any) -> str:
    return getattr(exp.hypothesis, "action", None) or "factor"  # builders make factor experiments only


def expected_kept(
    parents: list[tuple], decisions: list[bool], actions: list[str], rule: str, action: str | None
) -> list[int]:
    cands = [i for i in range(len(parents)) if action is None or actions[i] == action]
    if rule.startswith("last:"):
        return cands[-int(rule[5:]) :]
    acc = [i for i in cands if decisions[i]]
    if rule == "accepted":
        return acc

    def root(i: int) -> int:
        while parents[i]:
            i = parents[i][0]
        return i

    best: dict[int, int] = {}
    for i in acc:
        best[root(i)] = max(best.get(root(i), -1), i)
    return sorted(best.values())


def expected_parent(parents: list[tuple], kept: set[int], i: int) -> tuple:
    """Single-parent chains (what builders make): the first kept node above i, if any."""
    p = parents[i]
    while p and p[0] not in kept:
        p = parents[p[0]]
    return p


def remap(sel: Any, parents: list[tuple], kept: list[int]) -> Any:
    if not isinstance(sel, tuple) or sel in ((), (-1,)):
        return sel
    i = sel[0]
    if i not in kept:
        up = expected_parent(parents, set(kept), i)
        if not up:
            return ()
        i = up[0]
    return (kept.index(i),)


def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


# ------------------------------------------------------------------------------------------------ prune


def test_keep_parse() -> None:
    assert Keep.parse("sota") == Keep("sota") and Keep.parse(" Accepted ") == Keep("accepted")
    assert Keep.parse("last:3") == Keep("last", 3) and str(Keep.parse("last:12")) == "last:12"
    for bad in ("last:0", "last:", "last:-1", "best", "", "last:2x", "sota,accepted"):
        with pytest.raises(ValueError):
            Keep.parse(bad)


@st.composite
def pruning_cases(draw):
    parents, decisions, loop_ids = draw(dags())
    n = len(parents)
    quant = draw(st.booleans())
    actions = draw(st.lists(st.sampled_from(["factor", "model"]), min_size=n, max_size=n)) if quant else ["factor"] * n
    selection = draw(st.one_of(st.just((-1,)), st.just(()), st.integers(0, n - 1).map(lambda i: (i,))))
    rule = draw(st.one_of(st.sampled_from(["sota", "accepted"]), st.integers(1, n + 1).map(lambda k: f"last:{k}")))
    action = draw(st.sampled_from([None, "factor", "model"])) if quant else None
    return parents, decisions, loop_ids, quant, actions, selection, rule, action


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=pruning_cases())
def test_prune_random_dags(case) -> None:
    parents, decisions, loop_ids, quant, actions, selection, rule, action = case
    x = build_trace(parents, decisions, _DATA, quant=quant, loop_ids=loop_ids, write_outputs=False)
    for (exp, _), a in zip(x.hist, actions):
        if quant:
            exp.hypothesis.action = a
    x.current_selection = selection
    kept = expected_kept(parents, decisions, actions, rule, action)
    with tempfile.TemporaryDirectory() as d:
        src, out = Path(d) / "x.tckpt", Path(d) / "p.tckpt"
        save_trace(x, src)
        if not kept:
            with pytest.raises(NothingToExportError):
                prune(src, out, keep=rule, action=action)
            assert not out.exists()
            return
        report = prune(src, out, keep=rule, action=action)
        m = read_manifest(out)
        with Checkpoint.open(out, Options.resolve(allow_modules=["tests"])) as ck:
            stored_folders = set(ck.files.workspaces)
        restored = restore_trace(out, workspace_root=Path(d) / "ws")

    assert report.kept == kept and report.dropped == len(parents) - len(kept)
    # the sub-trace computed here: kept nodes, each hanging from its nearest kept ancestor
    keep_set = set(kept)
    exp_parents = [tuple(kept.index(p) for p in expected_parent(parents, keep_set, i)) for i in kept]
    assert restored.dag_parent == exp_parents
    assert [n.parents for n in m.nodes] == [list(p) for p in exp_parents]
    expected = QuantTrace(x.scen) if quant else Trace(x.scen)
    expected.hist = [x.hist[i] for i in kept]
    expected.dag_parent = exp_parents
    expected.idx2loop_id = {k: loop_ids[i] for k, i in enumerate(kept)}
    expected.current_selection = remap(selection, parents, kept)
    for _k, i in enumerate(kept):
        x.hist[i][0].local_selection = remap(parents[i] or (), parents, kept)
    if quant:
        expected.controller = x.controller
    # every workspace of a kept node, or used by one through based_experiments, and no other
    paths = reachable_paths([e for e, _ in expected.hist])
    assert stored_folders == paths
    dropped_own = {
        str(w.workspace_path) for i in set(range(len(parents))) - keep_set for w in workspaces_of(x.hist[i][0])
    }
    assert not dropped_own - paths & stored_folders
    path_map = {p: str((Path(d) / "ws" / Path(p).name).absolute()) for p in paths}
    assert_same_graph(expected, restored, path_map=path_map)

    assert m.counts.hist == len(kept) and m.counts.accepted == sum(decisions[i] for i in kept)
    assert m.counts.roots == sum(1 for p in exp_parents if p == ())
    assert m.metadata["pruned_from"]["kept"] == kept and m.metadata["pruned_from"]["keep"] == rule


def test_prune_copies_workspace_files_byte_exact_without_the_folders_on_disk(tmp_path: Path) -> None:
    parents, decisions = [(), (0,), (1,), (2,), (1,)], [True, False, True, False, True]
    x = build_trace(parents, decisions, _DATA)
    save_trace(x, tmp_path / "x.tckpt")
    before = {str(w.workspace_path): snapshot_folder(w.workspace_path) for e, _ in x.hist for w in workspaces_of(e)}
    before.update(
        {
            str(w.workspace_path): snapshot_folder(w.workspace_path)
            for w in workspaces_of(x.hist[0][0].based_experiments[0])
        }
    )
    for path in before:
        shutil.rmtree(path)  # prune must not need them

    prune(tmp_path / "x.tckpt", tmp_path / "p.tckpt", keep="last:2")
    restored = restore_trace(tmp_path / "p.tckpt", workspace_root=tmp_path / "ws")

    kept_exps = [x.hist[3][0], x.hist[4][0]]
    assert len(restored.hist) == 2 and restored.dag_parent == [
        (),
        (),
    ]  # node 3's parent 2 and node 4's parent 1 dropped
    # node 4's based_experiments = baseline + accepted nodes 0 and 2: their folders come along, node 1's does not
    originals = [w for e in kept_exps for w in workspaces_of(e)]
    originals += [w for b in x.hist[4][0].based_experiments for w in workspaces_of(b)]
    restored_ws = [w for e, _ in restored.hist for w in workspaces_of(e)]
    restored_ws += [w for b in restored.hist[1][0].based_experiments for w in workspaces_of(b)]
    assert len(originals) == len(restored_ws)
    for old, new in zip(originals, restored_ws):
        assert snapshot_folder(new.workspace_path) == before[str(old.workspace_path)]
        assert any(kind == "file" for kind, _ in before[str(old.workspace_path)].values())
    assert read_manifest(tmp_path / "p.tckpt").workspace_stats.workspaces == len(
        {str(w.workspace_path) for w in originals}
    )
    dropped = {w.workspace_path.name for w in workspaces_of(x.hist[1][0])}
    assert not dropped & {p.name for p in (tmp_path / "ws").iterdir()}


def test_prune_that_selects_nothing_is_an_error(tmp_path: Path) -> None:
    x = build_trace([(), (0,)], [False, False], _DATA, write_outputs=False)
    save_trace(x, tmp_path / "x.tckpt")
    with pytest.raises(NothingToExportError):
        prune(tmp_path / "x.tckpt", tmp_path / "p.tckpt", keep="accepted")
    with pytest.raises(NothingToExportError):
        prune(tmp_path / "x.tckpt", tmp_path / "p.tckpt", keep="last:5", action="model")
    with pytest.raises(ValueError):
        prune(tmp_path / "x.tckpt", tmp_path / "p.tckpt", keep="last:1", action="portfolio")  # type: ignore[arg-type]
    assert not (tmp_path / "p.tckpt").exists()


# ------------------------------------------------------------------------------------------------ merge


def _vary(trace: Any, tag: str) -> None:
    """Give every factor of ``trace`` other code under the same name (another LLM sample)."""
    for exp, _ in trace.hist:
        for ws in exp.sub_workspace_list:
            ws.inject_files(**{"factor.py": ws.file_dict["factor.py"] + f"# sample {tag}\n"})


def _sota(trace: Any) -> list[tuple[int, int, Any, Any]]:
    return [
        (i, s, exp.sub_tasks[s], ws)
        for i, (exp, fb) in enumerate(trace.hist)
        if fb.decision
        for s, ws in enumerate(exp.sub_workspace_list)
    ]


@st.composite
def merge_cases(draw):
    k = draw(st.integers(min_value=2, max_value=3))
    inputs = []
    for _ in range(k):
        parents, decisions, _ = draw(dags(max_nodes=5))
        inputs.append((parents, decisions, draw(st.booleans()), draw(st.booleans())))  # + quant, other code
    return inputs


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases=merge_cases())
def test_merge_random_inputs(cases) -> None:
    traces = []
    for k, (parents, decisions, quant, other_code) in enumerate(cases):
        t = build_trace(parents, decisions, _DATA, quant=quant, write_outputs=False)
        if other_code:
            _vary(t, str(k))
        traces.append(t)
    with tempfile.TemporaryDirectory() as d:
        paths = [Path(d) / f"in{k}.tckpt" for k in range(len(traces))]
        for t, p in zip(traces, paths):
            save_trace(t, p)
        report = merge(paths, Path(d) / "m.tckpt")
        m = read_manifest(Path(d) / "m.tckpt")
        merged = restore_trace(Path(d) / "m.tckpt", workspace_root=Path(d) / "ws")

    sizes = [len(t.hist) for t in traces]
    starts = [sum(sizes[:k]) for k in range(len(sizes))]
    assert len(merged.hist) == sum(sizes) and report.first_index == starts and m.counts.hist == sum(sizes)
    assert type(merged) is type(traces[0]) and type(merged.scen) is type(traces[0].scen)
    assert merged.dag_parent == [tuple(p + s for p in ps) for t, s in zip(traces, starts) for ps in t.dag_parent]
    assert all(merged.dag_parent[s] == () for s in starts)  # each input a sub-trace of its own
    ids = [merged.idx2loop_id[i] for i in range(len(merged.hist))]
    assert len(set(ids)) == len(ids)
    assert [bool(fb) for _, fb in merged.hist] == [bool(fb) for t in traces for _, fb in t.hist]

    # SOTA factor code: the union of the inputs', each distinct code implemented (and counted) once
    union = {code_hash(ws.file_dict["factor.py"]) for t in traces for _, _, _, ws in _sota(t)}
    assert {code_hash(original_code(ws.file_dict["factor.py"])) for _, _, _, ws in _sota(merged)} == union
    assert len({id(ws) for _, _, _, ws in _sota(merged)}) == len(union)  # builders' codes are unique in one trace
    # names, input by input: the rule of docs/api.md, modelled here
    renamed = {(r.node, r.old): r.new for r in report.renamed}
    first_name: dict[str, str] = {}  # code -> name of its first SOTA implementation, earlier inputs
    code_of: dict[str, str] = {}  # name in use -> code, earlier inputs
    for k, t in enumerate(traces):
        firsts: dict[str, str] = {}
        codes: dict[str, str] = {}
        for (_i, _s, task, ws), (mi, _, mtask, mws) in zip(_sota(t), _sota_slice(merged, starts[k], sizes[k])):
            code, name = ws.file_dict["factor.py"], task.factor_name
            if code in first_name:
                final = first_name[code]
            elif name in code_of and code_of[name] != code:
                final = f"{name}_in{k + 1}"
            else:
                final = name
            assert mtask.factor_name == final and renamed.get((mi, name), name) == final
            now = mws.file_dict["factor.py"]
            if final == name:
                assert now == code
            else:
                assert now.startswith(code) and repr(final) in now[len(code) :]
            firsts.setdefault(code, final)
            codes.setdefault(final, code)
        for c, n in firsts.items():
            first_name.setdefault(c, n)
        for n, c in codes.items():
            code_of.setdefault(n, c)
    assert len(renamed) == len(report.renamed)
    names: dict[str, set[str]] = {}
    for _, _, task, ws in _sota(merged):
        names.setdefault(task.factor_name, set()).add(code_hash(ws.file_dict["factor.py"]))
    assert all(len(h) == 1 for h in names.values())  # no SOTA factor name left with two codes


def original_code(code: str) -> str:
    """factor.py as the input held it: merge only ever appends its rename block."""
    return code.split("\n\n# --- trace-ckpt merge: factor ")[0]


def _sota_slice(merged: Any, start: int, size: int) -> list[tuple[int, int, Any, Any]]:
    return [(i, s, task, ws) for i, s, task, ws in _sota(merged) if start <= i < start + size]


def test_merge_shares_identical_factors_and_renames_clashes(tmp_path: Path) -> None:
    a = build_trace([(), (0,), (1,)], [True, True, False], _DATA)
    b = build_trace([(), (0,)], [True, True], _DATA)
    b.hist[1][0].sub_workspace_list[0].inject_files(
        **{"factor.py": a.hist[1][0].sub_workspace_list[0].file_dict["factor.py"] + "# other sample\n"}
    )
    b.current_selection = (1,)
    save_trace(a, tmp_path / "a.tckpt")
    save_trace(b, tmp_path / "b.tckpt")
    report = merge([tmp_path / "a.tckpt", tmp_path / "b.tckpt"], tmp_path / "m.tckpt")
    merged = restore_trace(tmp_path / "m.tckpt", workspace_root=tmp_path / "ws")

    # node 3 (b's node 0) has a's factor_0 code: it now uses node 0's workspace, one object, one folder
    assert [(d.node, d.name, d.same_as) for d in report.duplicates] == [(3, "factor_0", 0)]
    assert merged.hist[3][0].sub_workspace_list[0] is merged.hist[0][0].sub_workspace_list[0]
    # node 4 (b's node 1) has other code under a's name factor_1: renamed, everywhere RD-Agent reads the name
    assert [(r.node, r.old, r.new) for r in report.renamed] == [(4, "factor_1", "factor_1_in2")]
    ws = merged.hist[4][0].sub_workspace_list[0]
    assert merged.hist[4][0].sub_tasks[0].factor_name == "factor_1_in2" and ws.target_task.factor_name == "factor_1_in2"
    assert (ws.workspace_path / "factor.py").read_text() == ws.file_dict["factor.py"]
    assert list(pd.read_hdf(ws.workspace_path / "result.h5").columns) == ["factor_1_in2"]  # the captured values
    # the code itself now writes the new name when RD-Agent re-executes it (no cache)
    (ws.workspace_path / "result.h5").unlink()
    subprocess.run([sys.executable, "factor.py"], cwd=ws.workspace_path, check=True, capture_output=True)
    values = pd.read_hdf(ws.workspace_path / "result.h5")
    assert list(values.columns) == ["factor_1_in2"] and values["factor_1_in2"].notna().any()
    # factor_0 of a and of b are one SOTA implementation; other files of the nodes are untouched
    sota_ws = {id(w) for exp, fb in merged.hist if fb.decision for w in exp.sub_workspace_list}
    assert len(sota_ws) == 3  # factor_0, factor_1 (a), factor_1_in2 (b)
    assert merged.current_selection == (4,)  # the last input's selection, shifted
    assert [merged.idx2loop_id[i] for i in range(5)] == [0, 1, 2, 3, 4]
    m = read_manifest(tmp_path / "m.tckpt")
    assert [x["path"] for x in m.metadata["merged_from"]] == [str(tmp_path / "a.tckpt"), str(tmp_path / "b.tckpt")]
    assert m.metadata["merge"]["renamed"] == [{"node": 4, "old": "factor_1", "new": "factor_1_in2"}]
    assert m.counts.roots == 2 and m.nodes[4].factors == ["factor_1_in2"]


def test_a_factor_identical_to_a_renamed_one_takes_its_name(tmp_path: Path) -> None:
    base = build_trace([()], [True], _DATA, write_outputs=False)
    save_trace(base, tmp_path / "base.tckpt")
    _vary(base, "x")
    save_trace(base, tmp_path / "varied.tckpt")
    # varied first: the base code of factor_0 is renamed in input 2, and input 3 holds that very code again
    report = merge([tmp_path / "varied.tckpt", tmp_path / "base.tckpt", tmp_path / "base.tckpt"], tmp_path / "m.tckpt")
    merged = restore_trace(tmp_path / "m.tckpt", workspace_root=tmp_path / "ws")
    assert [(r.node, r.new) for r in report.renamed] == [(1, "factor_0_in2"), (2, "factor_0_in2")]
    assert [(d.node, d.same_as) for d in report.duplicates] == [(2, 1)]
    assert [e.sub_tasks[0].factor_name for e, _ in merged.hist] == ["factor_0", "factor_0_in2", "factor_0_in2"]
    assert merged.hist[2][0].sub_workspace_list[0] is merged.hist[1][0].sub_workspace_list[0]


def test_merge_of_two_checkpoints_of_one_run_shares_same_folders_and_separates_changed_ones(tmp_path: Path) -> None:
    x = build_trace([(), (0,)], [True, False], _DATA)
    save_trace(x, tmp_path / "early.tckpt")
    res = x.hist[1][0].experiment_workspace.workspace_path / "qlib_res.csv"
    res.write_text(res.read_text() + "extra,1\n")  # the run went on: one folder changed
    save_trace(x, tmp_path / "late.tckpt")
    early_snap = snapshot_folder(x.hist[0][0].experiment_workspace.workspace_path)

    report = merge([tmp_path / "early.tckpt", tmp_path / "late.tckpt"], tmp_path / "m.tckpt")
    m = read_manifest(tmp_path / "m.tckpt")
    merged = restore_trace(tmp_path / "m.tckpt", workspace_root=tmp_path / "ws")

    assert m.workspace_stats.workspaces == read_manifest(tmp_path / "early.tckpt").workspace_stats.workspaces + 1
    a1, b1 = merged.hist[1][0].experiment_workspace, merged.hist[3][0].experiment_workspace
    assert a1.workspace_path != b1.workspace_path
    assert "extra,1" not in (a1.workspace_path / "qlib_res.csv").read_text()
    assert (b1.workspace_path / "qlib_res.csv").read_text() == res.read_text()
    a0, b0 = merged.hist[0][0].experiment_workspace, merged.hist[2][0].experiment_workspace
    assert a0.workspace_path == b0.workspace_path and snapshot_folder(a0.workspace_path) == early_snap
    assert [(d.node, d.same_as) for d in report.duplicates] == [(2, 0)] and not report.renamed


def test_merge_keeps_the_first_inputs_class_and_notes_the_others(tmp_path: Path) -> None:
    q = build_trace([()], [True], _DATA, quant=True, write_outputs=False)
    t = build_trace([()], [False], _DATA, write_outputs=False)
    save_trace(q, tmp_path / "q.tckpt")
    save_trace(t, tmp_path / "t.tckpt")
    report = merge([tmp_path / "q.tckpt", tmp_path / "t.tckpt"], tmp_path / "m.tckpt")
    merged = restore_trace(tmp_path / "m.tckpt", workspace_root=tmp_path / "ws")
    assert type(merged) is QuantTrace and merged.controller is not None
    assert len(report.notes) == 1 and "QuantTrace" in report.notes[0]
    with pytest.raises(ValueError):
        merge([tmp_path / "q.tckpt"], tmp_path / "m2.tckpt")


# ------------------------------------------------------------------------------------------------- diff


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    d = tmp_path_factory.mktemp("diff")
    x = build_trace([(), (0,), (1,)], [True, False, True], _DATA)
    save_trace(x, d / "a.tckpt")
    x.hist[1][0].result = x.hist[1][0].result.copy()
    x.hist[1][0].result["IC"] = 0.5
    x.hist[2][1].decision = False
    ws = x.hist[0][0].sub_workspace_list[0]
    ws.inject_files(**{"factor.py": ws.file_dict["factor.py"] + "# changed\n"})
    save_trace(x, d / "b.tckpt")
    return d, d / "a.tckpt", d / "b.tckpt"


def test_diff_equal_checkpoints(pair, tmp_path: Path) -> None:
    _, a, _ = pair
    assert diff(a, a).equal
    # a restore in another folder and a new save: other workspace paths, same content
    save_trace(restore_trace(a, workspace_root=tmp_path / "ws"), tmp_path / "again.tckpt")
    d = diff(a, tmp_path / "again.tckpt")
    assert d.equal, d.lines()


def test_diff_names_nodes_metrics_decisions_and_factor_code(pair) -> None:
    _, a, b = pair
    d = diff(a, b)
    assert not d.equal
    changes = {(c.index, c.what): (c.a, c.b) for c in d.nodes}
    assert changes[(1, "IC")][1] == 0.5 and changes[(1, "IC")][0] != 0.5
    assert changes[(2, "decision")] == (True, False)
    assert [(f.index, f.paths) for f in d.files] == [(0, ["factor.py"])]
    # SOTA factors: factor_0 has other code in B, factor_2 is SOTA only in A (node 2 rejected in B)
    assert [(f.name, f.a is None, f.b is None) for f in d.factors] == [
        ("factor_0", False, False),
        ("factor_2", False, True),
    ]
    assert d.factors[0].a != d.factors[0].b
    text = "\n".join(d.lines())
    assert "node 1: IC:" in text and "node 2: decision: True -> False" in text and "factor_0: code differs" in text


def test_diff_counts_extra_nodes(pair, tmp_path: Path) -> None:
    _, a, _ = pair
    prune(a, tmp_path / "p.tckpt", keep="last:2")
    d = diff(a, tmp_path / "p.tckpt")
    assert d.nodes_a == 3 and d.nodes_b == 2 and not d.equal
    # B holds A's nodes 1 and 2 (matched by loop id and content): node 0 is the one only A has
    assert d.only_a == [0] and d.only_b == [] and "nodes only in A: 0" in d.lines()
    assert d.nodes == [] and d.files == [], d.lines()


def test_diff_after_prune_keep_sota_reports_only_the_dropped_nodes(tmp_path: Path) -> None:
    # two sub-traces (roots 0 and 3); the kept SOTA nodes sit at other positions and hang from other parents
    parents = [(), (0,), (1,), (), (3,), (4,), (2,)]
    decisions = [True, True, False, True, False, True, True]
    save_trace(build_trace(parents, decisions, _DATA), tmp_path / "a.tckpt")
    report = prune(tmp_path / "a.tckpt", tmp_path / "sota.tckpt", keep="sota")
    assert report.kept == [5, 6]
    d = diff(tmp_path / "a.tckpt", tmp_path / "sota.tckpt")
    # position matching compared A's nodes 0 and 1 with B's 0 and 1 (A's 5 and 6): every field "changed"
    assert d.nodes == [] and d.files == [], d.lines()
    assert d.only_a == [0, 1, 2, 3, 4] and d.only_b == []
    assert "nodes only in A: 0-4" in d.lines()
    # SOTA factors of the dropped accepted nodes are gone from B; the kept nodes' factors are not reported
    assert {f.name for f in d.factors} == {"factor_0", "factor_1", "factor_3"}
    assert all(f.b is None for f in d.factors)
    # and the other way round: B's nodes are A's
    back = diff(tmp_path / "sota.tckpt", tmp_path / "a.tckpt")
    assert back.nodes == [] and back.only_a == [] and back.only_b == [0, 1, 2, 3, 4]


def test_diff_matches_a_merged_input_by_content_under_shifted_loop_ids(tmp_path: Path) -> None:
    a, b = tmp_path / "a.tckpt", tmp_path / "b.tckpt"
    save_trace(build_trace([(), (0,)], [True, False], _DATA), a)
    run2 = build_trace([(), (0,), (1,)], [False, True, True], _DATA)
    for exp, _ in run2.hist:  # builders word a hypothesis by position: run 2's are its own
        exp.hypothesis.hypothesis = "run 2: " + exp.hypothesis.hypothesis
    save_trace(run2, b)
    merge([a, b], tmp_path / "m.tckpt")
    d = diff(b, tmp_path / "m.tckpt")
    # merged: a's nodes 0-1 then b's nodes at 2-4, b's loop ids shifted by 2; b's nodes are found there
    by_node = {(c.index, c.what): (c.a, c.b, c.index_b) for c in d.nodes}
    assert d.only_a == [] and d.only_b == [0, 1], d.lines()
    assert by_node[(0, "loop id")] == (0, 2, 2) and by_node[(2, "loop id")] == (2, 4, 4)
    assert {what for _, what in by_node} == {"loop id"}, d.lines()
    assert "node 0 (B's 2): loop id: 0 -> 2" in d.lines()


def test_diff_tells_apart_nodes_of_two_runs_with_the_same_hypotheses_by_their_code(tmp_path: Path) -> None:
    a, b = tmp_path / "a.tckpt", tmp_path / "b.tckpt"
    save_trace(build_trace([(), (0,)], [True, False], _DATA), a)
    run2 = build_trace([(), (0,), (1,)], [False, True, True], _DATA)
    for exp, _ in run2.hist:  # same hypotheses as run 1's nodes at the same loop ids (builders word them so)
        for ws in exp.sub_workspace_list:
            ws.inject_files(**{"factor.py": ws.file_dict["factor.py"] + "# run 2\n"})  # but other code
    save_trace(run2, b)
    merge([a, b], tmp_path / "m.tckpt")
    d = diff(b, tmp_path / "m.tckpt")
    # run 2's node k is the merged node 2 + k, not run 1's node k that has its loop id and hypothesis
    pairs = {(c.index, c.index_b) for c in [*d.nodes, *d.files]}
    assert pairs == {(0, 2), (1, 3), (2, 4)} and {c.what for c in d.nodes} == {"loop id"}, d.lines()
    assert d.only_b == [0, 1] and d.files == []


def test_diff_finds_a_factor_the_merge_renamed_under_its_inputs_loop_id_shift(tmp_path: Path) -> None:
    a, b = tmp_path / "a.tckpt", tmp_path / "b.tckpt"
    save_trace(build_trace([(), (0,)], [True, False], _DATA), a)
    run2 = build_trace([(), (0,), (1,)], [True, True, True], _DATA)
    for exp, _ in run2.hist:  # run 1's hypotheses and factor names at the same loop ids, other code
        for ws in exp.sub_workspace_list:
            ws.inject_files(**{"factor.py": ws.file_dict["factor.py"] + "# run 2\n"})
    save_trace(run2, b)
    report = merge([a, b], tmp_path / "m.tckpt")
    assert [(r.node, r.old) for r in report.renamed] == [(2, "factor_0")]  # its factor.py changes: no code match
    d = diff(b, tmp_path / "m.tckpt")
    # run 2's node 0 is the merged node 2 (loop id 0 + 2, like its siblings), not run 1's node 0 (loop id 0)
    pairs = {(c.index, c.index_b) for c in [*d.nodes, *d.files]}
    assert pairs == {(0, 2), (1, 3), (2, 4)}, d.lines()
    assert {(c.index, c.what) for c in d.nodes} == {(0, "loop id"), (1, "loop id"), (2, "loop id"), (0, "factors")}
    assert [(f.index, f.paths[:1]) for f in d.files] == [(0, ["factor.py"])]


def test_diff_checks_integrity_first(pair, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from trace_ckpt.errors import CorruptCheckpointError

    _, a, _ = pair
    graph = next(s for s in read_manifest(a).sections if s.kind == "graph")  # a section diff itself never reads
    flipped = tmp_path / "flipped.tckpt"
    data = bytearray(a.read_bytes())
    data[graph.offset + graph.length // 2] ^= 0x01
    flipped.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match="fail their checksum"):
        diff(a, flipped)
    with pytest.raises(CorruptCheckpointError):
        diff(flipped, a)
    code, out, err = run(capsys, "diff", a, flipped)
    assert code == CorruptCheckpointError.exit_code == 4 and out == "" and err.count("\n") == 1, (out, err)


# -------------------------------------------------------------------------------------------------- CLI


def test_cli_diff_exit_codes(capsys: pytest.CaptureFixture[str], pair) -> None:
    _, a, b = pair
    code, out, err = run(capsys, "diff", a, a)
    assert code == 0 and out.startswith("no differences") and err == ""
    code, out, err = run(capsys, "diff", a, b)
    assert code == 1 and "node 2: decision" in out and err == ""
    code, out, _ = run(capsys, "diff", a, b, "--json")
    doc = json.loads(out)
    assert (
        code == 1
        and doc["equal"] is False
        and {"index": 2, "index_b": 2, "what": "decision", "a": True, "b": False} in doc["nodes"]
    )
    code, _, err = run(capsys, "diff", a, a.parent / "missing.tckpt")
    assert code == CheckpointNotFoundError.exit_code and err.count("\n") == 1


def test_cli_prune_and_merge(capsys: pytest.CaptureFixture[str], pair, tmp_path: Path) -> None:
    _, a, b = pair
    code, out, err = run(capsys, "prune", a, tmp_path / "p.tckpt", "--keep", "accepted")
    assert code == 0 and "kept 2 of 3 nodes" in out and "0, 2" in out and err == ""
    assert read_manifest(tmp_path / "p.tckpt").counts.hist == 2
    code, out, err = run(capsys, "merge", a, b, tmp_path / "p.tckpt", tmp_path / "m.tckpt")
    assert code == 0 and "merged 3 checkpoints" in out and "8 nodes" in out and err == ""
    assert "renamed: node 3 factor factor_0 -> factor_0_in2" in out  # b's factor_0 has other code
    assert read_manifest(tmp_path / "m.tckpt").counts.roots == 3


@pytest.mark.parametrize(
    "args",
    [
        ["--keep", "best"],
        ["--keep", "last:0"],
        ["--keep", "last:x"],
        [],
        ["--keep", "sota", "--action", "portfolio"],
    ],
)
def test_cli_prune_usage_errors(capsys: pytest.CaptureFixture[str], pair, tmp_path: Path, args: list[str]) -> None:
    _, a, _ = pair
    code, out, err = run(capsys, "prune", a, tmp_path / "p.tckpt", *args)
    assert code == 2 and err.count("\n") == 1 and "usage error" in err and out == ""
    assert not (tmp_path / "p.tckpt").exists()


def test_cli_merge_needs_two_inputs_and_prune_needs_a_match(
    capsys: pytest.CaptureFixture[str], pair, tmp_path: Path
) -> None:
    _, a, _ = pair
    code, _, err = run(capsys, "merge", a, tmp_path / "m.tckpt")
    assert code == 2 and err.count("\n") == 1
    code, _, err = run(capsys, "prune", a, tmp_path / "p.tckpt", "--keep", "sota", "--action", "model")
    assert code == NothingToExportError.exit_code and err.count("\n") == 1 and "selects no model node" in err
