"""Restore stays under its root: whatever a checksum-valid file's files index says, and whatever the root
already holds (links left by an earlier restore, or put there by anyone), nothing is written outside it,
and every workspace of the restored trace points under it. Issue 13, class 3."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from rdagent.core.experiment import FBWorkspace

from tests.builders import ALLOW, build_trace, data_folder
from trace_ckpt import CheckpointError, CorruptCheckpointError, WorkspaceConflictError, restore_trace, save_trace
from trace_ckpt.format.container import ContainerWriter
from trace_ckpt.format.reader import ContainerReader
from trace_ckpt.rdagent.trace import iter_workspaces


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An honest checkpoint of a one-node trace: two workspace folders, files, a link to the data file."""
    tmp = tmp_path_factory.mktemp("attack-base")
    trace = build_trace([()], [True], data_folder(tmp / "data"))
    save_trace(trace, tmp / "base.tckpt")
    return tmp / "base.tckpt"


def _reseal(src: Path, dst: Path, edit: Callable[[dict], object]) -> Path:
    """``src`` with its files index passed through ``edit``, written with every checksum valid."""
    with open(src, "rb") as f:
        reader = ContainerReader(f)
        manifest = reader.manifest
        sections = [(s, reader.read_section(s)) for s in manifest.sections]
    with open(dst, "wb") as f:
        w = ContainerWriter(f)
        for s, raw in sections:
            if s.name == "files":
                index = json.loads(raw)
                edit(index)
                raw = json.dumps(index).encode()
            w.add_bytes(s.name, s.kind, raw, meta=s.meta)
        w.finish(manifest)
    return dst


def _files_index(path: Path) -> dict:
    with open(path, "rb") as f:
        reader = ContainerReader(f)
        return json.loads(reader.read_section(reader.section("files")))


def _a_file(index: dict) -> dict:
    """A stored file entry (its digest is in the blob index)."""
    return next(e for ws in index["workspaces"].values() for e in ws["entries"] if e["type"] == "file")


def _restore(path: Path, root: Path, **kw) -> object:
    return restore_trace(path, workspace_root=root, allow_modules=ALLOW, **kw)


@pytest.fixture
def outside(tmp_path: Path) -> Iterator[Path]:
    """A folder outside every restore root: it must stay empty."""
    d = tmp_path / "outside"
    d.mkdir()
    yield d
    assert sorted(os.listdir(d)) == [], "a restore wrote outside its root"


def _refused(exc: type[CheckpointError], fn: Callable[[], object], code: int | None = None) -> CheckpointError:
    with pytest.raises(CheckpointError) as e:
        fn()
    assert isinstance(e.value, exc), repr(e.value)
    assert "\n" not in str(e.value)
    if code is not None:
        assert e.value.exit_code == code
    return e.value


def _with_entries(key_of: Callable[[dict], str], *extra: dict) -> Callable[[dict], None]:
    def edit(index: dict) -> None:
        index["workspaces"][key_of(index)]["entries"].extend(extra)

    return edit


def _first_key(index: dict) -> str:
    return next(k for k, ws in index["workspaces"].items() if ws["exists"])


# (a) a files-index key whose last part is `..`: main put that folder at root/.., i.e. outside the root
def test_a_key_ending_in_dotdot_is_refused(base: Path, tmp_path: Path) -> None:
    def edit(index: dict) -> None:
        key = _first_key(index)
        index["workspaces"][key + "/.."] = index["workspaces"].pop(key)

    evil = _reseal(base, tmp_path / "evil.tckpt", edit)
    box = tmp_path / "box"
    box.mkdir()
    _refused(CorruptCheckpointError, lambda: _restore(evil, box / "ws"), code=4)
    assert sorted(os.listdir(box)) in ([], ["ws"])  # nothing beside the root
    assert not any(p.is_file() for p in box.rglob("*"))


def test_a_key_with_a_nul_byte_is_refused(base: Path, tmp_path: Path, outside: Path) -> None:
    def edit(index: dict) -> None:
        key = _first_key(index)
        index["workspaces"][key + "\0x"] = index["workspaces"].pop(key)

    evil = _reseal(base, tmp_path / "evil.tckpt", edit)
    _refused(CorruptCheckpointError, lambda: _restore(evil, tmp_path / "ws"), code=4)  # main: ValueError


