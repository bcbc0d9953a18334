"""Fuzzing the reader: every mutated, truncated, re-sealed or random input ends in a CheckpointError
or a valid load — never another exception, never a hang, never a payload run.

Re-sealed cases recompute the checksums after mutating, so the damage reaches the decompressor, the
blob index, the files index and the unpickler, not only the checksum check.
"""

from __future__ import annotations

import hashlib
import json
import random
import struct
import time
from pathlib import Path

import blake3
import pytest
import zstandard

from tests.builders import ALLOW, build_trace, data_folder
from trace_ckpt import CheckpointError, read_manifest, restore_trace, save_trace

CASES = 10_000
FOOTER = struct.Struct("<QQ32s32s8s")


@pytest.fixture(scope="module")
def seed_file(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    d = tmp_path_factory.mktemp("fuzz-seed")
    trace = build_trace([(), (0,)], [True, False], data_folder(d / "data"), write_outputs=False)
    ws = trace.hist[0][0].experiment_workspace.workspace_path
    (ws / "sub").mkdir()
    (ws / "sub" / "x.txt").write_text("nested")
    save_trace(trace, d / "seed.tckpt")
    return (d / "seed.tckpt").read_bytes()


def _split(data: bytes) -> tuple[bytes, dict]:
    m_off, m_len, _, _, _ = FOOTER.unpack(data[-FOOTER.size :])
    return data[:m_off], json.loads(data[m_off : m_off + m_len])


def _seal(body: bytes, manifest: dict | bytes) -> bytes:
    m = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    return body + m + FOOTER.pack(len(body), len(m), hashlib.sha256(m).digest(), bytes(32), b"TRACECKP")


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
    body, doc = _split(data)
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
        return _seal(body, doc)
    return _seal(body, _mutate_bytes(rng, text.encode()))


def _resealed_section(rng: random.Random, data: bytes) -> bytes:
    body, doc = _split(data)
    s = rng.choice(doc["sections"])
    stored = body[s["offset"] : s["offset"] + s["length"]]
    raw = zstandard.ZstdDecompressor().decompress(stored)
    if rng.random() < 0.7:  # damage the content, recompress: a valid frame of garbage
        raw = _mutate_bytes(rng, raw)
        new = zstandard.ZstdCompressor(level=1).compress(raw)
    else:  # damage the frame itself
        new = _mutate_bytes(rng, stored)
    out = bytearray(body)
    out[s["offset"] : s["offset"] + s["length"]] = new
    delta = len(new) - s["length"]
    for t in doc["sections"]:
        if t["offset"] > s["offset"]:
            t["offset"] += delta
    s["length"], s["raw_length"], s["digest"] = len(new), len(raw), blake3.blake3(new).hexdigest()
    return _seal(bytes(out), doc)


def test_reader_survives_ten_thousand_bad_inputs(tmp_path: Path, seed_file: bytes) -> None:
    rng = random.Random(20261124)
    makers = [
        lambda: _mutate_bytes(rng, seed_file),
        lambda: seed_file[: rng.randrange(len(seed_file))],
        lambda: rng.randbytes(rng.randint(0, 4096)),
        lambda: b"TRACECKP" + struct.pack("<II", 1, 0) + rng.randbytes(rng.randint(0, 512)),
        lambda: _resealed_manifest(rng, seed_file),
        lambda: _resealed_section(rng, seed_file),
        lambda: _resealed_section(rng, seed_file),
    ]
    path = tmp_path / "case.tckpt"
    outcomes = {"error": 0, "loaded": 0}
    kinds: dict[str, int] = {}
    slowest = 0.0
    start = time.perf_counter()
    for i in range(CASES):
        path.write_bytes(makers[i % len(makers)]())
        t = time.perf_counter()
        try:
            read_manifest(path)
            restore_trace(path, workspace_root=tmp_path / f"ws{i % 3}", overwrite=True, allow_modules=ALLOW)
            outcomes["loaded"] += 1
        except CheckpointError as e:
            assert "\n" not in str(e), (i, str(e))
            outcomes["error"] += 1
            kinds[type(e).__name__] = kinds.get(type(e).__name__, 0) + 1
        except BaseException as e:  # anything else is a bug in the reader
            pytest.fail(f"case {i} ({makers[i % len(makers)]}) raised {type(e).__name__}: {e}")
        slowest = max(slowest, time.perf_counter() - t)
    elapsed = time.perf_counter() - start
    print(f"fuzz: {outcomes} {kinds} in {elapsed:.1f}s, slowest case {slowest:.2f}s")
    assert outcomes["error"] > CASES * 0.9
    assert slowest < 5, f"one case took {slowest:.1f}s"
    assert elapsed < 120, f"{CASES} cases took {elapsed:.0f}s"
