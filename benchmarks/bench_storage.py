"""Benchmark: workspace throughput and memory against tar | zstd, and a real S3 server against local disk.

  workspaces  a trace of RD-Agent's core classes whose workspace folders hold ~2 GB (factor.py files,
              Parquet and HDF5 factor values, a symlinked data file), saved and restored by trace-ckpt,
              each in a fresh process (its peak RSS is read from the kernel), against
              `tar -cf - | zstd -3 -T2` and back; and the RSS of importing RD-Agent's Qlib classes
  s3          a 60-loop trace saved / inspected / restored through moto's S3 server on 127.0.0.1,
              against the same on local disk; bytes fetched by inspect counted at s3fs

Run: .venv/bin/python benchmarks/bench_storage.py [--gb 2] [--rows rows.json]
Targets: workspace throughput >= 0.8x of tar|zstd both ways; peak RSS <= 256 MB; remote inspect < 1 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _env import isolated

_TMP = isolated("tckpt-bench-storage-")  # before anything imports rdagent

MB = 1024 * 1024


def _status_kb(field: str) -> int:
    """VmRSS (now) or VmHWM (peak) of this process. Not ru_maxrss: Linux carries that over from the
    parent across fork and exec, so a child would report the benchmark process's own peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def child(action: str, trace_pickle: str, target: str, dest: str) -> None:
    """Runs in a fresh process: one save or one restore, timed; prints JSON with peak and base RSS.

    ``import`` only imports RD-Agent's Qlib experiment classes and reports the RSS that costs."""
    if action == "import":
        import rdagent.scenarios.qlib.experiment.factor_experiment

        print(json.dumps({"rss_kb": _status_kb("VmRSS")}))
        return
    import rdagent.core.experiment
    import rdagent.core.proposal  # noqa: F401

    from trace_ckpt import restore_trace, save_trace

    trace = pickle.loads(Path(trace_pickle).read_bytes()) if action == "save" else None
    base = _status_kb("VmRSS")
    os.sync()
    t = time.perf_counter()
    if action == "save":
        save_trace(trace, target)
    else:
        restore_trace(target, workspace_root=dest)
    os.sync()  # the data is on disk, as with tar
    seconds = time.perf_counter() - t
    peak = _status_kb("VmHWM")
    print(json.dumps({"seconds": seconds, "peak_kb": peak, "base_kb": base}))


def _run_child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "_child", *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _shell_timed(cmd: str) -> float:
    os.sync()
    t = time.perf_counter()
    subprocess.run(["bash", "-o", "pipefail", "-c", cmd], check=True)
    os.sync()
    return time.perf_counter() - t


