"""Benchmark: trace-ckpt against doing it by hand and against generic serializers, in one run.

Builds a 60-loop and a 500-loop trace from RD-Agent's real classes with their workspace folders on
disk (60 x 20 panels), and a 60-loop trace of few small files (30 x 5 panels: where per-blob and per-node bytes
weigh most), then prints sizes and times as ratios against baselines measured in the same process:

  by hand   pickle.dumps(trace) + copying every workspace folder (links kept as links);
            back: pickle.loads + copying the folders back
  tar | zstd -3   the naive archive of the same content: a tar stream of pickle.dumps(trace) and every
            workspace folder (links kept as links), through zstd level 3 (the zstandard library, one thread);
            back: decompress, untar, pickle.loads
  pickle+zstd-3, joblib(compress=3), dill+gzip   the trace object only (no workspace files)

It also prints where the checkpoint's bytes go (manifest, graph, blob packs, blob index, files index) and
times `trace-ckpt inspect` as a command: the median of 7 runs, against the median of 7 runs of a Python that
only imports json and zstandard (what reading the manifest needs at least).

Run: make bench   (or .venv/bin/python benchmarks/bench_codec.py [--loops 60 500] [--small-panels 60])
Imports are excluded from every timing.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _env import isolated
from _naive import tar_zstd, untar_zstd

_TMP = isolated("tckpt-bench-")  # before anything imports rdagent

import dill  # noqa: E402
import joblib  # noqa: E402
import zstandard  # noqa: E402

from tests.builders import ALLOW, build_trace, data_folder  # noqa: E402
from trace_ckpt import read_manifest, restore_trace, save_trace  # noqa: E402
from trace_ckpt.rdagent.trace import iter_workspaces  # noqa: E402


def timed(fn, repeat: int = 3) -> tuple[float, object]:
    """Best of ``repeat`` wall-clock runs, and the last result. Each run starts with the disk's dirty
    pages written back and a collection, so no method pays for the writes of the one before."""
    best, out = float("inf"), None
    for _ in range(repeat):
        os.sync()
        gc.collect()
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def folder_bytes(paths: list[Path]) -> int:
    total = 0
    for p in paths:
        for dirpath, _, files in os.walk(p):
            for f in files:
                fp = Path(dirpath) / f
                if not fp.is_symlink():
                    total += fp.stat().st_size
    return total


def median_run(cmd: list[str], env: dict[str, str], n: int = 7) -> float:
    """Median wall-clock seconds of ``n`` runs of a command (after one untimed run that warms the caches)."""
    subprocess.run(cmd, capture_output=True, check=True, env=env)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True, env=env)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def breakdown(path: Path) -> dict[str, int]:
    """Stored bytes of a checkpoint by part: header+footer, manifest, and each kind of section."""
    m = read_manifest(path)
    parts = {"header+footer": 16 + 88, "manifest": _manifest_bytes(path)}
    for s in m.sections:
        key = {"blobs": "blob packs", "index": "blob index", "files": "files index"}.get(s.kind, s.kind)
        parts[key] = parts.get(key, 0) + s.length
    return parts


def bench(loops: int, work: Path, panel_shape: tuple[int, int] = (60, 20)) -> list[dict]:
    data = data_folder(work / "data")
    parents = [()] + [(i - 1,) if i % 10 else () for i in range(1, loops)]
    decisions = [(i * 7) % 3 != 0 for i in range(loops)]
    # the combined SOTA frame of each node holds at most 30 factors, to keep 500 loops to a few GB
    trace = build_trace(parents, decisions, data, quant=True, panel_shape=panel_shape, max_combined=30)
    label = f"{loops} loops" + ("" if panel_shape == (60, 20) else f" ({panel_shape[0]} x {panel_shape[1]} panels)")
    ws_paths = [Path(ws.workspace_path) for ws in iter_workspaces(trace) if Path(ws.workspace_path).exists()]
    rows = []

    # by hand: pickle + copy folders
    def hand_save() -> bytes:
        dest = work / "hand"
        shutil.rmtree(dest, ignore_errors=True)
        for p in ws_paths:
            shutil.copytree(p, dest / p.name, symlinks=True)
        return pickle.dumps(trace, protocol=5)

    t_hand_save, raw = timed(hand_save)
    hand_size = len(raw) + folder_bytes([work / "hand"])

    def hand_restore() -> object:
        dest = work / "hand-back"
        shutil.rmtree(dest, ignore_errors=True)
        for p in ws_paths:
            shutil.copytree(work / "hand" / p.name, dest / p.name, symlinks=True)
        return pickle.loads(raw)

    t_hand_restore, _ = timed(hand_restore)

    ck = work / "run.tckpt"
    t_save, manifest = timed(lambda: save_trace(trace, ck))

    def ours_restore() -> object:
        shutil.rmtree(work / "ours-back", ignore_errors=True)
        return restore_trace(ck, workspace_root=work / "ours-back", allow_modules=ALLOW)

    t_restore, _ = timed(ours_restore)
    size = ck.stat().st_size
    rows.append(("trace-ckpt (trace + workspaces)", size, t_save, t_restore))
    rows.append(("by hand: pickle + copy folders", hand_size, t_hand_save, t_hand_restore))
    tz = work / "naive.tar.zst"
    t_s, tz_size = timed(lambda: tar_zstd(pickle.dumps(trace, protocol=5), ws_paths, tz))
    t_r, _ = timed(lambda: untar_zstd(tz, work / "tar-back"))
    rows.append(("tar | zstd -3 (trace + workspaces)", tz_size, t_s, t_r))

    # generic serializers, trace object only
    cctx, dctx = zstandard.ZstdCompressor(level=3), zstandard.ZstdDecompressor()
    t_s, blob = timed(lambda: cctx.compress(pickle.dumps(trace, protocol=5)))
    t_r, _ = timed(lambda: pickle.loads(dctx.decompress(blob)))
    rows.append(("pickle+zstd-3 (object only)", len(blob), t_s, t_r))

    def jl_save() -> int:
        joblib.dump(trace, work / "t.joblib", compress=3)
        return (work / "t.joblib").stat().st_size

    t_s, jl_size = timed(jl_save)
    t_r, _ = timed(lambda: joblib.load(work / "t.joblib"))
    rows.append(("joblib compress=3 (object only)", jl_size, t_s, t_r))

    t_s, dz = timed(lambda: gzip.compress(dill.dumps(trace), compresslevel=6))
    t_r, _ = timed(lambda: dill.loads(gzip.decompress(dz)))
    rows.append(("dill+gzip (object only)", len(dz), t_s, t_r))

    # inspect reads the manifest only: in process, and as a command (interpreter start included), against a
    # Python that only imports what reading a manifest needs at least, both the median of 7 runs
    t_manifest, _ = timed(lambda: read_manifest(ck), repeat=5)
    cli = Path(sys.executable).parent / "trace-ckpt"
    # as an installed command runs: with its bytecode cached (a sandbox may set PYTHONDONTWRITEBYTECODE,
    # which makes every run compile trace_ckpt from source); the first run writes the cache
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    t_cli = median_run([str(cli), "inspect", str(ck)], env)
    t_base = median_run([sys.executable, "-c", "import json, zstandard"], env)
    parts = breakdown(ck)

    print(
        f"\n{label}: {len(ws_paths)} workspace folders, {manifest.workspace_stats.files} files "
        f"({manifest.workspace_stats.file_bytes / 1e6:.1f} MB), pickle alone {len(raw) / 1e6:.2f} MB"
    )
    print(
        f"{'method':34} {'size MB':>9} {'save s':>8} {'restore s':>10}   {'ours: smaller':>13} {'save':>6} {'restore':>8}"
    )
    for name, sz, ts, tr in rows:
        print(
            f"{name:34} {sz / 1e6:9.2f} {ts:8.3f} {tr:10.3f}   {sz / size:12.1f}x {t_save / ts:5.2f}x {t_restore / tr:7.2f}x"
        )
    print("where the checkpoint's bytes go: " + ", ".join(f"{k} {v / 1e3:.1f} KB" for k, v in parts.items()))
    print(
        f"inspect: read_manifest {t_manifest * 1000:.0f} ms; `trace-ckpt inspect` command {t_cli * 1000:.0f} ms "
        f"median of 7 (target <= 200 ms), `python -c 'import json, zstandard'` {t_base * 1000:.0f} ms: "
        f"{t_cli / t_base:.1f}x"
    )
    table = [
        {
            "what": f"{label}, {name}: size / ours",
            "ratio": sz / size,
            "save": t_save / ts,
            "restore": t_restore / tr,
            **({"target": ">= 1 (no larger), save <= 1"} if name.startswith("tar") else {}),
            **({"target": ">= 10x"} if name.startswith("by hand") and label == "60 loops" else {}),
        }
        for name, sz, ts, tr in rows[1:]
    ]
    table.append(
        {
            "what": f"{label}: `trace-ckpt inspect` command, median of 7, ms",
            "value": t_cli * 1000,
            "target": "<= 200",
        }
    )
    table.append(
        {
            "what": f"{label}: inspect / `python -c 'import json, zstandard'` ({t_base * 1000:.0f} ms)",
            "ratio": t_cli / t_base,
        }
    )
    return table


def _manifest_bytes(path: Path) -> int:
    import struct

    with open(path, "rb") as f:
        f.seek(-88, 2)
        return struct.unpack("<QQ", f.read(16))[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loops", type=int, nargs="+", default=[60, 500])
    ap.add_argument("--small-panels", type=int, nargs="*", default=[60], help="loops of traces with 30 x 5 panels")
    ap.add_argument("--rows", type=Path, default=None, help="append result rows (JSON) to this file")
    args = ap.parse_args()
    print(
        "ratios: 'smaller' = other size / trace-ckpt size (higher is better for us); 'save'/'restore' ="
        " trace-ckpt time / other time (lower is better; targets vs by hand: save <= 1.5x, restore <= 1.2x)"
    )
    for n, shape in [(n, (60, 20)) for n in args.loops] + [(n, (30, 5)) for n in args.small_panels]:
        work = _TMP / f"bench-{n}-{shape[0]}x{shape[1]}"
        work.mkdir()
        table = bench(n, work, shape)
        shutil.rmtree(work, ignore_errors=True)
        if args.rows:
            with open(args.rows, "a") as f:
                for r in table:
                    f.write(json.dumps({"bench": "codec", **r}) + "\n")
    shutil.rmtree(_TMP, ignore_errors=True)


if __name__ == "__main__":
    main()
