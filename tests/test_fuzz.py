"""Fuzzing the reader: every mutated, truncated, re-sealed or random input ends in a CheckpointError
or a valid load — never another exception, never a hang, never a payload run.

A case that runs for a minute counts as a hang and fails the test; how fast the reader is, is measured
by the benchmarks, not here (a shared CI machine can stall one case for seconds).

Re-sealed cases recompute the checksums after mutating, so the damage reaches the decompressor, the
blob index, the files index and the unpickler, not only the checksum check; one maker edits the JSON
sections' structure (a value replaced or a key dropped) rather than their bytes.
"""

from __future__ import annotations

import json
import random
import signal
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import zstandard

from tests.builders import ALLOW, build_trace, data_folder
from tests.reseal import edit_blob_index, edit_json_section, seal, split, with_section
from trace_ckpt import CheckpointError, CorruptCheckpointError, diff, prune, read_manifest, restore_trace, save_trace
from trace_ckpt.export import export_factors

CASES = 10_000
HANG_SECONDS = 60


@pytest.fixture(scope="module")
def seed_file(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    d = tmp_path_factory.mktemp("fuzz-seed")
    trace = build_trace([(), (0,)], [True, False], data_folder(d / "data"), write_outputs=False)
    ws = trace.hist[0][0].experiment_workspace.workspace_path
    (ws / "sub").mkdir()
    (ws / "sub" / "x.txt").write_text("nested")
    save_trace(trace, d / "seed.tckpt")
    return (d / "seed.tckpt").read_bytes()


def _mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.random()
        if op < 0.5 and b:
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        elif op < 0.7 and b:
            del b[rng.randrange(len(b)) :]
        elif op < 0.85:
            pos = rng.randrange(len(b) + 1)
            b[pos:pos] = rng.randbytes(rng.randint(1, 32))
        elif b:
            pos = rng.randrange(len(b))
            del b[pos : pos + rng.randint(1, 64)]
    return bytes(b)


def _resealed_manifest(rng: random.Random, data: bytes) -> bytes:
    body, doc = split(data)
    text = json.dumps(doc)
    choice = rng.random()
    if choice < 0.5:  # structural edits that keep JSON valid
        s = rng.choice(doc["sections"])
        key = rng.choice(["offset", "length", "raw_length", "name", "kind", "codec", "digest"])
        s[key] = rng.choice([0, -1, 1, 2**63, "graph", "index", "files", "blobs", "none", None, [], s.get(key)])
        if rng.random() < 0.3:
            doc["format_version"] = rng.choice([0, 1, 2, 3, "1", None])
        if rng.random() < 0.2:
            doc["hash_algorithm"] = rng.choice(["sha256", "md5", None, 1])
        return seal(body, doc)
    return seal(body, _mutate_bytes(rng, text.encode()))


def _resealed_section(rng: random.Random, data: bytes) -> bytes:
    body, doc = split(data)
    s = rng.choice(doc["sections"])
    stored = body[s["offset"] : s["offset"] + s["length"]]
    if rng.random() < 0.7:  # damage the content, recompress: a valid frame of garbage
        raw = _mutate_bytes(rng, zstandard.ZstdDecompressor().decompress(stored))
        return with_section(data, s["name"], zstandard.ZstdCompressor(level=1).compress(raw), len(raw))
    return with_section(data, s["name"], _mutate_bytes(rng, stored), s["raw_length"])  # damage the frame itself


def _resealed_json(rng: random.Random, data: bytes) -> bytes:
    """One value somewhere in the files index or the blob index replaced by an odd one, resealed."""

    def edit(doc: object) -> None:
        nodes = []  # every (container, key) pair of the document
        stack = [doc]
        while stack:
            node = stack.pop()
            pairs = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
            for k, v in pairs:
                nodes.append((node, k))
                stack.append(v)
        if nodes:
            node, key = rng.choice(nodes)
            odd = rng.choice([0, -1, 2**63, 1.5, True, None, "", "..", "/etc", "x" * 300, [], {}, ["blobs/0", 0, 1]])
            if isinstance(node, dict) and rng.random() < 0.2:
                del node[key]
            else:
                node[key] = odd

    return edit_json_section("files", edit)(data)  # the v3 blob index is binary: _resealed_section damages it


def _first_file(index: dict) -> dict:
    return next(e for w in index["workspaces"].values() for e in w["entries"] if e["type"] == "file")


def _first_workspace(index: dict) -> dict:
    return next(iter(index["workspaces"].values()))


def _first_blob(index: dict) -> list:
    return next(iter(index.values()))


# Damage that passes every checksum (the file was edited and resealed) but breaks a JSON section's schema.
BAD_JSON = {
    "files: entry without a path": ("files", lambda ix: _first_file(ix).pop("path")),
    "files: unknown entry type": ("files", lambda ix: _first_file(ix).update(type="fifo")),
    "files: blob number as a string": ("files", lambda ix: _first_file(ix).update(blob=str(_first_file(ix)["blob"]))),
    "files: negative blob number": ("files", lambda ix: _first_file(ix).update(blob=-1)),
    "files: mode out of range": ("files", lambda ix: _first_file(ix).update(mode=0o200000)),
    "files: blob number as a float": ("files", lambda ix: _first_file(ix).update(blob=0.5)),
    "files: entry is a list": ("files", lambda ix: _first_workspace(ix)["entries"].append(["x"])),
    "files: workspace without entries": ("files", lambda ix: _first_workspace(ix).pop("entries")),
    "files: exists as a string": ("files", lambda ix: _first_workspace(ix).update(exists="yes")),
    "files: no workspaces": ("files", lambda ix: ix.pop("workspaces")),
    # the blob index is binary records since format v3 (tests/reseal.py shows it as v2's JSON)
    "index: blob past its section": ("index", lambda ix: _first_blob(ix).__setitem__(2, 1 << 40)),
    "index: unknown section": ("index", lambda ix: _first_blob(ix).__setitem__(0, "blobs/99")),
}
WHAT = {"files": "the files index", "index": "the blob index"}


@pytest.mark.parametrize("damage", BAD_JSON, ids=list(BAD_JSON))
def test_json_sections_are_checked_against_their_schema(tmp_path: Path, seed_file: bytes, damage: str) -> None:
    section, edit = BAD_JSON[damage]
    path = tmp_path / "bad.tckpt"
    path.write_bytes((edit_blob_index(edit) if section == "index" else edit_json_section(section, edit))(seed_file))
    read_manifest(path)  # the manifest and every checksum are fine
    with pytest.raises(CorruptCheckpointError, match=f"{WHAT[section]} is not valid") as info:
        restore_trace(path, workspace_root=tmp_path / "ws", allow_modules=ALLOW)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "ws").exists()  # refused before anything is written


