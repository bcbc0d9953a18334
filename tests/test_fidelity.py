"""A restored Trace equals the original on every field, shared objects stay shared, and every
workspace file comes back byte for byte under the new root."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from rdagent.core.conf import RD_AGENT_SETTINGS

from tests.builders import ALLOW, build_trace, data_folder
from tests.compare import assert_same_graph, snapshot_folder
from trace_ckpt import WorkspaceConflictError, read_manifest, restore_trace, save_trace
from trace_ckpt.rdagent.trace import iter_workspaces

# two roots (0 and 3), a branch at node 1 (children 2 and 5), loop ids out of hist order
PARENTS = [(), (0,), (1,), (), (3,), (1,)]
DECISIONS = [True, False, True, True, False, True]
LOOP_IDS = [0, 2, 1, 3, 5, 4]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return data_folder(tmp_path_factory.mktemp("data"))


def _workspaces(trace) -> dict[str, dict]:
    return {str(ws.workspace_path): snapshot_folder(ws.workspace_path) for ws in iter_workspaces(trace)}


@pytest.mark.parametrize("quant", [False, True], ids=["Trace", "QuantTrace"])
def test_roundtrip_every_field_identity_and_files(tmp_path: Path, data: Path, quant: bool) -> None:
    trace = build_trace(PARENTS, DECISIONS, data, quant=quant, loop_ids=LOOP_IDS)
    before = _workspaces(trace)
    assert sum(len(v) for v in before.values()) > 50  # real folders with files, links and sub-folders
    save_trace(trace, tmp_path / "run.tckpt")
    for path in before:  # the originals are gone: everything must come from the checkpoint
        shutil.rmtree(path, ignore_errors=True)

    restored = restore_trace(tmp_path / "run.tckpt", workspace_root=tmp_path / "new", allow_modules=ALLOW)

    path_map = {old: str((tmp_path / "new" / Path(old).name).absolute()) for old in before}
    compared = assert_same_graph(trace, restored, path_map=path_map)
    assert compared > 500  # the walk went deep, not just the top level
    assert restored.dag_parent == PARENTS
    assert restored.idx2loop_id == dict(enumerate(LOOP_IDS))
    # the same experiment object is referenced from hist and from several based_experiments
    last = restored.hist[5][0]
    assert last.based_experiments[1] is restored.hist[0][0]
    assert last.based_experiments[0] is restored.hist[1][0].based_experiments[0]
    if quant:
        for arm in ("factor", "model"):
            assert (restored.controller.bandit.precision[arm] == trace.controller.bandit.precision[arm]).all()
        fresh = type(trace.controller)()
        assert not (restored.controller.bandit.precision["factor"] == fresh.bandit.precision["factor"]).all()
    for old, snap in before.items():
        assert snapshot_folder(path_map[old]) == snap, old
    # data files are linked, never copied
    ws = restored.hist[0][0].sub_workspace_list[0].workspace_path
    assert (ws / "daily_pv.h5").is_symlink()
    assert Path(ws / "daily_pv.h5").resolve() == (data / "daily_pv.h5").resolve()


def test_restore_defaults_to_rdagent_workspace_path(tmp_path: Path, data: Path) -> None:
    trace = build_trace([(), (0,)], [True, True], data)
    save_trace(trace, tmp_path / "run.tckpt")
    restored = restore_trace(tmp_path / "run.tckpt", allow_modules=ALLOW)
    for ws in iter_workspaces(restored):
        assert Path(ws.workspace_path).parent == Path(RD_AGENT_SETTINGS.workspace_path).absolute()


def test_restore_never_overwrites_a_different_file(tmp_path: Path, data: Path) -> None:
    trace = build_trace([(), (0,)], [True, False], data)
    save_trace(trace, tmp_path / "run.tckpt")
    first = restore_trace(tmp_path / "run.tckpt", workspace_root=tmp_path / "ws", allow_modules=ALLOW)
    # restoring again over identical files is fine
    restore_trace(tmp_path / "run.tckpt", workspace_root=tmp_path / "ws", allow_modules=ALLOW)
    edited = first.hist[1][0].sub_workspace_list[0].workspace_path / "factor.py"
    edited.write_text("my local edit")
    with pytest.raises(WorkspaceConflictError, match="factor.py"):
        restore_trace(tmp_path / "run.tckpt", workspace_root=tmp_path / "ws", allow_modules=ALLOW)
    assert edited.read_text() == "my local edit"
    again = restore_trace(tmp_path / "run.tckpt", workspace_root=tmp_path / "ws", overwrite=True, allow_modules=ALLOW)
    assert (again.hist[1][0].sub_workspace_list[0].workspace_path / "factor.py").read_text() == (
        trace.hist[1][0].sub_workspace_list[0].file_dict["factor.py"]
    )


def test_repeated_text_is_stored_once(tmp_path: Path, data: Path) -> None:
    small = build_trace([()] * 2, [True] * 2, data, write_outputs=False)
    large = build_trace([()] * 12, [True] * 12, data, write_outputs=False)
    m_small = save_trace(small, tmp_path / "small.tckpt")
    m_large = save_trace(large, tmp_path / "large.tckpt")
    ws = large.hist[0][0].experiment_workspace
    template_bytes = sum(len(v.encode()) for v in ws.file_dict.values())
    # 10 more nodes bring 10 x (template files + factor code + texts); stored once, they add little
    growth = m_large.sizes.raw - m_small.sizes.raw
    assert growth < 10 * template_bytes / 2, (growth, template_bytes)
    assert m_large.workspace_stats.files > 5 * m_large.workspace_stats.unique_files


def test_max_file_bytes_lists_but_does_not_store_large_files(tmp_path: Path, data: Path) -> None:
    trace = build_trace([()], [True], data)
    ws = trace.hist[0][0].experiment_workspace.workspace_path
    (ws / "big.bin").write_bytes(b"x" * 100_000)
    m = save_trace(trace, tmp_path / "run.tckpt", max_file_bytes=50_000)
    assert m.workspace_stats.skipped >= 1 and m.workspace_stats.max_file_bytes == 50_000
    restored = restore_trace(tmp_path / "run.tckpt", workspace_root=tmp_path / "ws", allow_modules=ALLOW)
    new = restored.hist[0][0].experiment_workspace.workspace_path
    assert not (new / "big.bin").exists()
    assert (new / "conf_baseline.yaml").exists()


def test_pandas_objects_are_arrow_not_pickled(tmp_path: Path, data: Path) -> None:
    trace = build_trace([(), (0,)], [True, False], data)
    m = save_trace(trace, tmp_path / "run.tckpt")
    assert m.tables >= 2 and m.pandas_pickled == 0
    from trace_ckpt.format.reader import ContainerReader

    with open(tmp_path / "run.tckpt", "rb") as f:
        reader = ContainerReader(f)
        graph = reader.read_section(reader.manifest.section("graph"))
    assert b"pandas.core" not in graph and b"pandas._libs" not in graph


def test_manifest_summarises_nodes(tmp_path: Path, data: Path) -> None:
    trace = build_trace(PARENTS, DECISIONS, data, quant=True, loop_ids=LOOP_IDS)
    save_trace(trace, tmp_path / "run.tckpt")
    m = read_manifest(tmp_path / "run.tckpt")
    assert m.counts.hist == 6 and m.counts.accepted == 4 and m.counts.rejected == 2 and m.counts.roots == 2
    assert m.counts.factor_experiments == 6 and m.counts.model_experiments == 0
    assert m.sota_index == 5
    node = m.nodes[1]
    assert (node.loop_id, node.parents, node.action, node.decision) == (2, [0], "factor", False)
    assert node.hypothesis == "Momentum of 2 days predicts returns (node 1)"
    assert node.metrics["IC"] == pytest.approx(float(trace.hist[1][0].result["IC"]))
    assert node.factors == ["factor_1"]
    assert m.producer.rdagent == "1.0.0" and m.producer.pandas
    assert m.trace_class.endswith("QuantTrace") and m.scenario_class == "tests.builders.TinyScenario"


def test_large_files_stream_back_byte_exact_into_every_copy(tmp_path: Path, data: Path) -> None:
    """A file of more than a pack (8 MiB) gets a section of its own and is streamed on restore; the same
    content in two workspaces is stored once and written to both."""
    from trace_ckpt.codec.blobs import PACK_BYTES

    trace = build_trace([(), (0,)], [True, True], data)
    big = os.urandom(PACK_BYTES + 12345)
    folders = [
        trace.hist[0][0].sub_workspace_list[0].workspace_path,
        trace.hist[1][0].sub_workspace_list[0].workspace_path,
    ]
    for f in folders:
        (f / "values.bin").write_bytes(big)
    m = save_trace(trace, tmp_path / "run.tckpt")
    assert sum(1 for s in m.sections if s.kind == "blobs" and s.raw_length == len(big)) == 1
    restored = restore_trace(tmp_path / "run.tckpt", workspace_root=tmp_path / "new", allow_modules=ALLOW)
    for exp in (restored.hist[0][0], restored.hist[1][0]):
        assert (exp.sub_workspace_list[0].workspace_path / "values.bin").read_bytes() == big


def test_progress_counts_every_file_and_byte_both_ways(tmp_path: Path, data: Path) -> None:
    """save and restore report each workspace file once and all of its bytes, a streamed file (more than a
    pack, in two workspaces: streamed once, then copied) included, so a bar ends at the folders' size."""
    from trace_ckpt.codec.blobs import PACK_BYTES

    trace = build_trace([(), (0,)], [True, True], data)
    big = os.urandom(PACK_BYTES + 777)
    for exp, _ in trace.hist:
        (exp.sub_workspace_list[0].workspace_path / "values.bin").write_bytes(big)
    on_disk = [
        p
        for ws in iter_workspaces(trace)
        for p in Path(ws.workspace_path).rglob("*")
        if p.is_file() and not p.is_symlink()
    ]
    expected = (sum(p.stat().st_size for p in on_disk), len(on_disk))
    calls: dict[str, list[tuple[int, int]]] = {"save": [], "restore": []}

    save_trace(trace, tmp_path / "run.tckpt", progress=lambda b, f: calls["save"].append((b, f)))
    restore_trace(
        tmp_path / "run.tckpt",
        workspace_root=tmp_path / "new",
        allow_modules=ALLOW,
        progress=lambda b, f: calls["restore"].append((b, f)),
    )

    for way, seen in calls.items():
        assert (sum(b for b, _ in seen), sum(f for _, f in seen)) == expected, way
    assert any(f == 0 and b > 0 for b, f in calls["restore"])  # the large file moved the bar while it streamed


