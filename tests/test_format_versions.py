"""Format versions: new files are v3 (a compressed manifest, a binary blob index, files naming blobs by number);
v1 (SHA-256) and v2 (plain-JSON manifest and index) files, written by those writers and kept in tests/data, still
inspect, verify, restore byte-exact, and can be pruned (into v3) and diffed against newer files."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import blake3
import pytest
import zstandard

from tests.builders import ALLOW, build_trace, data_folder
from tests.compare import folder_digests
from tests.reseal import blob_index, edit_blob_index, edit_json_section, seal, split
from trace_ckpt import diff, prune, read_manifest, restore_trace, save_trace, verify_checkpoint
from trace_ckpt.codec.blobs import INDEX_RECORD
from trace_ckpt.errors import CorruptCheckpointError
from trace_ckpt.format.container import FOOTER, FORMAT_VERSION, MANIFEST_FLOOR

DATA = Path(__file__).resolve().parent / "data"
OLD = ["v1", "v2"]


@pytest.fixture(params=OLD)
def old(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, dict]:
    """A checkpoint written by an older format's writer, and what its trace and folders were."""
    path = tmp_path / f"{request.param}.tckpt"
    shutil.copyfile(DATA / f"{request.param}.tckpt", path)
    return path, json.loads((DATA / f"{request.param}.expect.json").read_text())


@pytest.fixture(scope="module")
def new_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("v3")
    trace = build_trace([(), (0,), (1,)], [True, False, True], data_folder(tmp / "data"))
    save_trace(trace, tmp / "run.tckpt")
    return tmp / "run.tckpt"


def _assert_restores_as_saved(path: Path, root: Path, expect: dict) -> None:
    trace = restore_trace(path, workspace_root=root, allow_modules=ALLOW)
    assert [list(p) for p in trace.dag_parent] == expect["dag_parent"]
    assert [str(exp.hypothesis.hypothesis) for exp, _ in trace.hist] == expect["hypotheses"]
    assert [fb.decision for _, fb in trace.hist] == expect["decisions"]
    first = trace.hist[0][0]
    for (exp, _), at in zip(trace.hist, expect["based_on_first"]):
        if at is not None:
            assert exp.based_experiments[at] is first  # shared, not a copy
    assert {p.name: folder_digests(p) for p in root.iterdir()} == expect["folders"]


def test_a_new_file_is_v3_with_a_compressed_manifest_and_blake3_digests_of_its_stored_bytes(new_file: Path) -> None:
    raw = new_file.read_bytes()
    assert int.from_bytes(raw[8:12], "little") == FORMAT_VERSION == 3
    m_off, m_len, m_sha, _mac, _magic = FOOTER.unpack(raw[-FOOTER.size :])
    stored = raw[m_off : m_off + m_len]
    assert hashlib.sha256(stored).digest() == m_sha  # the checksum covers the manifest as stored
    text = zstandard.ZstdDecompressor().decompress(stored)  # one frame that declares its size
    assert zstandard.frame_content_size(stored) == len(text) > 2 * len(stored)
    doc = json.loads(text)
    assert doc["format_version"] == 3 and doc["hash_algorithm"] == "blake3"
    for s in doc["sections"]:
        assert blake3.blake3(raw[s["offset"] : s["offset"] + s["length"]]).hexdigest() == s["digest"], s["name"]


def test_a_new_file_s_index_is_binary_and_its_files_name_blobs_by_number(new_file: Path, tmp_path: Path) -> None:
    data = new_file.read_bytes()
    index = blob_index(data)  # 52-byte records: raw digest, section number, start, length
    assert len(index) == read_manifest(new_file).blobs
    numbered = list(index)
    body, doc = split(data)
    s = next(t for t in doc["sections"] if t["name"] == "files")
    files = json.loads(zstandard.ZstdDecompressor().decompress(body[s["offset"] : s["offset"] + s["length"]]))
    entries = [e for ws in files["workspaces"].values() for e in ws["entries"] if e["type"] == "file"]
    assert entries and all("digest" not in e and "size" not in e for e in entries)
    # each number names the blob holding that file's content
    trace_root = tmp_path / "ws"
    restore_trace(new_file, workspace_root=trace_root, allow_modules=ALLOW)
    for key, ws in files["workspaces"].items():
        for e in ws["entries"]:
            if e["type"] == "file":
                content = (trace_root / Path(key).name / e["path"]).read_bytes()
                assert blake3.blake3(content).hexdigest() == numbered[e["blob"]]
                assert len(content) == index[numbered[e["blob"]]][2]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (edit_blob_index(lambda ix: ix.update({"ab" * 32: ["blobs/0", 0, 1 << 40]})), "outside section"),
        (edit_blob_index(lambda ix: ix.update({"cd" * 32: ["blobs/7", 0, 1]})), "outside section"),
        (
            edit_json_section(
                "files",
                lambda ix: next(iter(ix["workspaces"].values()))["entries"].append(
                    {"path": "x", "type": "file", "blob": 10**6, "mode": 0o644}
                ),
            ),
            "refers to a missing blob",
        ),
        (
            edit_json_section(
                "files",
                lambda ix: next(iter(ix["workspaces"].values()))["entries"].append(
                    {"path": "x", "type": "file", "blob": -1, "mode": 0o644}
                ),
            ),
            "files index is not valid",
        ),
    ],
    ids=["blob past its section", "blob in a section that is not there", "file names a missing blob", "blob -1"],
)
def test_a_crafted_v3_index_is_refused_before_anything_is_written(
    new_file: Path, tmp_path: Path, edit, message
) -> None:
    bad = tmp_path / "bad.tckpt"
    bad.write_bytes(edit(new_file.read_bytes()))
    with pytest.raises(CorruptCheckpointError, match=message):
        restore_trace(bad, workspace_root=tmp_path / "ws", allow_modules=ALLOW)
    assert not (tmp_path / "ws").exists()


