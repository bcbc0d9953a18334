"""The storage door on local paths and URLs alike (no replacing unless asked, exact reads that notice a
shrinking file, listings), the autosave folder's latest checkpoint, and the preservation policies.

No RD-Agent here: the door and the policies are below it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from trace_ckpt.errors import CheckpointNotFoundError, CorruptCheckpointError, OutputExistsError, SaveError
from trace_ckpt.storage import (
    atomic_write,
    check_output,
    is_folder,
    latest_checkpoint,
    list_files,
    make_folder,
    open_read,
    remove,
    size_of,
)
from trace_ckpt.storage.local import TMP_PREFIX
from trace_ckpt.storage.preservation import AnyOf, BestN, LatestN, Saved, autosaves


@pytest.fixture
def mem() -> Iterator[str]:
    """A fresh memory:// folder, removed afterwards."""
    root = f"tckpt-{uuid.uuid4().hex[:8]}"
    yield f"memory://{root}"
    fs = fsspec.filesystem("memory")
    if fs.exists(f"/{root}"):
        fs.rm(f"/{root}", recursive=True)


def _put(url: str, data: bytes) -> None:
    fs, path = fsspec.core.url_to_fs(url)
    fs.pipe_file(path, data)


def _get(url: str) -> bytes:
    fs, path = fsspec.core.url_to_fs(url)
    return fs.cat_file(path)


# --- writing: never over an existing file unless asked ----------------------------------------------------


def test_local_write_refuses_an_existing_file_before_the_work(tmp_path: Path) -> None:
    target = tmp_path / "run.tckpt"
    target.write_bytes(b"precious")
    ran = False
    with pytest.raises(OutputExistsError, match="exists: pass overwrite=True") as e, atomic_write(target) as f:
        ran = True
        f.write(b"new")
    assert not ran and e.value.exit_code == SaveError.exit_code == 7
    assert target.read_bytes() == b"precious" and os.listdir(tmp_path) == ["run.tckpt"]
    with atomic_write(target, overwrite=True) as f:
        f.write(b"new")
    assert target.read_bytes() == b"new" and os.listdir(tmp_path) == ["run.tckpt"]


def test_local_write_never_replaces_a_file_that_appears_while_it_writes(tmp_path: Path) -> None:
    """The commit is a link (fails on an existing name), not a check followed by a rename."""
    target = tmp_path / "run.tckpt"
    with pytest.raises(OutputExistsError), atomic_write(target) as f:
        f.write(b"ours")
        target.write_bytes(b"another writer's")  # lands between our start and our commit
    assert target.read_bytes() == b"another writer's"
    assert [p.name for p in tmp_path.iterdir()] == ["run.tckpt"]  # our temp file is gone


def test_remote_write_refuses_an_existing_object_unless_asked(mem: str) -> None:
    url = f"{mem}/runs/run.tckpt"
    _put(url, b"precious")
    with pytest.raises(OutputExistsError, match="exists"), atomic_write(url) as f:
        f.write(b"new")
    assert _get(url) == b"precious"
    with atomic_write(url, overwrite=True) as f:
        f.write(b"new")
    assert _get(url) == b"new"
    assert [e.url for e in list_files(f"{mem}/runs")] == [url]  # no temp object left beside it


def test_check_output_fails_fast_on_what_cannot_be_a_new_output(tmp_path: Path, mem: str) -> None:
    (tmp_path / "old.tckpt").write_bytes(b"x")
    with pytest.raises(OutputExistsError):
        check_output(tmp_path / "old.tckpt")
    check_output(tmp_path / "old.tckpt", overwrite=True)
    check_output(tmp_path / "new.tckpt")
    with pytest.raises(SaveError, match="does not exist"):
        check_output(tmp_path / "no" / "new.tckpt")
    with pytest.raises(SaveError, match="is a folder"):
        check_output(tmp_path)
    _put(f"{mem}/a/old.tckpt", b"x")
    with pytest.raises(OutputExistsError):
        check_output(f"{mem}/a/old.tckpt")
    with pytest.raises(SaveError, match="is a folder"):
        check_output(f"{mem}/a")
    check_output(f"{mem}/a/new.tckpt")


# --- reading: exact ranges, a file that changes is an error -----------------------------------------------


@pytest.mark.parametrize("where", ["local", "memory"])
def test_a_file_that_shrinks_while_it_is_read_is_an_error_not_a_short_read(
    where: str, tmp_path: Path, mem: str
) -> None:
    data = bytes(range(256)) * 40
    if where == "local":
        path: str = str(tmp_path / "run.tckpt")
        Path(path).write_bytes(data)
    else:
        path = f"{mem}/run.tckpt"
        _put(path, data)
    with open_read(path) as f:
        assert f.read(100) == data[:100]
        f.seek(-10, os.SEEK_END)
        assert f.read() == data[-10:]
        if where == "local":
            os.truncate(path, 5000)
        else:
            _put(path, data[:5000])
        f.seek(6000)
        with pytest.raises(CorruptCheckpointError, match=r"changed while it was read \(10240 bytes, now 5000\)"):
            f.read(100)