def test_damaged_large_file_section_is_caught_and_never_left_behind(tmp_path: Path, data: Path) -> None:
    """A large file's section is hashed while it streams: a flipped byte fails the restore with a
    CorruptCheckpointError, the half-written file is removed, and an existing copy is never overwritten."""
    from trace_ckpt import CorruptCheckpointError
    from trace_ckpt.codec.blobs import PACK_BYTES

    trace = build_trace([()], [True], data)
    folder = trace.hist[0][0].sub_workspace_list[0].workspace_path
    big = os.urandom(PACK_BYTES + 1)
    (folder / "values.bin").write_bytes(big)
    ck = tmp_path / "run.tckpt"
    m = save_trace(trace, ck)
    section = next(s for s in m.sections if s.kind == "blobs" and s.raw_length == len(big))
    raw = bytearray(ck.read_bytes())
    raw[section.offset + section.length // 2] ^= 0xFF
    ck.write_bytes(bytes(raw))
    assert read_manifest(ck).counts.hist == 1  # the manifest itself is intact

    with pytest.raises(CorruptCheckpointError, match="checksum"):
        restore_trace(ck, workspace_root=tmp_path / "fresh", allow_modules=ALLOW)
    assert not (tmp_path / "fresh" / folder.name / "values.bin").exists()

    # restoring over a folder that already holds the right file: checked before anything is written
    shutil.copytree(folder, tmp_path / "existing" / folder.name, symlinks=True)
    with pytest.raises(CorruptCheckpointError, match="checksum"):
        restore_trace(ck, workspace_root=tmp_path / "existing", allow_modules=ALLOW)
    assert (tmp_path / "existing" / folder.name / "values.bin").read_bytes() == big


def test_a_large_file_that_shrinks_during_the_save_fails_it_cleanly(
    tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file RD-Agent is still writing while an autosave reads it: the save fails with one line, and the
    previous checkpoint at the path stays."""
    from trace_ckpt import SaveError
    from trace_ckpt.codec import blobs
    from trace_ckpt.codec.blobs import PACK_BYTES

    trace = build_trace([()], [True], data)
    big = trace.hist[0][0].sub_workspace_list[0].workspace_path / "values.bin"
    big.write_bytes(os.urandom(PACK_BYTES + 10))
    ck = tmp_path / "run.tckpt"
    save_trace(trace, ck)
    before = ck.read_bytes()
    real = blobs._read_chunks

    def shrinking(path: Path):
        for chunk in real(path):
            yield chunk[: len(chunk) // 2]  # the file got shorter under our feet

    monkeypatch.setattr(blobs, "_read_chunks", shrinking)
    with pytest.raises(SaveError, match="changed size"):
        save_trace(trace, ck)
    assert ck.read_bytes() == before


def test_a_write_error_while_a_large_file_streams_stops_cleanly(
    tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk in the middle of a streamed file: a one-line RestoreError (no hang waiting on the
    decompressing thread), and the stream's worker thread is gone afterwards."""
    import threading

    from trace_ckpt.codec import restore
    from trace_ckpt.codec.blobs import PACK_BYTES
    from trace_ckpt.errors import RestoreError

    trace = build_trace([()], [True], data)
    (trace.hist[0][0].sub_workspace_list[0].workspace_path / "values.bin").write_bytes(os.urandom(3 * PACK_BYTES))
    save_trace(trace, tmp_path / "run.tckpt")
    real, calls = restore._write_all, []

    def failing(fd: int, chunk: bytes) -> None:
        calls.append(len(chunk))
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real(fd, chunk)

    monkeypatch.setattr(restore, "_write_all", failing)
    with pytest.raises(RestoreError, match="No space left") as e:
        restore_trace(tmp_path / "run.tckpt", workspace_root=tmp_path / "ws", allow_modules=ALLOW)
    assert "\n" not in str(e.value) and e.value.exit_code == 14
    assert not any(t.name == "tckpt-decompress" for t in threading.enumerate())