def test_a_v3_index_of_a_partial_record_or_a_repeated_digest_is_refused(new_file: Path, tmp_path: Path) -> None:
    from tests.reseal import with_section

    data = new_file.read_bytes()
    records = b"".join(
        INDEX_RECORD.pack(bytes.fromhex(d), int(n.rpartition("/")[2]), start, length)
        for d, (n, start, length) in blob_index(data).items()
    )
    for raw, message in [(records[:-1], "whole number"), (records + records[: INDEX_RECORD.size], "listed twice")]:
        bad = tmp_path / "bad.tckpt"
        bad.write_bytes(with_section(data, "index", zstandard.ZstdCompressor().compress(raw), len(raw)))
        with pytest.raises(CorruptCheckpointError, match=message):
            restore_trace(bad, workspace_root=tmp_path / "ws", allow_modules=ALLOW)


def test_a_manifest_frame_that_hides_its_size_or_expands_too_far_is_refused(new_file: Path, tmp_path: Path) -> None:
    data = new_file.read_bytes()
    body, doc = split(data)
    text = json.dumps(doc).encode()
    m = zstandard.ZstdCompressor(write_content_size=False).compress(text)
    for stored, message in [
        (m, "declares its size"),
        (b"{not a frame}", "declares its size"),
        (zstandard.ZstdCompressor().compress(text + b" " * MANIFEST_FLOOR), "more than a reader accepts"),
    ]:
        from trace_ckpt.format.container import MAGIC, NO_SIGNATURE

        bad = tmp_path / "bad.tckpt"
        bad.write_bytes(
            body + stored + FOOTER.pack(len(body), len(stored), hashlib.sha256(stored).digest(), NO_SIGNATURE, MAGIC)
        )
        with pytest.raises(CorruptCheckpointError, match=message):
            read_manifest(bad)
    bad.write_bytes(seal(body, text + b" " * 1000))  # an honest frame of the same JSON reads
    assert read_manifest(bad).counts.hist == 3


def test_an_old_file_inspects_verifies_and_restores_byte_exact(old: tuple[Path, dict], tmp_path: Path) -> None:
    path, expect = old
    m = read_manifest(path)
    assert (m.format_version, m.hash_algorithm) in [(1, "sha256"), (2, "blake3")]
    assert any(s.raw_length >= 8 << 20 for s in m.sections)  # the streamed large-file path is covered
    assert verify_checkpoint(path).ok
    _assert_restores_as_saved(path, tmp_path / "ws", expect)


def test_a_damaged_old_file_is_still_caught(old: tuple[Path, dict], tmp_path: Path) -> None:
    path, _ = old
    m = read_manifest(path)
    big = max(m.sections, key=lambda s: s.raw_length)
    data = bytearray(path.read_bytes())
    data[big.offset + big.length // 2] ^= 0x40
    path.write_bytes(bytes(data))
    assert verify_checkpoint(path).bad_sections == [big.name]
    with pytest.raises(CorruptCheckpointError, match="checksum"):
        restore_trace(path, workspace_root=tmp_path / "ws", allow_modules=ALLOW)


def test_pruning_an_old_file_writes_v3_with_the_same_files(old: tuple[Path, dict], tmp_path: Path) -> None:
    path, expect = old
    out = tmp_path / "v3.tckpt"
    report = prune(path, out, keep="last:3", allow_modules=ALLOW)
    assert report.kept == [0, 1, 2]
    m = read_manifest(out)
    assert (m.format_version, m.hash_algorithm) == (3, "blake3")
    assert m.workspace_stats.unique_files == read_manifest(path).workspace_stats.unique_files
    assert verify_checkpoint(out).ok
    _assert_restores_as_saved(out, tmp_path / "ws", expect)
    # the files are the same content: diff compares content, whichever side is older
    assert diff(path, out).files == [] and diff(out, path).files == []
