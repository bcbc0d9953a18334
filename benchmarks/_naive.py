"""The naive answer to "keep this run", which the benchmarks measure trace-ckpt against: a tar stream of
``pickle.dumps(trace)`` and every workspace folder (links kept as links), through zstd level 3."""

from __future__ import annotations

import io
import pickle
import shutil
import tarfile
from pathlib import Path

import zstandard


def tar_zstd(raw: bytes, ws_paths: list[Path], out: Path) -> int:
    """``tar -c trace.pkl <folders> | zstd -3`` in one stream, written to ``out``; its size."""
    with (
        open(out, "wb") as f,
        zstandard.ZstdCompressor(level=3).stream_writer(f) as zw,
        tarfile.open(fileobj=zw, mode="w|") as tar,
    ):
        info = tarfile.TarInfo("trace.pkl")
        info.size = len(raw)
        tar.addfile(info, io.BytesIO(raw))
        for p in ws_paths:
            tar.add(p, arcname=p.name)  # links stay links, as in the checkpoint
    return out.stat().st_size


def untar_zstd(src: Path, dest: Path) -> object:
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir()
    with (
        open(src, "rb") as f,
        zstandard.ZstdDecompressor().stream_reader(f) as zr,
        tarfile.open(fileobj=zr, mode="r|") as tar,
    ):
        tar.extractall(dest, filter="tar")
    return pickle.loads((dest / "trace.pkl").read_bytes())


def main() -> None:
    """``_naive.py CKPT OUT WS_ROOT``: restore CKPT's trace and folders under WS_ROOT, write their naive archive to
    OUT and print its size (for a trace that only a checkpoint holds, as after a real RD-Agent run)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from trace_ckpt import restore_trace
    from trace_ckpt.rdagent.trace import iter_workspaces

    ckpt, out, root = (Path(a) for a in sys.argv[1:4])
    trace = restore_trace(ckpt, workspace_root=root)
    folders = [Path(ws.workspace_path) for ws in iter_workspaces(trace) if Path(ws.workspace_path).exists()]
    print(tar_zstd(pickle.dumps(trace, protocol=5), list(dict.fromkeys(folders)), out))


if __name__ == "__main__":
    main()
