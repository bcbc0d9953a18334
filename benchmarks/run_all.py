"""`make bench`: every benchmark of benchmarks/, each in its own process, then one table of ratios.

Each script prints its own detailed table as it goes and appends its summary rows (JSON) to one file;
the combined table at the end is what goes into docs/performance.md. Every ratio compares two
methods measured in the same run on this machine.

Run: .venv/bin/python benchmarks/run_all.py [--quick]   (--quick: 60 loops, 0.5 GB of workspaces, no 60-loop RD-Agent run)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    runs = [
        ["bench_codec.py", "--loops", "60"] + ([] if args.quick else ["500"]),
        ["bench_storage.py", "--gb", "0.5" if args.quick else "2"],
    ] + ([] if args.quick else [["bench_sessions.py", "--loops", "60"]])
    with tempfile.TemporaryDirectory() as d:
        rows_file = Path(d) / "rows.jsonl"
        for cmd in runs:
            print(f"\n=== {' '.join(cmd)}", flush=True)
            subprocess.run([sys.executable, str(HERE / cmd[0]), *cmd[1:], "--rows", str(rows_file)], check=True)
        rows = [json.loads(line) for line in rows_file.read_text().splitlines()]
    cpu = os.cpu_count()
    print(f"\n=== summary ({platform.python_version()}, {cpu} cores, {platform.machine()})")
    print(
        "value: a size ratio (other / ours) or a throughput ratio (ours / other): higher is better for"
        " trace-ckpt; save and restore columns: ours time / other time (lower is better)"
    )
    print(f"{'bench':9} {'what':70} {'value':>9} {'save':>6} {'restore':>8}  target")
    for r in rows:
        value = f"{r['ratio']:.2f}x" if "ratio" in r else f"{r['value']:.1f}"
        save = f"{r['save']:.2f}x" if "save" in r else ""
        restore = f"{r['restore']:.2f}x" if "restore" in r else ""
        print(f"{r['bench']:9} {r['what'][:70]:70} {value:>9} {save:>6} {restore:>8}  {r.get('target', '')}")


if __name__ == "__main__":
    main()
