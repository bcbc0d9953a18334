"""`trace-ckpt inspect CKPT --plot out.png`: a valid PNG whose points are the trace's nodes, drawn from
the manifest only; a one-line error without matplotlib; an atomic write."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.builders import build_trace, data_folder, result_series
from tests.clirun import manifest_only_probe
from tests.clirun import run_cli as run
from tests.pictures import PNG_MAGIC, points
from trace_ckpt import read_manifest, save_trace
from trace_ckpt.cli import main
from trace_ckpt.errors import MissingExtraError, SaveError
from trace_ckpt.plot import KEY_ARR, KEY_IC, plot_manifest, write_plot

ROOT = Path(__file__).resolve().parents[1]
# node i: (parents, decision); 3 is a second root, 5 branches off 1, 6 and 7 are model experiments
DAG = [((), True), ((0,), False), ((1,), True), ((), True), ((3,), False), ((1,), False)]
MODEL_NODES = [((5,), True), ((6,), False)]
NO_RESULT = 4  # this node's experiment has no result, so no IC: it must not be drawn


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """A checkpoint of a real Trace with factor and model experiments, two roots, a branch, a node without IC."""
    from rdagent.components.coder.model_coder.model import ModelTask
    from rdagent.core.proposal import Hypothesis, HypothesisFeedback
    from rdagent.scenarios.qlib.experiment.model_experiment import QlibModelExperiment

    d = tmp_path_factory.mktemp("plot")
    trace = build_trace(
        [p for p, _ in DAG], [dec for _, dec in DAG], data_folder(d / "data"), loop_ids=list(range(len(DAG)))
    )
    trace.hist[NO_RESULT][0].result = None
    task = ModelTask(
        "GRU_small", "a GRU", "GRU -> Linear", hyperparameters={}, training_hyperparameters={}, model_type="TimeSeries"
    )
    for i, (parents, decision) in enumerate(MODEL_NODES):
        exp = QlibModelExperiment([task], hypothesis=Hypothesis(f"model {i}", "r", "c", "o", "j", "k"))
        exp.result = result_series(100 + i)
        exp.local_selection = parents
        trace.sync_dag_parent_and_hist(
            (
                exp,
                HypothesisFeedback(
                    reason="r", decision=decision, observations="o", hypothesis_evaluation="e", new_hypothesis="n"
                ),
            ),
            len(DAG) + i,
        )
    ckpt = d / "run1.tckpt"
    save_trace(trace, ckpt)
    return ckpt, trace


def test_inspect_plot_writes_a_png_with_one_point_per_node_with_ic(
    capsys: pytest.CaptureFixture[str], mixed: tuple[Path, object], tmp_path: Path
) -> None:
    ckpt, trace = mixed
    png = tmp_path / "trace.png"
    code, out, err = run(capsys, "inspect", ckpt, "--plot", png)
    assert code == 0, err
    assert "*SOTA*" in out and f"wrote {png}" in out  # the table is still printed
    data = png.read_bytes()
    assert data[:8] == PNG_MAGIC
    from matplotlib.image import imread

    pixels = imread(png)
    assert pixels.ndim == 3 and pixels.shape[0] > 200 and pixels.shape[1] > 400
    assert pixels.std() > 0  # not a blank canvas
    assert not list(tmp_path.glob(".tckpt-plot-*"))  # no temp file left beside it

    # expected points from the trace itself, then checked against the manifest and the figure
    expected = {i: float(exp.result["IC"]) for i, (exp, _) in enumerate(trace.hist) if exp.result is not None}
    assert len(expected) == len(trace.hist) - 1
    m = read_manifest(ckpt)
    assert {n.index for n in m.nodes if KEY_IC in n.metrics} == set(expected)
    shown = points(plot_manifest(m), KEY_IC)
    assert len(shown) == len(expected) == 7
    for i, (y, state) in shown.items():
        assert y == pytest.approx(expected[i])
        assert state == ("accepted" if trace.hist[i][1].decision else "rejected")


def test_plot_shows_phases_sota_and_branches(mixed: tuple[Path, object]) -> None:
    ckpt, trace = mixed
    m = read_manifest(ckpt)
    fig = plot_manifest(m)
    ax_ic = fig.axes[0]
    by_phase = {c.get_gid().split(":")[2]: c for c in ax_ic.collections if (c.get_gid() or "").startswith("points:")}
    assert set(by_phase) == {"factor", "model"}
    model_x = sorted(int(x) for c in ax_ic.collections if ":model:" in (c.get_gid() or "") for x, _ in c.get_offsets())
    assert model_x == [len(DAG), len(DAG) + 1]
    sota = [ln for ln in ax_ic.lines if ln.get_gid() == "sota"]
    assert len(sota) == 1 and list(sota[0].get_xdata()) == [m.sota_index] == [len(DAG)]
    # DAG edges between drawn nodes: straight when the parent is the node before, an arc otherwise
    drawn = set(points(fig, KEY_IC))
    edges = [(p, i) for i, parents in enumerate(trace.dag_parent) for p in parents if i in drawn and p in drawn]
    assert len([ln for ln in ax_ic.lines if ln.get_gid() == "edge"]) == sum(p == i - 1 for p, i in edges)
    arcs = [a for a in ax_ic.patches + ax_ic.artists if a.get_gid() == "branch"]
    assert len(arcs) == sum(p != i - 1 for p, i in edges) == 1  # node 5 branches off node 1
    assert set(points(fig, KEY_ARR)) == {n.index for n in m.nodes if KEY_ARR in n.metrics}


def test_plot_of_a_real_rdagent_factor_run(factor_run: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "run1.tckpt"
    with pytest.raises(SystemExit) as e:
        main(["save", str(factor_run), str(ckpt), "--allow-module", "examples"])
    assert e.value.code == 0
    m = read_manifest(ckpt)
    from rdagent.core.serialization import loads

    from trace_ckpt.rdagent.sessions import list_dumps

    trace = loads(list_dumps(factor_run / "__session__")[-1].path.read_bytes()).trace
    with_ic = [i for i, (exp, _) in enumerate(trace.hist) if exp.result is not None and "IC" in exp.result.index]
    assert len(with_ic) == len(trace.hist) == 4
    png = write_plot(m, tmp_path / "trace.png", title=ckpt.name)
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert sorted(points(plot_manifest(m), KEY_IC)) == with_ic


def test_an_empty_trace_still_plots(tmp_path: Path) -> None:
    save_trace(build_trace([], [], data_folder(tmp_path / "data")), tmp_path / "empty.tckpt")
    png = write_plot(read_manifest(tmp_path / "empty.tckpt"), tmp_path / "empty.png")
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_json_and_plot_keep_stdout_json(
    capsys: pytest.CaptureFixture[str], mixed: tuple[Path, object], tmp_path: Path
) -> None:
    import json

    code, out, err = run(capsys, "inspect", mixed[0], "--json", "--plot", tmp_path / "t.png")
    assert code == 0 and json.loads(out)["counts"]["hist"] == len(DAG) + len(MODEL_NODES)
    assert "wrote" in err and (tmp_path / "t.png").exists()


def test_without_matplotlib_one_line_error(
    capsys: pytest.CaptureFixture[str], mixed: tuple[Path, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    code, out, err = run(capsys, "inspect", mixed[0], "--plot", tmp_path / "t.png")
    assert code == MissingExtraError.exit_code == 12
    assert err.count("\n") == 1 and "pip install 'trace-ckpt[plot]'" in err and out == ""
    assert not (tmp_path / "t.png").exists()


def test_write_is_atomic(
    capsys: pytest.CaptureFixture[str], mixed: tuple[Path, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from matplotlib.figure import Figure

    png = tmp_path / "t.png"
    png.write_bytes(b"previous")

    def broken(self: Figure, fh: object, **kw: object) -> None:
        fh.write(b"half a png")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", broken)
    code, _, err = run(capsys, "inspect", mixed[0], "--plot", png)
    assert code == SaveError.exit_code and "No space left" in err and err.count("\n") == 1
    assert png.read_bytes() == b"previous" and not list(tmp_path.glob(".tckpt-plot-*"))
    monkeypatch.undo()
    code, _, err = run(capsys, "inspect", mixed[0], "--plot", tmp_path / "no-such-folder" / "t.png")
    assert code == SaveError.exit_code and "does not exist" in err


def test_plot_never_imports_rdagent_or_unpickles(mixed: tuple[Path, object], tmp_path: Path) -> None:
    png = tmp_path / "t.png"
    probe = manifest_only_probe(
        ["inspect", str(mixed[0]), "--plot", str(png)],
        # drawn on an Agg canvas: pyplot's global state is untouched
        checks='assert "matplotlib.pyplot" not in sys.modules',
    )
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().endswith("clean"), r.stderr[-2000:]
    assert png.read_bytes()[:8] == PNG_MAGIC