def test_reads_of_missing_files_and_folders_are_typed(tmp_path: Path, mem: str) -> None:
    with pytest.raises(CheckpointNotFoundError, match="check the path"):
        size_of(tmp_path / "missing.tckpt")
    with pytest.raises(CorruptCheckpointError, match="is a folder, not a checkpoint file"):
        size_of(tmp_path)
    with pytest.raises(CheckpointNotFoundError, match="NUL character"), open_read(str(tmp_path / "a\0b")):
        pass
    with pytest.raises(CheckpointNotFoundError, match="check the URL"):
        size_of(f"{mem}/missing.tckpt")


# --- listing ----------------------------------------------------------------------------------------------


def test_listing_is_the_same_for_a_folder_and_a_url(tmp_path: Path, mem: str) -> None:
    names = ["b.tckpt", "a.tckpt", f"{TMP_PREFIX}x.part"]
    for name in names:
        (tmp_path / name).write_bytes(b"12345")
        _put(f"{mem}/runs/{name}", b"12345")
    (tmp_path / "sub").mkdir()
    _put(f"{mem}/runs/sub/c.tckpt", b"1")
    assert [(e.url, e.size) for e in list_files(tmp_path)] == [
        (str(tmp_path / "a.tckpt"), 5),
        (str(tmp_path / "b.tckpt"), 5),
    ]
    assert [(e.url, e.size) for e in list_files(f"{mem}/runs/")] == [
        (f"{mem}/runs/a.tckpt", 5),
        (f"{mem}/runs/b.tckpt", 5),
    ]
    for file in (tmp_path / "a.tckpt", f"{mem}/runs/a.tckpt"):
        with pytest.raises(CorruptCheckpointError, match="is a file, not a folder"):
            list_files(file)
        assert not is_folder(file)
    assert is_folder(tmp_path) and is_folder(f"{mem}/runs")


def test_make_folder_and_remove(tmp_path: Path, mem: str) -> None:
    for folder in (tmp_path / "a" / "b", f"{mem}/a/b"):
        make_folder(folder)
        make_folder(folder)  # already there: fine
        assert list_files(folder) == []
        with atomic_write(f"{folder}/x.tckpt") as f:
            f.write(b"x")
        remove(f"{folder}/x.tckpt")
        remove(f"{folder}/x.tckpt")  # already gone: fine
        assert list_files(folder) == []


# --- an autosave folder -----------------------------------------------------------------------------------


def test_latest_checkpoint_is_the_highest_loop_of_autosaves_own_names(tmp_path: Path, mem: str) -> None:
    names = ["loop-0002.tckpt", "loop-10000.tckpt", "loop-0009.tckpt", "run.tckpt", "loop-0099.tckpt.bak", "loop-1.txt"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
        _put(f"{mem}/auto/{name}", b"x")
    assert latest_checkpoint(tmp_path) == str(tmp_path / "loop-10000.tckpt")
    assert latest_checkpoint(f"{mem}/auto/") == f"{mem}/auto/loop-10000.tckpt"
    assert [s.loop for s in autosaves(tmp_path)] == [2, 9, 10000]
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointNotFoundError, match="no autosave checkpoint") as e:
        latest_checkpoint(tmp_path / "empty")
    assert e.value.exit_code == 3
    with pytest.raises(CheckpointNotFoundError):
        latest_checkpoint(tmp_path / "missing")


def _saved(n: int) -> list[Saved]:
    return [Saved(i, f"loop-{i:04d}.tckpt", 1) for i in range(n)]


def test_latest_n_keeps_the_last_n() -> None:
    c = _saved(5)
    assert LatestN(2).should_preserve(c, lambda s: None) == [False, False, False, True, True]
    assert LatestN(None).should_preserve(c, lambda s: None) == [True] * 5
    assert LatestN(9).should_preserve(c, lambda s: None) == [True] * 5
    with pytest.raises(ValueError):
        LatestN(-1)


def test_best_n_ranks_by_the_score_newest_of_equals() -> None:
    c = _saved(6)
    scores = {0: 0.02, 1: None, 2: 0.09, 3: 0.09, 4: -0.5, 5: 0.01}

    def score(s: Saved) -> float | None:
        return scores[s.loop]

    assert BestN(1).should_preserve(c, score) == [False, False, False, True, False, False]
    assert BestN(2).should_preserve(c, score) == [False, False, True, True, False, False]
    assert BestN(1, mode="min").should_preserve(c, score) == [False, False, False, False, True, False]
    keep = BestN(1, keep_without_metric=True).should_preserve(c, score)
    assert keep == [False, True, False, True, False, False]
    assert BestN(0).should_preserve(c, score) == [False] * 6
    both = AnyOf((LatestN(1), BestN(1))).should_preserve(c, score)
    assert both == [False, False, False, True, False, True]
    with pytest.raises(ValueError):
        BestN(1, mode="up")  # type: ignore[arg-type]


def test_reading_a_local_checkpoint_does_not_import_fsspec(tmp_path: Path) -> None:
    """open and size of a local file are the os calls LocalFileSystem makes: inspect pays no fsspec import."""
    (tmp_path / "run.tckpt").write_bytes(b"0123456789")
    code = (
        "import sys; from trace_ckpt.storage import open_read, size_of, atomic_write\n"
        f"p = {str(tmp_path / 'run.tckpt')!r}\n"
        "with open_read(p) as f: f.seek(2); assert f.read(3) == b'234'\n"
        "assert size_of(p) == 10\n"
        "with atomic_write(p + '.new') as f: f.write(b'x')\n"
        "print('fsspec' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
