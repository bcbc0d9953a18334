"""A failed save leaves the previous checkpoint untouched and no temporary file behind."""

from __future__ import annotations

import resource
import signal
from pathlib import Path

import pytest

from tests.builders import ALLOW, build_trace, data_folder
from trace_ckpt import SaveError, restore_trace, save_trace, verify_checkpoint


@pytest.fixture()
def saved(tmp_path: Path):
    trace = build_trace([(), (0,)], [True, True], data_folder(tmp_path / "data"))
    path = tmp_path / "out" / "run.tckpt"
    path.parent.mkdir()
    save_trace(trace, path)
    return trace, path


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != "run.tckpt")


def test_unpicklable_trace_keeps_the_previous_file(saved) -> None:
    trace, path = saved
    before = path.read_bytes()
    trace.hist[1][0].plan = {"gen": (i for i in range(3))}  # neither pickle nor dill can hold a generator
    with pytest.raises(SaveError, match="cannot be pickled"):
        save_trace(trace, path)
    assert path.read_bytes() == before
    assert _leftovers(path.parent) == []


def test_write_error_keeps_the_previous_file(saved) -> None:
    trace, path = saved
    before = path.read_bytes()
    trace.hist[1][0].stdout = "new log line\n" * 50_000
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) // 4, hard))  # the disk is "full" early on
    try:
        with pytest.raises(SaveError, match="previous file is untouched"):
            save_trace(trace, path, level=1)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert path.read_bytes() == before
    assert _leftovers(path.parent) == []
    assert verify_checkpoint(path).bad_sections == []


def test_missing_folder_is_a_one_line_error(saved, tmp_path: Path) -> None:
    trace, _ = saved
    with pytest.raises(SaveError, match="does not exist") as e:
        save_trace(trace, tmp_path / "no" / "such" / "dir" / "run.tckpt")
    assert "\n" not in str(e.value)


def test_overwrite_replaces_the_file_whole(saved, tmp_path: Path) -> None:
    trace, path = saved
    trace.hist[0][1].reason = "revised after review"
    save_trace(trace, path)
    restored = restore_trace(path, workspace_root=tmp_path / "ws", allow_modules=ALLOW)
    assert restored.hist[0][1].reason == "revised after review"
    assert _leftovers(path.parent) == []