@pytest.mark.parametrize(
    "path",
    ["/abs", "../x", "a/../../x", "", ".", "a/./b", "./a", "a//b", "a/", "a\0b", "a/.."],
)
def test_entry_paths_that_are_not_plain_relative_paths_are_refused(
    base: Path, tmp_path: Path, outside: Path, path: str
) -> None:
    def edit(index: dict) -> None:
        e = dict(_a_file(index), path=path)
        index["workspaces"][_first_key(index)]["entries"].append(e)

    evil = _reseal(base, tmp_path / "evil.tckpt", edit)
    _refused(CorruptCheckpointError, lambda: _restore(evil, tmp_path / "ws"), code=4)
    assert not (tmp_path / "ws").exists()  # refused before anything is written


def test_a_file_under_a_file_entry_is_refused(base: Path, tmp_path: Path, outside: Path) -> None:
    def edit(index: dict) -> None:
        f = _a_file(index)
        index["workspaces"][_first_key(index)]["entries"] += [dict(f, path="a"), dict(f, path="a/b")]

    evil = _reseal(base, tmp_path / "evil.tckpt", edit)
    _refused(CorruptCheckpointError, lambda: _restore(evil, tmp_path / "ws"), code=4)  # main: RestoreError, mid-write


def test_a_path_listed_twice_is_refused(base: Path, tmp_path: Path, outside: Path) -> None:
    def edit(index: dict) -> None:
        entries = index["workspaces"][_first_key(index)]["entries"]
        entries.append({"path": _a_file(index)["path"], "type": "symlink", "target": str(outside)})

    evil = _reseal(base, tmp_path / "evil.tckpt", edit)
    _refused(CorruptCheckpointError, lambda: _restore(evil, tmp_path / "ws"), code=4)


@pytest.mark.parametrize("spelling", ["k", "k/", "./k"])
def test_a_file_under_a_link_entry_is_refused_however_the_link_is_spelled(
    base: Path, tmp_path: Path, outside: Path, spelling: str
) -> None:
    def edit(index: dict) -> None:
        entries = index["workspaces"][_first_key(index)]["entries"]
        entries += [{"path": spelling, "type": "symlink", "target": str(outside)}, dict(_a_file(index), path="k/x")]

    evil = _reseal(base, tmp_path / "evil.tckpt", edit)
    _refused(CorruptCheckpointError, lambda: _restore(evil, tmp_path / "ws"), code=4)


@pytest.mark.parametrize("overwrite", [False, True], ids=["no-overwrite", "overwrite"])
def test_b_a_link_spelled_k_slash_then_a_file_through_it_on_a_second_restore(
    base: Path, tmp_path: Path, outside: Path, overwrite: bool
) -> None:
    """(b) An honest-looking first file leaves k -> outside; the second lists the same link as `k/` (main's
    under-a-link check compared strings) and a file k/x, which main wrote to outside/x."""
    root = _restore_a_link_to(outside, base, tmp_path)

    def edit(index: dict) -> None:
        index["workspaces"][_first_key(index)]["entries"] += [
            {"path": "k/", "type": "symlink", "target": str(outside)},
            dict(_a_file(index), path="k/x"),
        ]

    second = _reseal(base, tmp_path / "second.tckpt", edit)
    _refused(CorruptCheckpointError, lambda: _restore(second, root, overwrite=overwrite), code=4)


def _restore_a_link_to(outside: Path, base: Path, tmp_path: Path) -> Path:
    """Restore a file whose first workspace holds a link k -> ``outside`` into a new root; return the root."""
    first = _reseal(
        base,
        tmp_path / "first.tckpt",
        _with_entries(_first_key, {"path": "k", "type": "symlink", "target": str(outside)}),
    )
    root = tmp_path / "ws"
    _restore(first, root)
    assert sum((p / "k").is_symlink() for p in root.iterdir()) == 1
    return root


@pytest.mark.parametrize("overwrite", [False, True], ids=["no-overwrite", "overwrite"])
def test_c_a_link_left_by_an_earlier_restore_is_never_followed(
    base: Path, tmp_path: Path, outside: Path, overwrite: bool
) -> None:
    """(c) The first restore leaves k -> outside (links may point anywhere); the second file has a plain
    file entry k/x. main followed the link and wrote outside/x."""
    root = _restore_a_link_to(outside, base, tmp_path)
    folder = next(p for p in root.iterdir() if (p / "k").is_symlink())

    def edit(index: dict) -> None:
        index["workspaces"][_first_key(index)]["entries"].append(dict(_a_file(index), path="k/x"))

    second = _reseal(base, tmp_path / "second.tckpt", edit)
    if not overwrite:
        err = _refused(WorkspaceConflictError, lambda: _restore(second, root), code=8)
        assert "link" in str(err)
        assert (folder / "k").is_symlink()  # nothing changed
    else:
        _restore(second, root, overwrite=True)  # the link is replaced by a real folder inside the root
        assert not (folder / "k").is_symlink() and (folder / "k" / "x").is_file()