@pytest.mark.parametrize("section", ["graph", "index", "files"])
def test_a_section_missing_from_the_manifest_is_named(tmp_path: Path, seed_file: bytes, section: str) -> None:
    """Every reader (restore, diff, export-factors) says which section is missing, not a KeyError."""
    body, doc = split(seed_file)
    doc["sections"] = [s for s in doc["sections"] if s["name"] != section]
    path = tmp_path / "missing.tckpt"
    path.write_bytes(seal(body, doc))
    readers = {
        "restore": lambda: restore_trace(path, workspace_root=tmp_path / "ws", allow_modules=ALLOW),
        "diff": lambda: diff(path, path),
        "export-factors": lambda: export_factors(path, tmp_path / "f.parquet"),
    }
    needs = {"restore": {"graph", "index", "files"}, "diff": {"files"}, "export-factors": {"index", "files"}}
    for name, read in readers.items():
        if section in needs[name]:
            with pytest.raises(CorruptCheckpointError, match=f"no '{section}' section"):
                read()


def test_a_file_whose_content_is_not_stored_is_found_before_any_use(tmp_path: Path, seed_file: bytes) -> None:
    path = tmp_path / "dangling.tckpt"
    path.write_bytes(edit_json_section("files", lambda ix: _first_file(ix).update(blob=10**6))(seed_file))
    for read in (
        lambda: restore_trace(path, workspace_root=tmp_path / "ws", allow_modules=ALLOW),
        lambda: export_factors(path, tmp_path / "f.parquet"),
    ):
        with pytest.raises(CorruptCheckpointError, match="refers to a missing blob"):
            read()
    assert not (tmp_path / "ws").exists()


def test_files_index_keeps_unknown_fields(tmp_path: Path, seed_file: bytes) -> None:
    """A field a later version adds is kept, not refused: the schema checks what this version reads."""
    path = tmp_path / "extra.tckpt"
    path.write_bytes(edit_json_section("files", lambda ix: _first_file(ix).update(xattrs={"user.k": "v"}))(seed_file))
    assert restore_trace(path, workspace_root=tmp_path / "ws", allow_modules=ALLOW).hist


