"""Crash safety: a save killed at any moment, or racing another save, never leaves a bad checkpoint."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

import pytest

from tests.builders import build_trace, data_folder, write_session
from trace_ckpt import read_manifest, restore_trace, verify_checkpoint
from trace_ckpt.cli import main
from trace_ckpt.errors import OutputExistsError
from trace_ckpt.storage.local import STALE_AFTER_S, TMP_PREFIX, clean_stale_temp_files

_fork = multiprocessing.get_context("fork")


def _cli(args: list[str]) -> None:
    main(args)


def _big_run(root: Path, nodes: int, seed: int) -> Path:
    trace = build_trace([()] * nodes, [True] * nodes, data_folder(root / "data"), write_outputs=False)
    rng = random.Random(seed)
    for exp, _ in trace.hist:  # incompressible artifacts, so a save takes a while
        (exp.experiment_workspace.workspace_path / "pred.pkl").write_bytes(rng.randbytes(3_000_000))
    return write_session(root / f"run{seed}", trace, loops=1)


def _temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(TMP_PREFIX)]


def test_sigkill_during_overwrite_never_damages_the_target(tmp_path: Path) -> None:
    run = _big_run(tmp_path, nodes=8, seed=1)
    out = tmp_path / "out" / "run.tckpt"
    out.parent.mkdir()
    t = time.perf_counter()
    p = _fork.Process(target=_cli, args=(["save", str(run), str(out)],))
    p.start()
    p.join()
    full = time.perf_counter() - t
    assert p.exitcode == 0 and verify_checkpoint(out).ok
    rng = random.Random(7)
    killed_mid_write = 0
    for i in range(20):
        before = out.read_bytes()
        p = _fork.Process(target=_cli, args=(["save", str(run), str(out), "--level", str(1 + i % 5), "--force"],))
        p.start()
        time.sleep(rng.uniform(0, full))
        os.kill(p.pid, signal.SIGKILL)
        p.join()
        killed_mid_write += bool(_temp_files(out.parent))
        report = verify_checkpoint(out)
        assert report.ok, f"kill {i}: {report.bad_sections}"
        if p.exitcode == -signal.SIGKILL:
            after = out.read_bytes()
            assert after == before or read_manifest(out).counts.hist == 8  # old file, or a whole new one
    assert killed_mid_write >= 5, "the kills should land while the temp file is being written"
    restored = restore_trace(out, workspace_root=tmp_path / "ws")
    assert len(restored.hist) == 8


def test_leftover_temp_files_are_cleaned_by_the_next_save(tmp_path: Path) -> None:
    run = _big_run(tmp_path, nodes=1, seed=2)
    stale = tmp_path / f"{TMP_PREFIX}killed.part"
    stale.write_bytes(b"half a checkpoint")
    old = time.time() - STALE_AFTER_S - 5
    os.utime(stale, (old, old))
    young = tmp_path / f"{TMP_PREFIX}young.part"
    young.write_bytes(b"a save that just started")
    with pytest.raises(SystemExit) as e:
        main(["save", str(run), str(tmp_path / "run.tckpt")])
    assert e.value.code == 0
    assert not stale.exists() and young.exists()


def test_a_locked_temp_file_is_not_removed(tmp_path: Path) -> None:
    import fcntl

    busy = tmp_path / f"{TMP_PREFIX}busy.part"
    busy.write_bytes(b"in progress")
    old = time.time() - STALE_AFTER_S - 5
    os.utime(busy, (old, old))
    fd = os.open(busy, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert clean_stale_temp_files(tmp_path) == 0 and busy.exists()
    finally:
        os.close(fd)
    assert clean_stale_temp_files(tmp_path) == 1 and not busy.exists()


def test_two_concurrent_saves_leave_one_whole_file(tmp_path: Path) -> None:
    run_a = _big_run(tmp_path / "a", nodes=3, seed=3)
    run_b = _big_run(tmp_path / "b", nodes=5, seed=4)
    out = tmp_path / "run.tckpt"
    procs = [_fork.Process(target=_cli, args=(["save", str(r), str(out)],)) for r in (run_a, run_b)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    # one save lands; the other finds the file there (before its work or at its commit) and replaces nothing:
    # no --force was given (before the output rule, both exited 0 and the last rename won)
    assert sorted(p.exitcode for p in procs) == [0, OutputExistsError.exit_code]
    assert verify_checkpoint(out).ok
    assert read_manifest(out).counts.hist in (3, 5)
    assert _temp_files(tmp_path) == []
