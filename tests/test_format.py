"""The container format: the documented reader, and every kind of bad input as its typed error."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from tests.builders import ALLOW, build_trace, data_folder
from trace_ckpt import (
    CheckpointNotFoundError,
    CorruptCheckpointError,
    NotACheckpointError,
    UnsupportedVersionError,
    read_manifest,
    restore_trace,
    save_trace,
    verify_checkpoint,
)
from trace_ckpt.format import container
from trace_ckpt.format import reader as format_reader
from trace_ckpt.format.container import FORMAT_VERSION

DOCS = Path(__file__).resolve().parents[1] / "docs" / "format.md"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("fmt")
    trace = build_trace([(), (0,), (0,)], [True, False, True], data_folder(d / "data"))
    path = d / "run.tckpt"
    save_trace(trace, path)
    return path


def test_documented_stdlib_reader_reads_the_manifest(ckpt: Path) -> None:
    code = re.search(r"```python\n(.*?)```", DOCS.read_text(), re.S).group(1)
    namespace: dict = {}
    exec(code, namespace)  # the snippet in docs/format.md, run as written
    version, doc = namespace["read_manifest"](str(ckpt))
    ours = read_manifest(ckpt)
    assert version == FORMAT_VERSION == doc["format_version"]
    assert doc["counts"]["hist"] == ours.counts.hist == 3
    assert [s["name"] for s in doc["sections"]] == [s.name for s in ours.sections]


def test_sections_tile_the_data_area(ckpt: Path) -> None:
    m = read_manifest(ckpt)
    pos = container.HEADER.size
    for s in m.sections:
        assert s.offset == pos
        pos += s.length
    size = ckpt.stat().st_size
    m_off = struct.unpack("<Q", ckpt.read_bytes()[size - 88 : size - 80])[0]
    assert pos == m_off


def test_verify_reports_no_bad_section(ckpt: Path) -> None:
    bad = verify_checkpoint(ckpt).bad_sections
    assert bad == []


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointNotFoundError, match="no checkpoint"):
        read_manifest(tmp_path / "nope.tckpt")
    with pytest.raises(CheckpointNotFoundError):
        restore_trace(tmp_path / "nope.tckpt", workspace_root=tmp_path)


def test_not_a_checkpoint(tmp_path: Path) -> None:
    p = tmp_path / "notes.txt"
    p.write_text("hello, this is a text file and not a checkpoint at all" * 3)
    with pytest.raises(NotACheckpointError, match="not a trace-ckpt checkpoint"):
        read_manifest(p)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(NotACheckpointError):
        read_manifest(empty)


@pytest.mark.parametrize("keep", [10, 17, 200, -1, -57])
def test_truncated(tmp_path: Path, ckpt: Path, keep: int) -> None:
    p = tmp_path / "cut.tckpt"
    data = ckpt.read_bytes()
    p.write_bytes(data[:keep])
    with pytest.raises(CorruptCheckpointError):
        read_manifest(p)


def test_flipped_byte_in_a_section(tmp_path: Path, ckpt: Path) -> None:
    m = read_manifest(ckpt)
    graph = m.section("graph")
    data = bytearray(ckpt.read_bytes())
    data[graph.offset + graph.length // 2] ^= 0x40
    p = tmp_path / "flipped.tckpt"
    p.write_bytes(bytes(data))
    read_manifest(p)  # the manifest itself is intact
    assert verify_checkpoint(p).bad_sections == ["graph"]
    with pytest.raises(CorruptCheckpointError, match="checksum"):
        restore_trace(p, workspace_root=tmp_path / "ws", allow_modules=ALLOW)
    assert not (tmp_path / "ws").exists()  # nothing written from a damaged file


def test_flipped_byte_in_the_manifest(tmp_path: Path, ckpt: Path) -> None:
    data = bytearray(ckpt.read_bytes())
    data[-100] ^= 0x01
    p = tmp_path / "flipped.tckpt"
    p.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match="manifest"):
        read_manifest(p)


def test_future_format_version_names_both_versions(tmp_path: Path, ckpt: Path) -> None:
    data = bytearray(ckpt.read_bytes())
    data[8:12] = struct.pack("<I", FORMAT_VERSION + 1)
    p = tmp_path / "future.tckpt"
    p.write_bytes(bytes(data))
    with pytest.raises(UnsupportedVersionError) as e:
        read_manifest(p)
    assert f"v{FORMAT_VERSION + 1}" in str(e.value) and f"v{FORMAT_VERSION}" in str(e.value)


def test_older_versions_pass_through_the_one_upgrade_function(monkeypatch: pytest.MonkeyPatch, ckpt: Path) -> None:
    seen = []

    def spy(doc: dict, version: int) -> dict:
        seen.append(version)
        return doc

    monkeypatch.setattr(format_reader, "_upgrade", spy)
    read_manifest(ckpt)
    assert seen == [FORMAT_VERSION]


def test_section_range_outside_the_file_is_corrupt(tmp_path: Path, ckpt: Path) -> None:
    from tests.reseal import seal, split

    body, doc = split(ckpt.read_bytes())
    doc["sections"][0]["length"] = 10**12
    p = tmp_path / "bad.tckpt"
    p.write_bytes(seal(body, doc))
    with pytest.raises(CorruptCheckpointError, match="outside"):
        read_manifest(p)


def test_a_folder_is_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CorruptCheckpointError, match="folder"):
        read_manifest(tmp_path)
