"""Benchmark: disk used by RD-Agent's own ``__session__`` folder vs one trace-ckpt checkpoint.

Runs RD-Agent's real factor loop offline (simulated LLM and Qlib backtest, see examples/offline) for
N loops, then saves the run with `trace-ckpt save` and prints the ratio (target: >= 100x for 60 loops), and the
size of `tar | zstd -3` of the same trace and folders (benchmarks/_naive.py; target: no smaller than the checkpoint).

    .venv/bin/python benchmarks/bench_sessions.py [--loops 60]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from examples.offline.run import offline_env, run_factor_loop  # noqa: E402


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loops", type=int, default=60)
    ap.add_argument("--rows", type=Path, default=None, help="append result rows (JSON) to this file")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tckpt-bench-sessions-") as d:
        work = Path(d)
        t = time.perf_counter()
        log_dir = run_factor_loop(work, args.loops, timeout=3600)
        run_s = time.perf_counter() - t
        env = {**os.environ, **offline_env(work)}
        ckpt = work / "run.tckpt"
        t = time.perf_counter()
        subprocess.run(
            [
                str(Path(sys.executable).parent / "trace-ckpt"),
                "save",
                str(log_dir),
                str(ckpt),
                "--allow-module",
                "examples",
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        save_s = time.perf_counter() - t
        session = du(log_dir / "__session__")
        workspaces = du(work / "RD-Agent_workspace")
        size = ckpt.stat().st_size
        naive = subprocess.run(  # the same trace and folders as tar | zstd -3, restored from the checkpoint
            [
                sys.executable,
                str(Path(__file__).parent / "_naive.py"),
                str(ckpt),
                str(work / "naive.tar.zst"),
                str(work / "naive-ws"),
            ],
            env={**env, "TRACE_CKPT_ALLOW_MODULES": '["examples"]'},
            check=True,
            capture_output=True,
            text=True,
        )
        tar_size = int(naive.stdout.split()[-1])
        print(f"{args.loops}-loop RD-Agent factor run (offline, {run_s:.0f} s); save took {save_s:.1f} s")
        print(f"{'what':44} {'bytes':>14} {'vs checkpoint':>14}")
        print(f"{'RD-Agent __session__ folder':44} {session:14,d} {session / size:13.0f}x")
        print(
            f"{'__session__ + workspace folders':44} {session + workspaces:14,d} {(session + workspaces) / size:13.0f}x"
        )
        print(f"{'tar | zstd -3 (trace + workspaces)':44} {tar_size:14,d} {tar_size / size:13.2f}x")
        print(f"{'trace-ckpt checkpoint (trace + workspaces)':44} {size:14,d} {1:13.0f}x")
        if args.rows:
            with open(args.rows, "a") as f:
                f.write(
                    json.dumps(
                        {
                            "bench": "sessions",
                            "what": f"{args.loops}-loop __session__ folder / checkpoint (disk)",
                            "ratio": session / size,
                            "target": ">= 100x",
                        }
                    )
                    + "\n"
                )
                f.write(
                    json.dumps(
                        {
                            "bench": "sessions",
                            "what": f"{args.loops}-loop RD-Agent run, tar | zstd -3 (trace + workspaces): size / ours",
                            "ratio": tar_size / size,
                            "target": ">= 1 (no larger)",
                        }
                    )
                    + "\n"
                )


if __name__ == "__main__":
    main()
