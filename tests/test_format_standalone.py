"""The format and codec layers work without RD-Agent (issue 15, docs/architecture.md): in a process where
``import rdagent`` fails, old files (v1, v2) are read, verified and their workspace folders restored as saved,
and a v3 file of plain data is written and read back. Only the object graph of an RD-Agent trace needs RD-Agent,
and asking for it is one typed error naming the class."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import hashlib, json, sys
    from datetime import datetime, timezone
    from pathlib import Path

    sys.modules["rdagent"] = None  # `import rdagent` raises ImportError from here on

    import pandas as pd

    from trace_ckpt.ckpt import Checkpoint, read_manifest, verify_checkpoint
    from trace_ckpt.errors import MissingClassError
    from trace_ckpt.format.container import FORMAT_VERSION
    from trace_ckpt.format.manifest import Manifest, Producer
    from trace_ckpt.pipeline import write_checkpoint

    data, work = Path(sys.argv[1]), Path(sys.argv[2])

    def digests(folder):
        return {
            p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()
        }

    for version in ("v1", "v2"):
        path, expect = data / f"{version}.tckpt", json.loads((data / f"{version}.expect.json").read_text())
        assert read_manifest(path).counts.hist == len(expect["decisions"]), version
        assert verify_checkpoint(path).ok, version
        with Checkpoint.open(path) as ck:
            keys = [k for k in ck.files.workspaces if Path(k).name in expect["folders"]]
            assert keys, version
            ck.materialize({k: work / version / Path(k).name for k in keys})
            for k in keys:
                want = {rel: d for rel, (kind, d) in expect["folders"][Path(k).name].items() if kind == "file"}
                assert digests(work / version / Path(k).name) == want, (version, k)
            try:
                ck.root
            except MissingClassError as e:  # the graph holds RD-Agent's classes: one typed error naming one
                assert "rdagent" in str(e) and "\\n" not in str(e), e
            else:
                raise AssertionError(f"{version}: an RD-Agent graph loaded without RD-Agent")

    folder = work / "ws"
    (folder / "sub").mkdir(parents=True)
    (folder / "factor.py").write_text("x = 1\\n")
    (folder / "sub" / "values.bin").write_bytes(bytes(range(256)) * 64)
    root = {"hist": [("exp", True), ("exp2", False)], "frame": pd.DataFrame({"a": [1.5, 2.5]}), "ws": str(folder)}
    draft = Manifest(
        format_version=FORMAT_VERSION,
        created_at=datetime.now(timezone.utc),
        producer=Producer(trace_ckpt="test", python=sys.version.split()[0]),
        trace_class="builtins.dict",
    )
    out = work / "plain.tckpt"
    write_checkpoint(out, root, draft, [str(folder)])
    assert read_manifest(out).format_version == FORMAT_VERSION and verify_checkpoint(out).ok
    with Checkpoint.open(out) as ck:
        back = ck.root
        assert back["hist"] == root["hist"] and back["frame"].equals(root["frame"])
        ck.materialize({str(folder): work / "ws-back"})
    assert digests(work / "ws-back") == digests(folder)
    loaded = [m for m, mod in sys.modules.items() if mod is not None and (m == "rdagent" or m.startswith("rdagent."))]
    assert sys.modules["rdagent"] is None and not loaded, loaded
    print("standalone ok")
    """
)


def test_format_and_codec_work_without_rdagent(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(ROOT / "tests" / "data"), str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert r.returncode == 0 and r.stdout.strip().endswith("standalone ok"), r.stdout[-2000:] + r.stderr[-3000:]
