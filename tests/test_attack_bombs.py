"""Bombs and foreign exceptions (issue 13, class 4): crafted files that pass every checksum, each aimed at
one bound a reader must check against what the file can hold. Every reader and every command must end
in the documented CheckpointError and exit code, never a ValueError, RecursionError, MemoryError or
struct.error (exit 1), and a small file must not make a restore allocate gigabytes.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import blake3
import fsspec
import numpy as np
import pyarrow as pa
import pytest
import zstandard

from tests.builders import ALLOW, build_trace, data_folder
from tests.clirun import run_cli
from tests.reseal import edit_blob_index, edit_json_section, seal, split, with_section
from trace_ckpt import CheckpointError, CorruptCheckpointError, diff, prune, read_manifest, restore_trace, save_trace
from trace_ckpt.codec import tables
from trace_ckpt.errors import CheckpointNotFoundError, NothingToExportError
from trace_ckpt.export import export_factors
from trace_ckpt.format.reader import ContainerReader

# --- crafting ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, str]:
    """A small real checkpoint, and the blob address of one of its Arrow tables (node 0's result Series)."""
    d = tmp_path_factory.mktemp("bombs-seed")
    trace = build_trace([(), (0,)], [True, False], data_folder(d / "data"), write_outputs=False)
    save_trace(trace, d / "seed.tckpt")
    data, _ = tables.to_arrow(trace.hist[0][0].result)
    return (d / "seed.tckpt").read_bytes(), blake3.blake3(data).hexdigest()


def _add_section(data: bytes, name: str, raw: bytes) -> bytes:
    """``data`` with one more ``blobs`` section holding ``raw`` (zstd), resealed."""
    body, doc = split(data)
    stored = zstandard.ZstdCompressor().compress(raw)
    doc["sections"].append(
        {
            "name": name,
            "kind": "blobs",
            "codec": "zstd",
            "offset": len(body),
            "length": len(stored),
            "raw_length": len(raw),
            "digest": blake3.blake3(stored).hexdigest(),
            "meta": {},
        }
    )
    return seal(body + stored, doc)


def _table_replaced(seed: tuple[bytes, str], ipc: bytes) -> bytes:
    """The seed with its table blob replaced by the Arrow IPC stream ``ipc`` (the graph still refers to it)."""
    data, digest = seed
    data = _add_section(data, "blobs/99", ipc)
    return edit_blob_index(lambda ix: ix.__setitem__(digest, ["blobs/99", 0, len(ipc)]))(data)


def _ipc(table: pa.Table, compression: str | None = None) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=pa.ipc.IpcWriteOptions(compression=compression)) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def arrow_bomb(n_bytes: int, codec: str = "zstd") -> bytes:
    """An Arrow IPC stream of a few KiB whose one float column decompresses to ``n_bytes`` of zeros (numpy's
    zeros are untouched pages: building it costs no memory here)."""
    zeros = pa.array(np.zeros(n_bytes // 8))
    return _ipc(pa.table({"c0": zeros}), compression=codec)


def _nulls(n: int) -> pa.Array:
    """A null-typed array of ``n`` elements: no buffer at all, whatever its length."""
    return pa.Array.from_buffers(pa.null(), n, [None])


def _pledged_frame(content_size: int, payload: bytes = b"x" * 64) -> bytes:
    """A valid zstd frame whose header pledges ``content_size`` bytes but whose one raw block holds ``payload``."""
    fhd = 0b1100_0000  # 8-byte content size, not single-segment (a window descriptor follows), no checksum
    block = struct.pack("<I", 1 | (len(payload) << 3))[:3]  # last block, raw
    return struct.pack("<IBBQ", 0xFD2FB528, fhd, 0x00, content_size) + block + payload


def _graph_frame_pledging(size: int) -> Callable[[bytes], bytes]:
    def make(data: bytes) -> bytes:
        return with_section(data, "graph", _pledged_frame(size), size)

    return make


def _manifest_edit(edit: Callable[[dict], object]) -> Callable[[bytes], bytes]:
    def make(data: bytes) -> bytes:
        body, doc = split(data)
        edit(doc)
        return seal(body, doc)

    return make


def _nested_manifest(data: bytes) -> bytes:
    body, doc = split(data)
    text = json.dumps(doc)
    deep = "[" * 100_000 + "]" * 100_000
    return seal(body, (text[:-1] + f', "metadata": {{"x": {deep}}}}}').encode())


def _nested_json(name: str) -> Callable[[bytes], bytes]:
    def make(data: bytes) -> bytes:
        body, doc = split(data)
        s = next(t for t in doc["sections"] if t["name"] == name)
        raw = json.loads(zstandard.ZstdDecompressor().decompress(body[s["offset"] : s["offset"] + s["length"]]))
        text = json.dumps(raw)
        deep = ("[" * 100_000 + "]" * 100_000).encode()
        new = text.encode()[:-1] + b', "zz": ' + deep + b"}"
        return with_section(data, name, zstandard.ZstdCompressor().compress(new), len(new))

    return make


def _first_file(ix: dict) -> dict:
    return next(e for w in ix["workspaces"].values() for e in w["entries"] if e["type"] == "file")


def _first_link(ix: dict) -> dict:
    return next(e for w in ix["workspaces"].values() for e in w["entries"] if e["type"] == "symlink")


def _first_section(doc: dict, name: str) -> dict:
    return next(s for s in doc["sections"] if s["name"] == name)


# name -> (maker of the crafted file from the seed, the error every reader of the damaged part raises)
CRAFTED: dict[str, Callable[[tuple[bytes, str]], bytes]] = {
    # the container and the manifest
    "graph frame pledging 1 TiB": lambda s: _graph_frame_pledging(1 << 40)(s[0]),
    "section raw_length far beyond what zstd can expand": lambda s: _manifest_edit(
        lambda d: _first_section(d, "graph").update(raw_length=1 << 50)
    )(s[0]),
    "section offset near 2**64": lambda s: _manifest_edit(
        lambda d: _first_section(d, "graph").update(offset=(1 << 64) - 8)
    )(s[0]),
    "uncompressed section longer than stored": lambda s: _manifest_edit(
        lambda d: _first_section(d, "graph").update(codec="none", raw_length=1 << 40)
    )(s[0]),
    "manifest nested 100,000 deep": lambda s: _nested_manifest(s[0]),
    "manifest SOTA index -5 (ls: IndexError)": lambda s: _manifest_edit(lambda d: d.update(sota_index=-5))(s[0]),
    "files index nested 100,000 deep": lambda s: _nested_json("files")(s[0]),
    "blob index placing a blob 2**62 bytes into its pack": lambda s: edit_blob_index(
        lambda ix: ix.__setitem__(s[1], ["blobs/0", 1 << 62, 1 << 62])
    )(s[0]),
    # paths
    "NUL in a file path": lambda s: edit_json_section("files", lambda ix: _first_file(ix).update(path="a\0b"))(s[0]),
    "NUL in a link target": lambda s: edit_json_section("files", lambda ix: _first_link(ix).update(target="/etc\0x"))(
        s[0]
    ),
    "NUL in a workspace key": lambda s: edit_json_section(
        "files", lambda ix: ix.__setitem__("workspaces", {k + "\0": v for k, v in ix["workspaces"].items()})
    )(s[0]),
    # Arrow tables inside blobs
    "Arrow buffers zstd-compressed (1 MiB)": lambda s: _table_replaced(s, arrow_bomb(1 << 20, "zstd")),
    "Arrow buffers lz4-compressed (1 MiB)": lambda s: _table_replaced(s, arrow_bomb(1 << 20, "lz4")),
    "Arrow null columns of 2**28 rows": lambda s: _table_replaced(
        s, _ipc(pa.table({"__index__": _nulls(1 << 28), "c0": _nulls(1 << 28)}))
    ),
    "Arrow run-end encoded column of 2**28 rows": lambda s: _table_replaced(
        s,
        _ipc(
            pa.table(
                {
                    "__index__": _nulls(1 << 28),
                    "c0": pa.RunEndEncodedArray.from_arrays(pa.array([1 << 28]), pa.array([1.0])),
                }
            )
        ),
    ),
    "Arrow list of 2**28 nulls": lambda s: _table_replaced(
        s,
        _ipc(
            pa.table(
                {
                    "__index__": pa.array(["a"]),
                    "c0": pa.ListArray.from_arrays(pa.array([0, 1 << 28], pa.int32()), _nulls(1 << 28)),
                }
            )
        ),
    ),
    "Arrow string index under numeric labels": lambda s: _table_replaced(
        s, _ipc(pa.table({"__index__": pa.array(["a"]), "c0": pa.array(["not a number"])}))
    ),
}


# --- every reader and every command ------------------------------------------------------------------


def _readers(tmp: Path, path: Path, seed_path: Path) -> dict[str, Callable[[], object]]:
    return {
        "read_manifest": lambda: read_manifest(path),
        "restore": lambda: restore_trace(path, workspace_root=tmp / "ws", allow_modules=ALLOW),
        "diff": lambda: diff(seed_path, path),
        "prune": lambda: prune(path, tmp / "pruned.tckpt", keep="last:1", allow_modules=ALLOW),
        "export-factors": lambda: export_factors(path, tmp / "f.parquet"),
    }


@pytest.mark.parametrize("name", CRAFTED, ids=list(CRAFTED))
def test_every_reader_ends_in_a_checkpoint_error(tmp_path: Path, seed: tuple[bytes, str], name: str) -> None:
    path = tmp_path / "crafted.tckpt"
    path.write_bytes(CRAFTED[name](seed))
    seed_path = tmp_path / "seed.tckpt"
    seed_path.write_bytes(seed[0])
    failed = {}
    for reader, read in _readers(tmp_path, path, seed_path).items():
        try:
            read()
        except CheckpointError as e:
            assert "\n" not in str(e)
            failed[reader] = type(e)
        except BaseException as e:
            pytest.fail(f"{reader} raised {type(e).__name__}: {str(e)[:200]}")
    # restore reads every part of a file: it must refuse every crafted one, as a damaged file (the seed holds
    # no factor values, so export-factors may find nothing to export before it reaches the damage)
    assert failed.get("restore") is CorruptCheckpointError, failed
    assert all(issubclass(t, (CorruptCheckpointError, NothingToExportError)) for t in failed.values()), failed
    assert not (tmp_path / "ws").exists()


@pytest.mark.parametrize("name", CRAFTED, ids=list(CRAFTED))
def test_every_command_exits_with_its_code(
    tmp_path: Path, seed: tuple[bytes, str], name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "runs"
    folder.mkdir()
    path = folder / "crafted.tckpt"
    path.write_bytes(CRAFTED[name](seed))
    seed_path = tmp_path / "seed.tckpt"
    seed_path.write_bytes(seed[0])
    commands = {
        "inspect": ["inspect", path],
        "ls": ["ls", folder],
        "verify": ["verify", path],
        "diff": ["diff", seed_path, path],
        "prune": ["prune", path, tmp_path / "p.tckpt", "--keep", "last:1"],
        "merge": ["merge", path, seed_path, tmp_path / "m.tckpt"],
        "export-factors": ["export-factors", path, tmp_path / "f.parquet"],
    }
    codes = {}
    for cmd, args in commands.items():
        code, _, err = run_cli(capsys, *args)
        assert "unexpected" not in err and "Traceback" not in err, (cmd, err)
        codes[cmd] = code
        if code != 0:  # diff: 1 = the files differ; export-factors: 10 = the seed holds no factor values
            assert code == 4 or (cmd, code) in {("diff", 1), ("export-factors", 10)}, (cmd, code, err)
    assert codes["merge"] == 4, codes  # merge loads every part of its inputs


# --- bounds of their own ----------------------------------------------------------------------------


def test_sections_may_not_share_bytes(tmp_path: Path, seed: tuple[bytes, str]) -> None:
    """Two sections over the same stored bytes would let a small file declare its content many times over."""
    body, doc = split(seed[0])
    graph = _first_section(doc, "graph")
    doc["sections"].append(dict(graph, name="blobs/98", kind="blobs"))
    path = tmp_path / "overlap.tckpt"
    path.write_bytes(seal(body, doc))
    with pytest.raises(CorruptCheckpointError, match="overlaps another section"):
        read_manifest(path)


def test_a_section_read_into_memory_may_not_expand_past_its_bound(tmp_path: Path, seed: tuple[bytes, str]) -> None:
    """A real zstd frame of 80 MiB of zeros is 2.5 KiB: honest for zstd, never for a graph (12x in a real trace)."""
    zeros = zstandard.ZstdCompressor().compress(bytes(80 << 20))
    path = tmp_path / "zeros.tckpt"
    path.write_bytes(with_section(seed[0], "graph", zeros, 80 << 20))
    read_manifest(path)  # within what zstd can do
    with pytest.raises(CorruptCheckpointError, match="more than a section read into memory may expand"):
        restore_trace(path, workspace_root=tmp_path / "ws", allow_modules=ALLOW)


def test_a_manifest_past_its_bound_is_refused(tmp_path: Path, seed: tuple[bytes, str]) -> None:
    body, doc = split(seed[0])
    doc["metadata"]["filler"] = "x" * (33 << 20)
    path = tmp_path / "big-manifest.tckpt"
    path.write_bytes(seal(body, doc))
    with pytest.raises(CorruptCheckpointError, match="more than a reader accepts"):
        read_manifest(path)


def test_a_path_with_a_nul_character_is_no_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointNotFoundError, match="NUL"):
        read_manifest(tmp_path / "a\0b.tckpt")


class _Shrinking(io.BytesIO):
    """A file that another process cuts short right after the reader took its size and read its header."""

    def __init__(self, data: bytes, keep: int) -> None:
        super().__init__(data)
        self._keep, self._reads = keep, 0

    def read(self, n: int | None = -1) -> bytes:
        self._reads += 1
        if self._reads == 2:
            self.truncate(self._keep)
        return super().read(n)


@pytest.mark.parametrize("keep", [100, 16, 0])
def test_a_local_file_that_shrinks_while_read(seed: tuple[bytes, str], keep: int) -> None:
    with pytest.raises(CorruptCheckpointError, match="changed size while it was read"):
        ContainerReader(_Shrinking(seed[0], keep), source="shrinking.tckpt")


@pytest.fixture
def shrinking_memory_object(seed: tuple[bytes, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """A memory:// checkpoint that is replaced by its first 100 bytes right after its first ranged read."""
    from fsspec.implementations.memory import MemoryFileSystem

    url = "memory://tckpt-bombs/runs/shrinks.tckpt"
    fs = fsspec.filesystem("memory")
    fs.pipe_file("/tckpt-bombs/runs/shrinks.tckpt", seed[0])
    original = MemoryFileSystem.cat_file
    calls = []

    def cat_file(self: MemoryFileSystem, path: str, *args: object, **kwargs: object) -> bytes:
        data = original(self, path, *args, **kwargs)
        calls.append(path)
        if len(calls) == 1:
            fs.pipe_file("/tckpt-bombs/runs/shrinks.tckpt", seed[0][:100])
        return data

    monkeypatch.setattr(MemoryFileSystem, "cat_file", cat_file)
    yield url
    fs.rm("/tckpt-bombs", recursive=True)


def test_a_remote_object_that_shrinks_while_read(
    shrinking_memory_object: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(CorruptCheckpointError, match="changed while it was read"):
        read_manifest(shrinking_memory_object)


def test_a_remote_object_that_shrinks_while_inspected_or_listed(
    seed: tuple[bytes, str], shrinking_memory_object: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "inspect", shrinking_memory_object)
    assert code == 4 and "changed while it was read" in err, (code, err)


def test_an_s3_object_that_shrinks_while_read(
    seed: tuple[bytes, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same against a real S3 server: a ranged read past the end of the shrunk object."""
    import s3fs

    from tests.s3server import s3_server

    with s3_server() as server:
        for k, v in server.env.items():
            monkeypatch.setenv(k, v)
        s3fs.S3FileSystem.clear_instance_cache()
        server.client.put_object(Bucket=server.bucket, Key="runs/shrinks.tckpt", Body=seed[0])
        original = s3fs.S3FileSystem._cat_file
        calls = []

        async def cat_file(self: s3fs.S3FileSystem, path: str, *args: object, **kwargs: object) -> bytes:
            data = await original(self, path, *args, **kwargs)
            calls.append(path)
            if len(calls) == 1:
                server.client.put_object(Bucket=server.bucket, Key="runs/shrinks.tckpt", Body=seed[0][:100])
            return data

        monkeypatch.setattr(s3fs.S3FileSystem, "_cat_file", cat_file)
        s3fs.S3FileSystem.clear_instance_cache()
        code, _, err = run_cli(capsys, "inspect", f"s3://{server.bucket}/runs/shrinks.tckpt")
        s3fs.S3FileSystem.clear_instance_cache()
    assert code == 4 and "changed while it was read" in err, (code, err)


# --- the Arrow bomb, measured --------------------------------------------------------------------------

_MEASURE = """
import json, sys
from trace_ckpt import restore_trace

def peak() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))

seed, bomb, root = sys.argv[1:4]
restore_trace(seed, workspace_root=root + "/seed", allow_modules=["tests"])  # every import, every cache warm
before = peak()
try:
    restore_trace(bomb, workspace_root=root + "/bomb", allow_modules=["tests"])
    outcome = "loaded"
except BaseException as e:
    outcome = type(e).__name__
print(json.dumps({"outcome": outcome, "growth": peak() - before}))
"""


def test_arrow_bomb_is_refused_before_it_allocates(tmp_path: Path, seed: tuple[bytes, str]) -> None:
    """1 GiB of zeros inside a zstd-compressed Arrow buffer, in a file of a few KiB: the restore fails as a
    corrupt file and its peak memory (VmHWM, in a child process) grows by far less than the bomb."""
    bomb = tmp_path / "bomb.tckpt"
    bomb.write_bytes(_table_replaced(seed, arrow_bomb(1 << 30)))
    assert bomb.stat().st_size < 64 * 1024
    seed_path = tmp_path / "seed.tckpt"
    seed_path.write_bytes(seed[0])
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(seed_path), str(bomb), str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["outcome"] == "CorruptCheckpointError", result
    assert result["growth"] < 200 * 1024 * 1024, result