@pytest.mark.parametrize("overwrite", [False, True], ids=["no-overwrite", "overwrite"])
def test_a_link_in_the_root_at_a_workspace_folders_name_is_never_followed(
    base: Path, tmp_path: Path, outside: Path, overwrite: bool
) -> None:
    """The root already holds <folder name> -> outside (a previous restore's link, or anyone's): with
    overwrite main wrote every file of that workspace into outside."""
    root = tmp_path / "ws"
    root.mkdir()
    for key in _files_index(base)["workspaces"]:
        (root / Path(key).name).symlink_to(outside, target_is_directory=True)
    if not overwrite:
        _refused(WorkspaceConflictError, lambda: _restore(base, root), code=8)
    else:
        trace = _restore(base, root, overwrite=True)
        for ws in iter_workspaces(trace):
            assert not Path(ws.workspace_path).is_symlink() and Path(ws.workspace_path).parent == root.absolute()


def test_a_link_where_a_sub_folder_goes_is_never_followed(tmp_path: Path, outside: Path) -> None:
    """An honest checkpoint with a sub-folder (mlruns/...), restored into a root where that sub-folder is a link."""
    trace = build_trace([()], [True], data_folder(tmp_path / "data"))
    ws = trace.hist[0][0].sub_workspace_list[0].workspace_path
    (ws / "mlruns" / "0").mkdir(parents=True)
    (ws / "mlruns" / "0" / "meta.yaml").write_text("x")
    save_trace(trace, tmp_path / "run.tckpt")
    root = tmp_path / "ws"
    root.mkdir()
    (root / ws.name).mkdir()
    (root / ws.name / "mlruns").symlink_to(outside, target_is_directory=True)
    _refused(WorkspaceConflictError, lambda: _restore(tmp_path / "run.tckpt", root), code=8)
    _restore(tmp_path / "run.tckpt", root, overwrite=True)
    assert (root / ws.name / "mlruns" / "0" / "meta.yaml").read_text() == "x"
    assert not (root / ws.name / "mlruns").is_symlink()


# (d) a workspace the files index does not list: main left its workspace_path where the file said, and
# RD-Agent writes into (and clears) a workspace's folder
def test_d_a_workspace_missing_from_the_files_index_is_moved_under_the_root(tmp_path: Path, outside: Path) -> None:
    trace = build_trace([()], [True], data_folder(tmp_path / "data"))
    trace.hist[0][0].experiment_workspace.workspace_path = outside / "victim"
    save_trace(trace, tmp_path / "run.tckpt")
    evil = _reseal(
        tmp_path / "run.tckpt", tmp_path / "evil.tckpt", lambda index: index["workspaces"].pop(str(outside / "victim"))
    )
    root = tmp_path / "ws"
    restored = _restore(evil, root)
    paths = [Path(ws.workspace_path) for ws in iter_workspaces(restored)]
    assert len(set(paths)) == len(paths) == 3  # the baseline's, the node's experiment and sub workspace
    for ws in iter_workspaces(restored):
        assert Path(ws.workspace_path).parent == root.absolute()
        ws.inject_files(**{"planted.py": "x = 1"})  # what RD-Agent does with a workspace


def test_a_workspace_held_anywhere_in_the_graph_is_moved_under_the_root(tmp_path: Path, outside: Path) -> None:
    """A workspace object outside hist's experiment/sub workspaces (here an attribute of a hypothesis)
    is not in the files index; it still ends up under the root."""
    trace = build_trace([()], [True], data_folder(tmp_path / "data"))
    hidden = FBWorkspace()
    hidden.workspace_path = outside / "victim"
    trace.hist[0][0].hypothesis.extra = {"ws": [hidden]}
    save_trace(trace, tmp_path / "run.tckpt")
    root = tmp_path / "ws"
    restored = _restore(tmp_path / "run.tckpt", root)
    moved = restored.hist[0][0].hypothesis.extra["ws"][0]
    assert Path(moved.workspace_path).parent == root.absolute()
    assert moved.workspace_path not in {ws.workspace_path for ws in iter_workspaces(restored)}
    moved.inject_files(**{"planted.py": "x = 1"})


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def test_set_uid_set_gid_and_sticky_bits_are_never_restored(base: Path, tmp_path: Path, outside: Path) -> None:
    def edit(index: dict) -> None:
        for ws in index["workspaces"].values():
            for e in ws["entries"]:
                if e["type"] in ("file", "dir"):
                    e["mode"] = 0o7777

    evil = _reseal(base, tmp_path / "evil.tckpt", edit)
    with _umask(0o022):
        _restore(evil, tmp_path / "ws")
    files = [p for p in (tmp_path / "ws").rglob("*") if not p.is_symlink()]
    assert files
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) & 0o7000 == 0, p
        assert stat.S_IMODE(p.stat().st_mode) & 0o022 == 0, p