def _write_values(path: Path, nbytes: int, seed: int, kind: str) -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    cols = 16
    rows = max(1, nbytes // (8 * cols))
    # factor values: random walks rounded to 6 digits, as factor code tends to produce
    values = np.round(np.cumsum(rng.standard_normal((rows, cols)), axis=0) * 0.01, 6)
    df = pd.DataFrame(values, columns=[f"factor_{seed}_{i}" for i in range(cols)])
    if kind == "parquet":
        df.to_parquet(path)
    else:
        df.to_hdf(path, key="data", mode="w")


def _core_trace(data: Path, nodes: int) -> object:
    """A factor-loop-shaped trace of RD-Agent's core classes (Trace, Experiment, FBWorkspace): each node's
    workspace holds its code, a link to the data file, and what ``_write_values`` adds. The Qlib scenario
    classes would add nothing to the workspace work and ~300 MB of imports (RD-Agent's own: litellm), which
    the ``import`` child measures apart."""
    from rdagent.core.experiment import Experiment, FBWorkspace, Task
    from rdagent.core.proposal import Hypothesis, HypothesisFeedback, Trace

    trace = Trace(scen=None)
    accepted: list = []
    for i in range(nodes):
        hyp = Hypothesis(f"momentum over {i % 7 + 1} days (node {i})", "reason", "", "", "", "")
        exp = Experiment(
            sub_tasks=[Task(f"factor_{i}", description=f"close / close_{i % 7 + 1} - 1")],
            based_experiments=list(accepted),
            hypothesis=hyp,
        )
        ws = FBWorkspace()
        ws.inject_files(**{"factor.py": f"def factor_{i}(df):\n    return df['$close'].pct_change({i % 7 + 1})\n"})
        os.symlink(data / "daily_pv.h5", ws.workspace_path / "daily_pv.h5")
        exp.sub_workspace_list = [ws]
        exp.experiment_workspace = FBWorkspace()
        exp.experiment_workspace.inject_files(**{"conf.yaml": f"node: {i}\n"})
        decision = i % 3 != 1
        trace.sync_dag_parent_and_hist((exp, HypothesisFeedback(f"node {i}", decision)), i)
        if decision:
            accepted.append(exp)
    return trace


def workspaces(gb: float, rows: list[dict]) -> None:
    from tests.builders import data_folder
    from trace_ckpt.rdagent.trace import iter_workspaces

    work = _TMP / "ws"
    data = data_folder(work / "data")
    nodes = 20
    trace = _core_trace(data, nodes)
    per_file = int(gb * 1024 * MB / nodes / 2)
    for i, (exp, _) in enumerate(trace.hist):
        ws = Path(exp.sub_workspace_list[0].workspace_path)
        _write_values(ws / "values.parquet", per_file, i, "parquet")
        _write_values(ws / "result_values.h5", per_file, i, "h5")
    folders = [Path(ws.workspace_path) for ws in iter_workspaces(trace) if Path(ws.workspace_path).is_dir()]
    total = 0
    for f in folders:
        for dirpath, _, files in os.walk(f):
            total += sum((Path(dirpath) / n).lstat().st_size for n in files if not (Path(dirpath) / n).is_symlink())
    tp = work / "trace.pkl"
    tp.write_bytes(pickle.dumps(trace, protocol=5))
    print(f"\nworkspaces: {len(folders)} folders, {total / MB:,.0f} MB of files (+ symlinks to a data folder)")

    ck = work / "run.tckpt"
    save = _run_child("save", str(tp), str(ck), "")
    restore = _run_child("restore", "", str(ck), str(work / "back"))
    qlib_import = _run_child("import", "", "", "")["rss_kb"] / 1024
    base = folders[0].parent
    names = " ".join(f.name for f in folders)
    tarball = work / "ws.tar.zst"
    t_tar = _shell_timed(f"tar -cf - -C {base} {names} | zstd -3 -T2 -q -f -o {tarball}")
    (work / "untar").mkdir()
    t_untar = _shell_timed(f"zstd -dc -q {tarball} | tar -xf - -C {work / 'untar'}")
    size, tar_size = ck.stat().st_size, tarball.stat().st_size
    rss_save = save["peak_kb"] / 1024
    rss_restore = restore["peak_kb"] / 1024
    print(f"{'':28} {'trace-ckpt':>12} {'tar | zstd -3 -T2':>18} {'ratio':>7}")
    print(f"{'size MB':28} {size / MB:12.1f} {tar_size / MB:18.1f} {tar_size / size:6.2f}x")
    print(
        f"{'save MB/s':28} {total / MB / save['seconds']:12.1f} {total / MB / t_tar:18.1f} "
        f"{t_tar / save['seconds']:6.2f}x"
    )
    print(
        f"{'restore MB/s':28} {total / MB / restore['seconds']:12.1f} {total / MB / t_untar:18.1f} "
        f"{t_untar / restore['seconds']:6.2f}x"
    )
    print(
        f"peak RSS: save {rss_save:.0f} MB (process before the save {save['base_kb'] / 1024:.0f} MB), "
        f"restore {rss_restore:.0f} MB (before {restore['base_kb'] / 1024:.0f} MB); "
        f"importing RD-Agent's Qlib experiment classes alone: {qlib_import:.0f} MB"
    )
    rows += [
        {
            "what": f"save {total / 1e9:.1f} GB of workspaces: throughput vs tar|zstd -3 -T2",
            "ratio": t_tar / save["seconds"],
            "target": ">= 0.8x",
        },
        {
            "what": f"restore {total / 1e9:.1f} GB of workspaces: throughput vs zstd -d|tar x",
            "ratio": t_untar / restore["seconds"],
            "target": ">= 0.8x",
        },
        {"what": "checkpoint size vs tar|zstd (their size / ours)", "ratio": tar_size / size, "target": ""},
        {"what": "peak RSS of the save process, MB (RD-Agent core classes)", "value": rss_save, "target": "<= 256"},
        {"what": "  of which growth during the save, MB", "value": rss_save - save["base_kb"] / 1024, "target": ""},
        {
            "what": "peak RSS of the restore process, MB (RD-Agent core classes)",
            "value": rss_restore,
            "target": "<= 256",
        },
        {
            "what": "  of which growth during the restore, MB",
            "value": rss_restore - restore["base_kb"] / 1024,
            "target": "",
        },
        {
            "what": "RSS of importing RD-Agent's Qlib experiment classes (litellm), MB",
            "value": qlib_import,
            "target": "",
        },
    ]
    shutil.rmtree(work, ignore_errors=True)


def _best(fn, repeat: int = 3):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def s3(rows: list[dict]) -> None:
    from tests.builders import build_trace, data_folder
    from tests.s3server import counting_s3_reads, s3_server
    from trace_ckpt import read_manifest, restore_trace, save_trace

    work = _TMP / "s3"
    data = data_folder(work / "data")
    loops = 60
    trace = build_trace(
        [()] + [(i - 1,) if i % 10 else () for i in range(1, loops)],
        [(i * 7) % 3 != 0 for i in range(loops)],
        data,
        panel_shape=(60, 20),
        max_combined=30,
    )
    local = work / "run.tckpt"
    with s3_server() as server:
        os.environ.update(server.env)
        url = f"s3://{server.bucket}/runs/run.tckpt"
        with counting_s3_reads() as fetched:
            t_save_l, _ = _best(lambda: save_trace(trace, local))
            t_save_r, _ = _best(lambda: save_trace(trace, url))
            t_insp_l, _ = _best(lambda: read_manifest(local), 5)
            fetched.clear()
            t_insp_r, _ = _best(lambda: read_manifest(url), 5)
            inspect_bytes = sum(fetched) / 5

            def restore(src: str, name: str):
                shutil.rmtree(work / name, ignore_errors=True)
                return restore_trace(src, workspace_root=work / name, allow_modules=["tests"])

            t_rest_l, _ = _best(lambda: restore(str(local), "back-l"))
            t_rest_r, _ = _best(lambda: restore(url, "back-r"))
    size = local.stat().st_size
    print(f"\nS3 (moto server on 127.0.0.1) vs local disk, {loops}-loop trace, checkpoint {size / MB:.2f} MB")
    print(f"{'':12} {'local s':>9} {'s3 s':>9} {'s3 / local':>11}")
    for name, a, b in (("save", t_save_l, t_save_r), ("inspect", t_insp_l, t_insp_r), ("restore", t_rest_l, t_rest_r)):
        print(f"{name:12} {a:9.3f} {b:9.3f} {b / a:10.2f}x")
    print(f"inspect of the remote checkpoint fetched {inspect_bytes / 1024:.1f} KB of {size / 1024:.0f} KB")
    rows += [
        {"what": "S3 save time / local save time", "ratio": t_save_r / t_save_l, "target": ""},
        {"what": "S3 inspect time / local inspect time", "ratio": t_insp_r / t_insp_l, "target": ""},
        {"what": "S3 restore time / local restore time", "ratio": t_rest_r / t_rest_l, "target": ""},
        {
            "what": "bytes fetched by inspect of a remote checkpoint, KB",
            "value": inspect_bytes / 1024,
            "target": "< 1024",
        },
    ]
    shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        try:
            child(*sys.argv[2:6])
        finally:
            shutil.rmtree(_TMP, ignore_errors=True)
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gb", type=float, default=2.0, help="size of the synthetic workspaces")
    ap.add_argument("--only", choices=["workspaces", "s3"], default=None)
    ap.add_argument("--rows", type=Path, default=None, help="append result rows (JSON) to this file")
    args = ap.parse_args()
    rows: list[dict] = []
    try:
        if args.only in (None, "workspaces"):
            workspaces(args.gb, rows)
        if args.only in (None, "s3"):
            s3(rows)
    finally:
        shutil.rmtree(_TMP, ignore_errors=True)
    if args.rows:
        with open(args.rows, "a") as f:
            for r in rows:
                f.write(json.dumps({"bench": "storage", **r}) + "\n")


if __name__ == "__main__":
    main()
