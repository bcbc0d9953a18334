"""How tests/data/v<N>.tckpt were made: run once with trace-ckpt at the last commit that wrote format v<N>,
a1c61fa for v1 (SHA-256 digests), bb57a3b for v2 (plain-JSON manifest and blob index). Kept so the fixtures
can be read, not re-run: today it would write the current format. v<N>.expect.json holds what the source
trace and folders were, taken from them directly.

    .venv/bin/python tests/data/make_fixture.py v1   # (at a1c61fa, where the script was make_v1_fixture.py)
    .venv/bin/python tests/data/make_fixture.py v2   # (at bb57a3b)
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
TMP = Path(tempfile.mkdtemp(prefix="tckpt-v1-"))
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ["WORKSPACE_PATH"] = str(TMP / "RD-Agent_workspace")  # read by rdagent at import

from tests.builders import build_trace, data_folder  # noqa: E402
from tests.compare import folder_digests  # noqa: E402
from trace_ckpt import save_trace  # noqa: E402
from trace_ckpt.rdagent.trace import iter_workspaces  # noqa: E402


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "v1"
    tmp = TMP
    data = data_folder(tmp / "data")
    parents, decisions = [(), (0,), (1,)], [True, False, True]
    trace = build_trace(parents, decisions, data)
    first = trace.hist[0][0].sub_workspace_list[0].workspace_path
    # a file of more than one pack (8 MB): stored in a section of its own and streamed on restore
    (Path(first) / "big.bin").write_bytes(b"".join(i.to_bytes(4, "little") * 64 for i in range(36_000)))
    folders = {Path(ws.workspace_path).name: folder_digests(ws.workspace_path) for ws in iter_workspaces(trace)}
    expect = {
        "dag_parent": [list(p) for p in trace.dag_parent],
        "hypotheses": [str(exp.hypothesis.hypothesis) for exp, _ in trace.hist],
        "decisions": [fb.decision for _, fb in trace.hist],
        "based_on_first": [
            exp.based_experiments.index(trace.hist[0][0]) if trace.hist[0][0] in exp.based_experiments else None
            for exp, _ in trace.hist
        ],
        "folders": folders,
    }
    save_trace(trace, HERE / f"{name}.tckpt", allow_modules=["tests"])
    (HERE / f"{name}.expect.json").write_text(json.dumps(expect, indent=1, sort_keys=True) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
