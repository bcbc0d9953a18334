"""Format versions: new files are v2 (BLAKE3 digests); a v1 file (SHA-256, written by the v1 writer and kept in
tests/data) still inspects, verifies, restores byte-exact, and can be pruned and diffed against v2 files."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import blake3
import pytest

from tests.builders import ALLOW, build_trace, data_folder
from tests.compare import folder_digests
from trace_ckpt import diff, prune, read_manifest, restore_trace, save_trace, verify_checkpoint
from trace_ckpt.errors import CorruptCheckpointError
from trace_ckpt.format.container import FOOTER

DATA = Path(__file__).resolve().parent / "data"
EXPECT = json.loads((DATA / "v1.expect.json").read_text())


@pytest.fixture()
def v1(tmp_path: Path) -> Path:
    path = tmp_path / "v1.tckpt"
    shutil.copyfile(DATA / "v1.tckpt", path)
    return path


def _assert_restores_as_saved(path: Path, root: Path) -> None:
    trace = restore_trace(path, workspace_root=root, allow_modules=ALLOW)
    assert [list(p) for p in trace.dag_parent] == EXPECT["dag_parent"]
    assert [str(exp.hypothesis.hypothesis) for exp, _ in trace.hist] == EXPECT["hypotheses"]
    assert [fb.decision for _, fb in trace.hist] == EXPECT["decisions"]
    first = trace.hist[0][0]
    for (exp, _), at in zip(trace.hist, EXPECT["based_on_first"]):
        if at is not None:
            assert exp.based_experiments[at] is first  # shared, not a copy
    assert {p.name: folder_digests(p) for p in root.iterdir()} == EXPECT["folders"]


def test_a_new_file_is_v2_with_blake3_digests_of_its_stored_bytes(tmp_path: Path) -> None:
    trace = build_trace([(), (0,)], [True, False], data_folder(tmp_path / "data"))
    path = tmp_path / "run.tckpt"
    save_trace(trace, path)
    raw = path.read_bytes()
    assert int.from_bytes(raw[8:12], "little") == 2
    m_off, m_len, m_sha, _mac, _magic = FOOTER.unpack(raw[-FOOTER.size :])
    assert hashlib.sha256(raw[m_off : m_off + m_len]).digest() == m_sha  # the manifest keeps a SHA-256
    doc = json.loads(raw[m_off : m_off + m_len])
    assert doc["format_version"] == 2 and doc["hash_algorithm"] == "blake3"
    for s in doc["sections"]:
        assert blake3.blake3(raw[s["offset"] : s["offset"] + s["length"]]).hexdigest() == s["digest"], s["name"]
        assert "sha256" not in s


def test_a_v1_file_inspects_verifies_and_restores_byte_exact(v1: Path, tmp_path: Path) -> None:
    m = read_manifest(v1)
    assert (m.format_version, m.hash_algorithm) == (1, "sha256")
    assert any(s.raw_length >= 8 << 20 for s in m.sections)  # the streamed large-file path is covered
    assert verify_checkpoint(v1).ok
    _assert_restores_as_saved(v1, tmp_path / "ws")


def test_a_damaged_v1_file_is_still_caught(v1: Path, tmp_path: Path) -> None:
    m = read_manifest(v1)
    big = max(m.sections, key=lambda s: s.raw_length)
    data = bytearray(v1.read_bytes())
    data[big.offset + big.length // 2] ^= 0x40
    v1.write_bytes(bytes(data))
    assert verify_checkpoint(v1).bad_sections == [big.name]
    with pytest.raises(CorruptCheckpointError, match="checksum"):
        restore_trace(v1, workspace_root=tmp_path / "ws", allow_modules=ALLOW)


def test_pruning_a_v1_file_writes_v2_with_the_same_files(v1: Path, tmp_path: Path) -> None:
    out = tmp_path / "v2.tckpt"
    report = prune(v1, out, keep="last:3", allow_modules=ALLOW)
    assert report.kept == [0, 1, 2]
    m = read_manifest(out)
    assert (m.format_version, m.hash_algorithm) == (2, "blake3")
    assert m.workspace_stats.unique_files == read_manifest(v1).workspace_stats.unique_files
    assert verify_checkpoint(out).ok
    _assert_restores_as_saved(out, tmp_path / "ws")
    # the files are the same content under another digest: diff compares content, whichever side is older
    assert diff(v1, out).files == [] and diff(out, v1).files == []
