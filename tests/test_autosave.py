"""Auto-checkpointing: `trace-ckpt run fin_factor ... --autosave DIR --keep N` on RD-Agent's own factor loop
(offline stand-ins for LLM, coder, Qlib backtest and runtime probe), and the Python helpers behind it.

The made-to-fail autosave uses a read-only DIR; where that is still writable (tests running as root) it
puts DIR under a regular file instead, where creating it fails for root too.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rdagent.core.proposal import Trace
from rdagent.utils.workflow.loop import LoopBase, LoopMeta

from tests.builders import TinyScenario, build_trace, data_folder, factor_experiment, feedback
from tests.compare import assert_same_graph
from trace_ckpt import read_manifest, restore_trace
from trace_ckpt.cli.run import parse_rdagent_args
from trace_ckpt.quant import IC, RANK_IC
from trace_ckpt.rdagent.autosave import APPS, Autosaver, autosave, sota_ic, sota_metric
from trace_ckpt.rdagent.sessions import list_dumps, load_session
from trace_ckpt.rdagent.trace import iter_workspaces
from trace_ckpt.storage import latest_checkpoint

TRACE_CKPT = Path(sys.executable).parent / "trace-ckpt"
WARNING = re.compile(r"trace-ckpt: warning: autosave of loop (\d+) to (\S+) failed, the loop goes on: (.+)")


def run_cli(workdir: Path, *args: str) -> tuple[subprocess.CompletedProcess, Path]:
    """`trace-ckpt run` as a user runs it, offline, in its own work folder; returns the run's log folder."""
    from examples.offline.run import offline_env, prepare_data

    prepare_data(workdir)
    env = {**os.environ, **offline_env(workdir, "factor")}
    proc = subprocess.run(
        [str(TRACE_CKPT), "run", *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    return proc, Path(env["LOG_TRACE_PATH"])


@pytest.fixture(scope="module")
def five_loops(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path, Path]:
    workdir = tmp_path_factory.mktemp("autosave")
    ckdir = workdir / "ckpts"
    proc, log_dir = run_cli(
        workdir, "fin_factor", "--loop_n", "5", "--autosave", str(ckdir), "--keep", "2", "--allow-module", "examples"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, ckdir, log_dir


def test_after_five_loops_exactly_the_last_two_checkpoints_remain(five_loops) -> None:
    proc, ckdir, log_dir = five_loops
    records = [d.loop for d in list_dumps(log_dir / "__session__") if d.name == "record"]
    assert records == [0, 1, 2, 3, 4]
    assert sorted(p.name for p in ckdir.iterdir()) == ["loop-0003.tckpt", "loop-0004.tckpt"]
    assert "5 loops completed, 5 checkpoints written" in proc.stdout
    assert not WARNING.search(proc.stderr)
    m3 = read_manifest(ckdir / "loop-0003.tckpt")  # written right after loop 3, not at the end of the run
    assert m3.counts.hist == 4 and m3.metadata["source"]["path"] == str(log_dir / "__session__" / "3" / "4_record")


def test_the_newest_checkpoint_restores_to_the_trace_of_the_latest_session_dump(five_loops, tmp_path: Path) -> None:
    from rdagent.app.qlib_rd_loop.factor import FactorRDLoop

    _, ckdir, log_dir = five_loops
    loop, dump = load_session(log_dir)
    assert (dump.loop, dump.name) == (4, "record")
    m = read_manifest(ckdir / "loop-0004.tckpt")
    assert m.metadata["source"]["path"] == str(dump.path)
    assert m.metadata["source"]["loop_class"] == f"{FactorRDLoop.__module__}.FactorRDLoop"
    original = loop.trace
    old = [str(ws.workspace_path) for ws in iter_workspaces(original)]
    restored = restore_trace(ckdir / "loop-0004.tckpt", workspace_root=tmp_path / "ws", allow_modules=["examples"])
    path_map = {p: str((tmp_path / "ws" / Path(p).name).absolute()) for p in old}
    assert len(restored.hist) == 5
    assert assert_same_graph(original, restored, path_map=path_map) > 500


def test_session_dumps_stay_plain_rdagent_objects(five_loops) -> None:
    from rdagent.app.qlib_rd_loop.factor import FactorRDLoop

    _, _, log_dir = five_loops
    dumps = list_dumps(log_dir / "__session__")
    assert len(dumps) == 25
    for d in dumps:
        assert b"trace_ckpt" not in d.path.read_bytes()  # loadable where trace-ckpt is not installed
    loop, _ = load_session(log_dir)
    assert type(loop) is FactorRDLoop


def unwritable_folder(tmp_path: Path) -> tuple[Path, str]:
    """A read-only folder; where that is still writable (root), a folder path under a regular file."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        (folder / "probe").write_text("x")
    except PermissionError:
        return folder, "Permission denied"
    (folder / "probe").unlink()
    folder.chmod(0o755)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a regular file")
    return blocker / "ckpts", "Not a directory"


@pytest.mark.slow
def test_a_failing_autosave_leaves_the_loop_running_to_completion(tmp_path: Path) -> None:
    ckdir, reason_text = unwritable_folder(tmp_path)
    try:
        proc, log_dir = run_cli(
            tmp_path, "fin_factor", "--loop-n", "3", "--autosave", str(ckdir), "--allow-module", "examples"
        )
    finally:
        (tmp_path / "read-only").chmod(0o755)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [d.loop for d in list_dumps(log_dir / "__session__") if d.name == "record"] == [0, 1, 2]
    assert len(load_session(log_dir)[0].trace.hist) == 3
    failures = WARNING.findall(proc.stderr)
    assert [int(li) for li, _, _ in failures] == [0, 1, 2]
    assert all(reason_text in reason and "\n" not in reason for _, _, reason in failures), failures
    assert "the autosave of 3 loop(s) failed (0, 1, 2); the run itself completed" in proc.stderr
    assert "3 loops completed, 0 checkpoints written" in proc.stdout
    assert not list(ckdir.parent.rglob("*.tckpt")) and not list(ckdir.parent.rglob(".tckpt-tmp-*"))


# --- the Python helpers ---------------------------------------------------------------------------------


@pytest.fixture
def warnings_seen() -> Any:
    """Warnings of the trace_ckpt logger (the CLI's main() may have turned its propagation off)."""
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    logger = logging.getLogger("trace_ckpt")
    handler = Keep(logging.WARNING)
    logger.addHandler(handler)
    yield seen
    logger.removeHandler(handler)


def _growing_traces(
    tmp_path: Path, decisions: list[bool], ics: list[float], rank_ics: list[float] | None = None
) -> list[Trace]:
    """The trace after each loop of a run whose node i has IC ``ics[i]`` (and Rank IC ``rank_ics[i]``)."""
    full = build_trace(
        [()] + [(i,) for i in range(len(decisions) - 1)], decisions, data_folder(tmp_path / "data"), write_outputs=False
    )
    for i, (exp, _) in enumerate(full.hist):
        result = exp.result.copy()
        result[IC] = ics[i]
        if rank_ics is not None:
            result[RANK_IC] = rank_ics[i]
        exp.result = result
    out = []
    for k in range(1, len(decisions) + 1):
        trace = Trace(full.scen)
        for i, (exp, fb) in enumerate(full.hist[:k]):
            trace.sync_dag_parent_and_hist((exp, fb), i)
        out.append(trace)
    return out


def test_keep_best_keeps_the_checkpoint_whose_sota_has_the_best_ic(tmp_path: Path) -> None:
    # SOTA (last accepted) IC after each loop: 0.02, 0.09, 0.09, 0.03, 0.03; node 2's 0.50 is rejected
    traces = _growing_traces(tmp_path, [True, True, False, True, False], [0.02, 0.09, 0.50, 0.03, 0.01])
    best, plain = Autosaver(tmp_path / "best", keep=2, keep_best=True), Autosaver(tmp_path / "plain", keep=2)
    for li, trace in enumerate(traces):
        assert best.save(trace, li) == tmp_path / "best" / f"loop-{li:04d}.tckpt"
        plain.save(trace, li)
    assert [p.name for p in best.checkpoints()] == ["loop-0002.tckpt", "loop-0003.tckpt", "loop-0004.tckpt"]
    assert [p.name for p in plain.checkpoints()] == ["loop-0003.tckpt", "loop-0004.tckpt"]
    assert sota_ic(tmp_path / "best" / "loop-0002.tckpt") == pytest.approx(0.09)  # of two equals, the newer
    assert len(best.saved) == 5 and best.failed == []


def test_pruning_never_deletes_the_checkpoint_just_written(tmp_path: Path) -> None:
    traces = _growing_traces(tmp_path, [True, False], [0.02, 0.01])
    saver = Autosaver(tmp_path / "ck", keep=1)
    saver.save(traces[1], 9)  # another run's later loop in the same folder
    assert saver.save(traces[0], 0) is not None
    assert [p.name for p in saver.checkpoints()] == ["loop-0000.tckpt", "loop-0009.tckpt"]
    assert saver.save(traces[1], 1) is not None
    assert [p.name for p in saver.checkpoints()] == ["loop-0001.tckpt", "loop-0009.tckpt"]


def test_a_failed_save_warns_once_and_prunes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, warnings_seen: list[str]
) -> None:
    traces = _growing_traces(tmp_path, [True, True, True], [0.01, 0.02, 0.03])
    saver = Autosaver(tmp_path / "ck", keep=2)
    saver.save(traces[0], 0)
    saver.save(traces[1], 1)
    before = {p.name: p.read_bytes() for p in saver.checkpoints()}
    monkeypatch.delenv("TRACE_CKPT_ALLOW_MODULES")  # the test scenario class is now refused: the save fails
    assert saver.save(traces[2], 2) is None
    assert {p.name: p.read_bytes() for p in saver.checkpoints()} == before
    assert saver.failed == [2] and len(warnings_seen) == 1
    assert warnings_seen[0].startswith("autosave of loop 2 to ") and "tests.builders" in warnings_seen[0]
    assert not list((tmp_path / "ck").glob(".tckpt-tmp-*"))


class TinyLoop(LoopBase, metaclass=LoopMeta):
    """A custom RD-Agent loop (RD-Agent's own LoopBase and LoopMeta) with two steps."""

    def __init__(self, data: Path, session_folder: Path) -> None:
        super().__init__()
        self.session_folder = session_folder
        self.trace = Trace(TinyScenario())
        self.data = data

    def propose(self, prev_out: dict[str, Any]) -> Any:
        return factor_experiment(prev_out[self.LOOP_IDX_KEY], [], self.data, write_outputs=False)

    def record(self, prev_out: dict[str, Any]) -> None:
        li = prev_out[self.LOOP_IDX_KEY]
        self.trace.sync_dag_parent_and_hist((prev_out["propose"], feedback(li, li % 2 == 0)), li)


def test_autosave_hooks_a_custom_loop_after_each_completed_loop(tmp_path: Path) -> None:
    loop = TinyLoop(data_folder(tmp_path / "data"), tmp_path / "log" / "__session__")
    saver = autosave(loop, tmp_path / "ck", keep=2)
    assert TinyLoop.steps == ["propose", "record"] and type(loop).steps == TinyLoop.steps
    asyncio.run(loop.run(loop_n=3))
    assert [p.name for p in saver.checkpoints()] == ["loop-0001.tckpt", "loop-0002.tckpt"]
    assert [read_manifest(p).counts.hist for p in saver.checkpoints()] == [2, 3]  # one per loop, as it ended
    assert len(saver.saved) == 3 and len(list_dumps(tmp_path / "log" / "__session__")) == 6
    assert type(pickle.loads(pickle.dumps(loop))) is TinyLoop  # dumps (and copies) are of the plain class
    loaded = LoopBase.load(tmp_path / "log", checkout=False)
    assert type(loaded) is TinyLoop and len(loaded.trace.hist) == 3

    again = autosave(loaded, tmp_path / "ck", keep=2)  # a loaded session: finished loops are not re-saved
    asyncio.run(loaded.run(loop_n=4))
    assert [p.name for p in again.saved] == ["loop-0003.tckpt"]
    assert read_manifest(tmp_path / "ck" / "loop-0003.tckpt").counts.hist == 4


def test_rdagent_arguments_are_those_of_the_apps_main() -> None:
    import importlib

    kwargs = parse_rdagent_args(["--loop_n", "5", "--step-n", "2", "--all-duration", "2h", "-C"])
    assert (kwargs["loop_n"], kwargs["step_n"], kwargs["all_duration"], kwargs["checkout"]) == (5, 2, "2h", False)
    assert parse_rdagent_args(["--loop-n", "5"])["loop_n"] == 5
    for module, _, _ in APPS.values():
        main = importlib.import_module(module).main
        assert set(kwargs) <= set(inspect.signature(main).parameters), module


def test_keep_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keep"):
        Autosaver(tmp_path, keep=0)
    assert sota_ic(tmp_path / "missing.tckpt") is None


# --- autosave to a URL, preservation policies ---------------------------------------------------------------


def test_keep_best_n_by_a_metric_the_user_names(tmp_path: Path) -> None:
    # SOTA after each loop (loops 2 and 4 rejected): IC 0.02, 0.09, 0.09, 0.03, 0.03; Rank IC 0.30, 0.10, 0.10, 0.20, 0.20
    decisions = [True, True, False, True, False]
    traces = _growing_traces(tmp_path, decisions, [0.02, 0.09, 0.5, 0.03, 0.01], [0.30, 0.10, 0.9, 0.20, 0.05])
    by_rank = Autosaver(tmp_path / "rank", keep=1, keep_best=2, metric="Rank IC")
    by_ic = Autosaver(tmp_path / "ic", keep=1, keep_best=1)
    for li, trace in enumerate(traces):
        by_rank.save(trace, li)
        by_ic.save(trace, li)
    # by Rank IC the best two are loop 0 (0.30) and the newer of the two 0.20s (loop 4, also the last)
    assert [p.name for p in by_rank.checkpoints()] == ["loop-0000.tckpt", "loop-0004.tckpt"]
    assert [p.name for p in by_ic.checkpoints()] == ["loop-0002.tckpt", "loop-0004.tckpt"]
    assert sota_metric(tmp_path / "rank" / "loop-0000.tckpt", "rank ic") == pytest.approx(0.30)
    with pytest.raises(ValueError, match="unknown metric"):
        Autosaver(tmp_path / "x", metric="sharpe-ish")


def test_autosave_to_a_url_keeps_the_policys_checkpoints_and_nothing_else_is_touched(tmp_path: Path) -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    prefix = "memory://tckpt-autosave/runs/r1/"
    for name in ("notes.txt", "loop-0000.tckpt.bak", "run.tckpt"):  # not autosave's names: never deleted
        fs.pipe_file(f"/tckpt-autosave/runs/r1/{name}", b"mine")
    traces = _growing_traces(tmp_path, [True, True, False, True, False], [0.02, 0.09, 0.5, 0.03, 0.01])
    saver = Autosaver(prefix, keep=2, keep_best=1)
    for li, trace in enumerate(traces):
        assert saver.save(trace, li) == f"{prefix}loop-{li:04d}.tckpt"
    try:
        assert saver.failed == [] and not (tmp_path / "memory:").exists() and not Path("memory:").exists()
        kept = ["loop-0002.tckpt", "loop-0003.tckpt", "loop-0004.tckpt"]  # the best SOTA IC (0.09) and the last two
        assert saver.checkpoints() == [prefix + n for n in kept]
        names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls("/tckpt-autosave/runs/r1", detail=False))
        assert names == sorted([*kept, "loop-0000.tckpt.bak", "notes.txt", "run.tckpt"])
        assert read_manifest(prefix + "loop-0004.tckpt").counts.hist == 5
        assert latest_checkpoint(prefix) == prefix + "loop-0004.tckpt"
    finally:
        fs.rm("/tckpt-autosave", recursive=True)


@pytest.fixture(scope="module")
def s3_env() -> Any:
    """A moto S3 server on 127.0.0.1 and its credentials as environment variables (the AWS SDK's way)."""
    import fsspec

    from tests.s3server import s3_server

    with s3_server() as server:
        saved = {k: os.environ.get(k) for k in server.env}
        os.environ.update(server.env)
        fsspec.filesystem("s3").clear_instance_cache()
        try:
            yield server
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            fsspec.filesystem("s3").clear_instance_cache()


@pytest.mark.slow
def test_run_autosaves_to_s3(s3_env: Any, tmp_path: Path) -> None:
    """`trace-ckpt run ... --autosave s3://bucket/prefix/`: the checkpoints land in the bucket, pruned there."""
    proc, log_dir = run_cli(
        tmp_path,
        "fin_factor",
        "--loop-n",
        "3",
        "--autosave",
        "s3://research/auto/r1/",
        "--keep",
        "1",
        "--keep-best",
        "1",
        "--metric",
        "IC",
        "--allow-module",
        "examples",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not WARNING.search(proc.stderr), proc.stderr[-3000:]
    assert "3 loops completed, 3 checkpoints written" in proc.stdout
    listed = s3_env.client.list_objects_v2(Bucket="research", Prefix="auto/r1/").get("Contents", [])
    keys = sorted(o["Key"] for o in listed)
    assert "auto/r1/loop-0002.tckpt" in keys and 1 <= len(keys) <= 2, keys
    assert all(k.startswith("auto/r1/loop-") and k.endswith(".tckpt") for k in keys)
    assert not list(tmp_path.rglob("*.tckpt"))  # nothing written locally (a Path would have made ./s3:/research/...)
    latest = latest_checkpoint("s3://research/auto/r1/")
    assert latest == "s3://research/auto/r1/loop-0002.tckpt"
    assert read_manifest(latest).metadata["source"]["path"] == str(log_dir / "__session__" / "2" / "4_record")


def test_run_refuses_an_unknown_metric_before_rdagent_starts(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(TRACE_CKPT), "run", "fin_factor", "--autosave", str(tmp_path / "ck"), "--metric", "sharpe-ish"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "unknown metric" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no RD-Agent log, no folder
