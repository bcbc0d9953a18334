"""Checkpoints behind URLs: memory:// and file:// round trips, a real S3 server (moto, on 127.0.0.1)
with real credentials checks, ranged manifest reads, and uploads that fail half-way."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import fsspec
import pytest

from tests.builders import ALLOW, build_trace, data_folder
from tests.clirun import run_cli as run
from tests.compare import assert_same_graph, snapshot_folder
from tests.s3server import counting_s3_reads, s3_server
from trace_ckpt import read_manifest, restore_trace, save_trace, verify_checkpoint
from trace_ckpt.errors import (
    CheckpointNotFoundError,
    CorruptCheckpointError,
    MissingExtraError,
    SaveError,
    StorageAccessError,
    UntrustedContentError,
)
from trace_ckpt.format.container import FOOTER, HEADER
from trace_ckpt.rdagent.trace import iter_workspaces
from trace_ckpt.storage import list_files, set_transfer_progress, storage_options

ROOT = Path(__file__).resolve().parents[1]
TRACE_CKPT = Path(sys.executable).parent / "trace-ckpt"


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("storage")
    return build_trace([(), (0,), (1,), (0,)], [True, False, True, True], data_folder(d / "data"))


def _roundtrip(trace, url: str, root: Path) -> None:
    before = {str(ws.workspace_path): snapshot_folder(ws.workspace_path) for ws in iter_workspaces(trace)}
    save_trace(trace, url)
    assert read_manifest(url).counts.hist == len(trace.hist)
    assert verify_checkpoint(url).ok
    restored = restore_trace(url, workspace_root=root, allow_modules=ALLOW)
    path_map = {old: str((root / Path(old).name).absolute()) for old in before}
    assert_same_graph(trace, restored, path_map=path_map)
    for old, snap in before.items():
        assert snapshot_folder(path_map[old]) == snap


def test_memory_url_roundtrip(trace, tmp_path: Path) -> None:
    url = "memory://tckpt-tests/runs/run1.tckpt"
    _roundtrip(trace, url, tmp_path / "ws")
    assert [e.url for e in list_files("memory://tckpt-tests/runs")] == [url]
    fsspec.filesystem("memory").rm("/tckpt-tests", recursive=True)


def test_file_url_roundtrip(trace, tmp_path: Path) -> None:
    _roundtrip(trace, f"file://{tmp_path}/run1.tckpt", tmp_path / "ws")
    assert (tmp_path / "run1.tckpt").is_file()


def _transfers(trace, url: str, size_of_object, root: Path) -> None:
    """A save uploads, a restore downloads: each reports every byte of the object once, labelled."""
    import contextlib
    import contextvars

    seen: list[tuple[str, int | None, int]] = []

    @contextlib.contextmanager
    def bar(label: str, total: int | None):
        moved = [0]
        yield lambda n: moved.__setitem__(0, moved[0] + n)
        seen.append((label, total, moved[0]))

    def run() -> None:
        set_transfer_progress(bar)
        save_trace(trace, url)
        restore_trace(url, workspace_root=root, allow_modules=ALLOW)

    contextvars.copy_context().run(run)  # the bar stays in that context, as in the CLI
    size = size_of_object()
    assert seen == [("uploading", size, size), ("downloading", size, size)]


def test_memory_url_transfers_report_progress(trace, tmp_path: Path) -> None:
    fs = fsspec.filesystem("memory")
    _transfers(trace, "memory://tckpt-progress/run.tckpt", lambda: fs.size("/tckpt-progress/run.tckpt"), tmp_path)
    fs.rm("/tckpt-progress", recursive=True)


def test_a_remote_folder_is_not_a_checkpoint(capsys: pytest.CaptureFixture[str]) -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe("/tckpt-folder/runs/run1.tckpt", b"x")
    code, _, err = run(capsys, "verify", "memory://tckpt-folder/runs")
    fs.rm("/tckpt-folder", recursive=True)
    assert code == CorruptCheckpointError.exit_code
    assert "is a folder, not a checkpoint file" in err and err.count("\n") == 1


def test_missing_backend_names_the_extra(capsys: pytest.CaptureFixture[str]) -> None:
    # gcsfs is not a dependency of the tests: gs:// has no backend here
    assert "gcsfs" not in sys.modules
    with pytest.raises(MissingExtraError, match=r"pip install 'trace-ckpt\[gcs\]'"):
        read_manifest("gs://bucket/run1.tckpt")
    code, out, err = run(capsys, "inspect", "gs://bucket/run1.tckpt")
    assert code == MissingExtraError.exit_code and out == ""
    assert err.count("\n") == 1 and "trace-ckpt[gcs]" in err


def test_storage_option_must_be_key_value(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--storage-option", "novalue", "ls", ".")
    assert code == 2 and err.count("\n") == 1 and "key=value" in err


# --- a real S3-compatible server --------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3():
    with s3_server() as server:
        yield {
            "endpoint": server.endpoint,
            "client": server.client,
            "env": server.env,
            "key": server.key,
            "secret": server.secret,
        }


@pytest.fixture
def s3_env(s3, monkeypatch: pytest.MonkeyPatch):
    """Credentials the way the AWS SDK takes them: environment variables (a fresh s3fs instance each test)."""
    for k, v in s3["env"].items():
        monkeypatch.setenv(k, v)
    fsspec.filesystem("s3").clear_instance_cache()
    yield s3
    fsspec.filesystem("s3").clear_instance_cache()


def test_s3_save_ls_inspect_verify_restore(capsys, s3_env, factor_run: Path, factor_ckpt: Path, tmp_path: Path) -> None:
    url = "s3://research/runs/run1.tckpt"
    code, out, err = run(capsys, "save", factor_run, url, "--allow-module", "examples")
    assert code == 0, err
    assert f"saved {url}" in out
    obj = s3_env["client"].head_object(Bucket="research", Key="runs/run1.tckpt")
    assert obj["ContentLength"] > 0

    code, out, err = run(capsys, "ls", "s3://research/runs/", "--json")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["url"] for r in rows] == [url]
    local = read_manifest(factor_ckpt)
    assert rows[0]["nodes"] == local.counts.hist and rows[0]["accepted"] == local.counts.accepted
    assert rows[0]["size"] == obj["ContentLength"]

    # inspect fetches the header, the footer and the manifest only: count what s3fs actually downloads
    with counting_s3_reads() as fetched:
        code, out, err = run(capsys, "inspect", url, "--json")
    assert code == 0, err
    remote = json.loads(out)
    code, out, err = run(capsys, "inspect", factor_ckpt, "--json")
    assert code == 0 and remote["nodes"] == json.loads(out)["nodes"]
    tail = s3_env["client"].get_object(Bucket="research", Key="runs/run1.tckpt", Range=f"bytes=-{FOOTER.size}")
    footer = FOOTER.unpack(tail["Body"].read())  # this save's own: a compressed manifest's length varies by a byte
    assert sum(fetched) == HEADER.size + FOOTER.size + footer[1]  # header, footer, manifest: nothing else
    assert sum(fetched) < 1024 * 1024 and sum(fetched) < obj["ContentLength"] / 2

    code, out, err = run(capsys, "verify", url)
    assert code == 0 and out.startswith("ok:"), err

    restored = restore_trace(url, workspace_root=tmp_path / "ws", allow_modules=["examples"])
    reference = restore_trace(factor_ckpt, workspace_root=tmp_path / "ws-local", allow_modules=["examples"])
    path_map = {
        str(a.workspace_path): str(b.workspace_path)
        for a, b in zip(iter_workspaces(reference), iter_workspaces(restored))
    }
    assert_same_graph(reference, restored, path_map=path_map)


def test_s3_transfers_report_progress(s3_env, trace, tmp_path: Path) -> None:
    client = s3_env["client"]
    _transfers(
        trace,
        "s3://research/progress/run.tckpt",
        lambda: client.head_object(Bucket="research", Key="progress/run.tckpt")["ContentLength"],
        tmp_path,
    )


def test_s3_resume_restores_from_the_bucket(s3_env, factor_ckpt: Path, tmp_path: Path) -> None:
    """`trace-ckpt resume s3://...` in a fresh folder: the restore step runs from the bucket, then one step."""
    from examples.offline.run import offline_env

    s3_env["client"].upload_file(str(factor_ckpt), "research", "runs/resume.tckpt")
    env = {**os.environ, **offline_env(tmp_path, "model"), **s3_env["env"]}
    proc = subprocess.run(
        [
            str(TRACE_CKPT),
            "resume",
            "s3://research/runs/resume.tckpt",
            "--only",
            "model",
            "--step-n",
            "1",
            "--allow-module",
            "examples",
            "--trust",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    restored_nodes = read_manifest(factor_ckpt).counts.hist
    assert f"{restored_nodes} restored nodes" in proc.stdout
    # the restored workspaces landed in the new run's WORKSPACE_PATH
    ws_root = Path(env["WORKSPACE_PATH"])
    assert ws_root.is_dir() and any(p.name == "factor.py" for p in ws_root.rglob("factor.py"))


def test_s3_resume_refuses_an_untrusted_url_before_downloading_it(
    s3_env, trace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """resume runs a checkpoint's code: an unsigned file in a bucket is refused from its manifest (ranged reads),
    and the file is never downloaded whole (it was, before the trust check)."""
    import trace_ckpt.ckpt as ckpt_module
    from trace_ckpt.rdagent.resume import resume

    url = "s3://research/untrusted/run.tckpt"
    save_trace(trace, url)
    monkeypatch.delenv("TRACE_CKPT_TRUST_RESUME", raising=False)
    downloads: list[str] = []
    real_copy = ckpt_module.local_copy

    def recording_copy(path):
        downloads.append(str(path))
        return real_copy(path)

    monkeypatch.setattr(ckpt_module, "local_copy", recording_copy)
    with pytest.raises(UntrustedContentError, match="is unsigned"):
        resume(url, only="model", loop_n=1, workspace_root=tmp_path / "ws", log_dir=tmp_path / "log")
    assert downloads == []
    assert not (tmp_path / "ws").exists() and not (tmp_path / "log").exists()


def test_s3_bad_bucket_and_wrong_credentials(
    capsys, s3_env, trace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SaveError, match="does not exist"):
        save_trace(trace, "s3://no-such-bucket/run1.tckpt")
    code, out, err = run(capsys, "inspect", "s3://no-such-bucket/run1.tckpt")
    assert code == CheckpointNotFoundError.exit_code and err.count("\n") == 1, err

    s3_env["client"].put_object(Bucket="research", Key="creds/run1.tckpt", Body=b"TRACECKP")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    fsspec.filesystem("s3").clear_instance_cache()
    with pytest.raises(StorageAccessError, match="access denied"):
        read_manifest("s3://research/creds/run1.tckpt")
    code, out, err = run(capsys, "inspect", "s3://research/creds/run1.tckpt")
    assert code == StorageAccessError.exit_code and out == "" and err.count("\n") == 1, err
    # options given in Python (or with --storage-option) win over the environment
    with storage_options(key=s3_env["key"], secret=s3_env["secret"]), pytest.raises(CorruptCheckpointError):
        read_manifest("s3://research/creds/run1.tckpt")  # authenticated now: the 8 bytes are read, and refused
    assert "Traceback" not in err
    code, out, err = run(capsys, "save", tmp_path / "nowhere", "s3://research/creds/x.tckpt")
    assert code != 0 and err.count("\n") == 1


def test_s3_upload_interrupted_half_way_leaves_no_partial_object(
    s3_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A multipart upload whose second part fails: the previous object stays, whole; the upload is aborted."""
    import s3fs

    from trace_ckpt.storage import upload

    data = data_folder(tmp_path / "data")
    big = build_trace([(), (0,)], [True, True], data)
    ws = big.hist[0][0].sub_workspace_list[0].workspace_path
    (ws / "noise.bin").write_bytes(os.urandom(12 * 1024 * 1024))  # incompressible: a 12 MB checkpoint
    url = "s3://research/interrupt/run.tckpt"
    small = build_trace([()], [True], data)
    save_trace(small, url)
    before = s3_env["client"].get_object(Bucket="research", Key="interrupt/run.tckpt")["Body"].read()

    monkeypatch.setattr(upload, "UPLOAD_CHUNK_BYTES", 5 * 1024 * 1024)  # S3's smallest part: 3 parts
    original = s3fs.S3FileSystem._call_s3
    parts: list[int] = []

    async def flaky(self, method, *args, **kwargs):
        if method == "upload_part":
            parts.append(kwargs.get("PartNumber", 0))
            if len(parts) == 2:
                raise ConnectionResetError("connection reset by peer (injected)")
        return await original(self, method, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_call_s3", flaky)
    with pytest.raises(SaveError) as e:
        save_trace(big, url)
    assert "\n" not in str(e.value) and "untouched" in str(e.value)
    assert len(parts) >= 2  # the failure really came in the middle of a multipart upload
    monkeypatch.setattr(s3fs.S3FileSystem, "_call_s3", original)
    after = s3_env["client"].get_object(Bucket="research", Key="interrupt/run.tckpt")["Body"].read()
    assert after == before
    assert s3_env["client"].list_multipart_uploads(Bucket="research").get("Uploads", []) == []
    assert read_manifest(url).counts.hist == 1
    shutil.rmtree(ws, ignore_errors=True)


@pytest.mark.parametrize(
    "args,code",
    [
        (("ls", "memory://no-such-bucket/runs/"), CheckpointNotFoundError.exit_code),
        (("ls", "/no/such/folder"), CheckpointNotFoundError.exit_code),
        (("inspect", "memory://no-such-bucket/run1.tckpt"), CheckpointNotFoundError.exit_code),
        (("inspect", "nosuchprotocol://bucket/run1.tckpt"), MissingExtraError.exit_code),  # no backend knows it
        (("save", "/no/such/run", "memory://b/run1.tckpt"), CheckpointNotFoundError.exit_code),
    ],
)
def test_bad_urls_are_one_line_errors(capsys: pytest.CaptureFixture[str], args: tuple[str, ...], code: int) -> None:
    got, out, err = run(capsys, *args)
    assert got == code and out == "" and err.count("\n") == 1 and err.startswith("trace-ckpt: error:"), err