def test_the_umask_wins_over_the_stored_mode(base: Path, tmp_path: Path) -> None:
    with _umask(0o077):
        _restore(base, tmp_path / "ws")
    files = [p for p in (tmp_path / "ws").rglob("*") if p.is_file() and not p.is_symlink()]
    assert files
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) & 0o077 == 0, (p, oct(p.stat().st_mode))  # main: 0o644


def test_links_are_restored_as_stored_even_when_they_point_outside(base: Path, tmp_path: Path, outside: Path) -> None:
    """Links may point anywhere (data files are linked into workspaces); they are re-created, never followed."""
    evil = _reseal(
        base,
        tmp_path / "evil.tckpt",
        _with_entries(_first_key, {"path": "out", "type": "symlink", "target": str(outside)}),
    )
    _restore(evil, tmp_path / "ws")
    links = [p for p in (tmp_path / "ws").rglob("*") if p.is_symlink()]
    assert any(os.readlink(p) == str(outside) for p in links)
    _restore(evil, tmp_path / "ws")  # a second restore over the same link: the same link, nothing followed


def test_a_small_handle_budget_restores_the_same_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Folder handles are kept up to a budget (a share of the file limit); past it they are closed and
    reopened, still one name at a time. Two handles for three workspaces with sub-folders: the same result."""
    from tests.compare import snapshot_folder
    from trace_ckpt.codec import restore

    trace = build_trace([(), (0,)], [True, True], data_folder(tmp_path / "data"))
    for ws in iter_workspaces(trace):
        (Path(ws.workspace_path) / "mlruns" / "0").mkdir(parents=True, exist_ok=True)
        (Path(ws.workspace_path) / "mlruns" / "0" / "meta.yaml").write_text(str(ws.workspace_path))
    save_trace(trace, tmp_path / "run.tckpt")
    _restore(tmp_path / "run.tckpt", tmp_path / "normal")
    monkeypatch.setattr(restore, "handle_budget", lambda: 2)
    _restore(tmp_path / "run.tckpt", tmp_path / "small")
    _restore(tmp_path / "run.tckpt", tmp_path / "small")  # again, over the same folders
    assert snapshot_folder(tmp_path / "small") == snapshot_folder(tmp_path / "normal")
    assert len(snapshot_folder(tmp_path / "normal")) > 20


def test_a_deep_entry_is_made_one_folder_at_a_time_and_an_overlong_one_is_refused(
    base: Path, tmp_path: Path, outside: Path
) -> None:
    """1,500 nested folders (main: RecursionError in os.makedirs) are made without recursion; a path longer
    than a save could have read (4,096) is a crafted index (exit 4)."""
    deep = "d/" * 1500 + "x"
    evil = _reseal(base, tmp_path / "deep.tckpt", lambda i: _with_entries(_first_key, dict(_a_file(i), path=deep))(i))
    trace = _restore(evil, tmp_path / "ws")
    folder = next(Path(ws.workspace_path) for ws in iter_workspaces(trace) if (Path(ws.workspace_path) / "d").is_dir())
    fd = os.open(folder, os.O_RDONLY)
    try:
        for _ in range(1500):
            nxt = os.open("d", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nxt
        assert stat.S_ISREG(os.stat("x", dir_fd=fd, follow_symlinks=False).st_mode)
    finally:
        os.close(fd)
    d = folder / "d"  # removed one level at a time here: shutil.rmtree (pytest's cleanup) recurses per level
    while (d / "d").is_dir():
        os.rename(d / "d", folder / "e")
        os.rmdir(d)
        os.rename(folder / "e", d)
    (d / "x").unlink()
    d.rmdir()

    too_long = _reseal(
        base, tmp_path / "long.tckpt", lambda i: _with_entries(_first_key, dict(_a_file(i), path="d/" * 2100 + "x"))(i)
    )
    _refused(CorruptCheckpointError, lambda: _restore(too_long, tmp_path / "ws2"), code=4)