class _Hung(BaseException):
    """Raised in the main thread by the watchdog; a BaseException so no `except Exception` swallows it."""


@contextmanager
def _watchdog(seconds: int) -> Iterator[None]:
    def expire(signum: int, frame: object) -> None:
        raise _Hung

    previous = signal.signal(signal.SIGALRM, expire)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _makers(rng: random.Random, seed_file: bytes) -> dict[str, Callable[[], bytes]]:
    """Named ways of damaging ``seed_file`` (each call draws a new case from ``rng``)."""
    return {
        "flipped, cut or inserted bytes": lambda: _mutate_bytes(rng, seed_file),
        "truncated": lambda: seed_file[: rng.randrange(len(seed_file))],
        "random bytes": lambda: rng.randbytes(rng.randint(0, 4096)),
        "valid header, random rest": lambda: (
            b"TRACECKP" + struct.pack("<II", 1, 0) + rng.randbytes(rng.randint(0, 512))
        ),
        "resealed manifest": lambda: _resealed_manifest(rng, seed_file),
        "resealed section": lambda: _resealed_section(rng, seed_file),
        "resealed section (2)": lambda: _resealed_section(rng, seed_file),
        "resealed JSON structure": lambda: _resealed_json(rng, seed_file),
    }


def _survives(
    tmp_path: Path, makers: dict[str, Callable[[], bytes]], cases: int, read: Callable[[Path, int], object]
) -> dict[str, int]:
    """Run ``read(path, i)`` on ``cases`` damaged files: each must load or raise a one-line CheckpointError,
    and none may run for a minute. Returns how many loaded and how many failed with each error class."""
    names = list(makers)
    path = tmp_path / "case.tckpt"
    outcomes: dict[str, int] = {"loaded": 0}
    slowest = (0.0, -1)
    start = time.perf_counter()
    with _watchdog(HANG_SECONDS):
        for i in range(cases):
            kind = names[i % len(names)]
            path.write_bytes(makers[kind]())
            t = time.perf_counter()
            signal.setitimer(signal.ITIMER_REAL, HANG_SECONDS)
            try:
                read(path, i)
                outcomes["loaded"] += 1
            except CheckpointError as e:
                assert "\n" not in str(e), (i, str(e))
                outcomes[type(e).__name__] = outcomes.get(type(e).__name__, 0) + 1
            except _Hung:
                pytest.fail(f"case {i} ({kind}) still ran after {HANG_SECONDS}s")
            except BaseException as e:  # anything else is a bug in the reader
                pytest.fail(f"case {i} ({kind}) raised {type(e).__name__}: {e}")
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            slowest = max(slowest, (time.perf_counter() - t, i))
    print(f"fuzz: {outcomes} in {time.perf_counter() - start:.1f}s, slowest: case {slowest[1]} {slowest[0]:.2f}s")
    return outcomes


@pytest.mark.slow
def test_reader_survives_ten_thousand_bad_inputs(tmp_path: Path, seed_file: bytes) -> None:
    def read(path: Path, i: int) -> None:
        read_manifest(path)
        restore_trace(path, workspace_root=tmp_path / f"ws{i % 3}", overwrite=True, allow_modules=ALLOW)

    outcomes = _survives(tmp_path, _makers(random.Random(20261124), seed_file), CASES, read)
    assert outcomes["loaded"] < CASES * 0.1


@pytest.mark.slow
def test_diff_prune_and_export_survive_bad_inputs(tmp_path: Path, seed_file: bytes) -> None:
    """The other readers of a checkpoint, on resealed damage (which passes every checksum)."""
    seed = tmp_path / "seed.tckpt"
    seed.write_bytes(seed_file)
    readers = [
        lambda path: diff(seed, path),
        lambda path: diff(path, seed),
        lambda path: prune(path, tmp_path / "pruned.tckpt", keep="last:1", allow_modules=ALLOW),
        lambda path: export_factors(path, tmp_path / "factors.parquet"),
    ]
    makers = {k: v for k, v in _makers(random.Random(20261128), seed_file).items() if k.startswith("resealed")}
    # reader i // len(makers): every reader meets every kind of damage
    outcomes = _survives(tmp_path, makers, 2000, lambda path, i: readers[(i // len(makers)) % len(readers)](path))
    assert outcomes["loaded"] < 2000 * 0.5
