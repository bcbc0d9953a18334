"""Attacks on the readers of factor values and on resume (issue 13, classes 2, 5, 6 and 7).

A checkpoint from elsewhere is data: a crafted ``result.h5`` must never run code in export-factors, merge's
factor rename or resume's cache seeding; resume runs checkpoint content only when the user trusts it (a flag
or a signature from a configured key), and seeds a cache of its own, never RD-Agent's shared one; every
reader honours ``--require-signature``. Each attack writes a marker file when its pickle runs.
"""

from __future__ import annotations

import os
import pickle
import warnings
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import tables

from tests.builders import build_trace, data_folder
from tests.clirun import run_cli as run
from trace_ckpt import merge, read_manifest, restore_trace, save_trace
from trace_ckpt.codec.hdf import check_factor_file, factor_values_bytes, read_factor_values
from trace_ckpt.errors import CorruptCheckpointError, ResumeError, UntrustedContentError
from trace_ckpt.rdagent.resume import EXECUTE_CACHE, restore_into, seed_execute_cache

KEY = "attack-readers-test-key-0123456789abcdef"


class _Touch:
    """Unpickling this creates ``path``: the proof that a reader ran the file's code."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple:
        return (open, (self.path, "w"))


def _object_atom(h5: Path, marker: Path) -> None:
    """pandas' own way to hide a pickle: an object column, stored as a VLArray of ObjectAtom."""
    values = pd.read_hdf(h5)
    values = values.astype(object)
    values.iloc[0, 0] = _Touch(marker)
    with warnings.catch_warnings():  # pandas warns that it pickles the column: that is the attack
        warnings.simplefilter("ignore")
        values.to_hdf(h5, key="data", mode="w")


def _pickled_attribute(h5: Path, marker: Path) -> None:
    """A byte-string attribute ending in '.': PyTables unpickles it when the node is merely opened."""
    with h5py.File(h5, "a") as f:
        f["data"].attrs["note"] = np.bytes_(pickle.dumps(_Touch(marker), 0))


def _pickled_string_attribute(h5: Path, marker: Path) -> None:
    """The same pickle as a variable-length ASCII string: h5py reads it as str, PyTables as bytes (and unpickles)."""
    with h5py.File(h5, "a") as f:
        f["data"].attrs.create("note", data=pickle.dumps(_Touch(marker), 0), dtype=h5py.string_dtype("ascii"))


def _pickled_root_attribute(h5: Path, marker: Path) -> None:
    with h5py.File(h5, "a") as f:
        f.attrs["TITLE"] = np.bytes_(pickle.dumps(_Touch(marker), 0))


def _external_link(h5: Path, marker: Path) -> None:
    """A link to another HDF5 file on the reader's machine (here: one whose root attribute runs code)."""
    other = h5.with_name("elsewhere.h5")
    pd.read_hdf(h5).to_hdf(other, key="data", mode="w")
    _pickled_root_attribute(other, marker)
    with h5py.File(h5, "a") as f:
        f["more"] = h5py.ExternalLink(str(other), "/")


ATTACKS: dict[str, Callable[[Path, Path], None]] = {
    "object atom": _object_atom,
    "pickled attribute": _pickled_attribute,
    "pickled string attribute": _pickled_string_attribute,
    "pickled root attribute": _pickled_root_attribute,
    "external link": _external_link,
}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return data_folder(tmp_path_factory.mktemp("data"))


def _crafted_trace(data: Path, attack: str, marker: Path, node: int = 1):
    trace = build_trace([(), (0,)], [True, True], data)
    ATTACKS[attack](trace.hist[node][0].sub_workspace_list[0].workspace_path / "result.h5", marker)
    return trace


# ---- class 2: one reader of result.h5 bytes, checked before pandas sees them ----------------------------------


@pytest.mark.parametrize("attack", ATTACKS)
def test_the_old_reader_runs_the_attack(tmp_path: Path, data: Path, attack: str) -> None:
    """Control: each crafted file really runs code in pd.read_hdf, so the tests below can fail."""
    trace = _crafted_trace(data, attack, tmp_path / "marker")
    h5 = trace.hist[1][0].sub_workspace_list[0].workspace_path / "result.h5"
    with pd.HDFStore(h5, mode="r") as store:  # opening the file is enough for a pickled root attribute
        for key in store.keys():  # noqa: SIM118 - an HDFStore, not a dict
            try:
                store.select(key)
            except Exception:
                pass
        for node in store._handle.walk_nodes("/"):
            if isinstance(node, tables.link.ExternalLink):  # PyTables follows it when asked for its target
                node()._v_file.close()
    assert (tmp_path / "marker").exists()


@pytest.mark.parametrize("attack", ATTACKS)
def test_read_factor_values_refuses_without_running_it(tmp_path: Path, data: Path, attack: str) -> None:
    trace = _crafted_trace(data, attack, tmp_path / "marker")
    blob = (trace.hist[1][0].sub_workspace_list[0].workspace_path / "result.h5").read_bytes()
    with pytest.raises(UntrustedContentError, match="refused, reading it could run code") as e:
        read_factor_values(blob, "node 1 result.h5")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "marker").exists()


@pytest.mark.parametrize("attack", ["object atom", "pickled attribute", "pickled string attribute"])
def test_a_pickle_the_check_missed_is_still_stopped(
    tmp_path: Path, data: Path, attack: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defence in depth: with the h5py check switched off, the audit hook stops the pickle at its first global."""
    from trace_ckpt.codec import hdf

    monkeypatch.setattr(hdf, "check_factor_file", lambda data, source: None)
    trace = _crafted_trace(data, attack, tmp_path / "marker")
    blob = (trace.hist[1][0].sub_workspace_list[0].workspace_path / "result.h5").read_bytes()
    with pytest.raises(UntrustedContentError, match="through pickle: refused"):
        hdf.read_factor_values(blob, "node 1 result.h5")
    assert not (tmp_path / "marker").exists()
    pickle.loads(pickle.dumps(Path("outside/a/read")))  # outside a read, pickle works as before


def test_rdagents_own_values_pass_unchanged(data: Path) -> None:
    trace = build_trace([()], [True], data)
    h5 = trace.hist[0][0].sub_workspace_list[0].workspace_path / "result.h5"
    values = read_factor_values(h5.read_bytes(), "result.h5")
    pd.testing.assert_frame_equal(values, pd.read_hdf(h5))
    pd.testing.assert_frame_equal(read_factor_values(factor_values_bytes(values), "again"), values)
    # a plain-data pickle (pandas writes None as 'N.') is fine; so is a name that merely ends in '.'
    assert values.index.names == ["datetime", "instrument"]


@pytest.mark.parametrize(
    ("value", "refused"),
    [
        (b"N.", False),  # pandas' None
        (pickle.dumps(("datetime", 1, 2.5, None, True), 0), False),  # plain data
        (b"instrument.", False),  # text that merely ends in '.': the unpickler stops at the first byte
        (b"Price.", False),  # 'P' is PERSID, but its argument never ends: the unpickler stops before it
        (b"]r\xff\xff\xff\x7f.", True),  # a memo index of 2**31: CPython allocates and zeroes 17 GB
        (b"cbuiltins\nprint\n.", True),  # an import, even without a call
    ],
)
def test_attribute_values_pytables_would_unpickle(tmp_path: Path, data: Path, value: bytes, refused: bool) -> None:
    trace = build_trace([()], [True], data)
    h5 = trace.hist[0][0].sub_workspace_list[0].workspace_path / "result.h5"
    with h5py.File(h5, "a") as f:
        f["data"].attrs["extra"] = np.bytes_(value)
    if refused:
        with pytest.raises(UntrustedContentError, match="attribute 'extra'"):
            check_factor_file(h5.read_bytes(), "result.h5")
    else:
        check_factor_file(h5.read_bytes(), "result.h5")


@pytest.mark.parametrize("blob", [b"", b"not an HDF5 file", b"\x89HDF\r\n\x1a\n" + b"\x00" * 64])
def test_damaged_bytes_are_corrupt_not_a_traceback(blob: bytes) -> None:
    with pytest.raises(CorruptCheckpointError):
        read_factor_values(blob, "result.h5")


def test_a_declared_size_far_beyond_the_file_is_refused(tmp_path: Path) -> None:
    h5 = tmp_path / "bomb.h5"
    with h5py.File(h5, "w") as f:  # 8 GB of zeros that are never written: the file stays tiny
        f.create_dataset("data/block0_values", shape=(1 << 30,), dtype="f8", chunks=(1 << 16,), compression="gzip")
    with pytest.raises(CorruptCheckpointError, match="decompression bomb"):
        read_factor_values(h5.read_bytes(), "bomb.h5")


@pytest.mark.parametrize("attack", ATTACKS)
def test_export_factors_refuses_a_crafted_result(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, data: Path, attack: str
) -> None:
    save_trace(_crafted_trace(data, attack, tmp_path / "marker"), tmp_path / "c.tckpt")
    code, _, err = run(capsys, "export-factors", tmp_path / "c.tckpt", tmp_path / "o.parquet")
    assert code == UntrustedContentError.exit_code, err
    assert "result.h5 of node 1" in err and err.count("\n") == 1
    assert not (tmp_path / "marker").exists() and not (tmp_path / "o.parquet").exists()


@pytest.mark.parametrize("attack", ATTACKS)
def test_merge_rename_refuses_a_crafted_result(tmp_path: Path, data: Path, attack: str) -> None:
    a = build_trace([(), (0,)], [True, True], data)
    b = _crafted_trace(data, attack, tmp_path / "marker")
    ws = b.hist[1][0].sub_workspace_list[0]
    ws.inject_files(**{"factor.py": ws.file_dict["factor.py"] + "# other code, same name: merge renames it\n"})
    save_trace(a, tmp_path / "a.tckpt")
    save_trace(b, tmp_path / "b.tckpt")
    with pytest.raises(UntrustedContentError, match="result.h5") as e:
        merge([tmp_path / "a.tckpt", tmp_path / "b.tckpt"], tmp_path / "m.tckpt")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "marker").exists() and not (tmp_path / "m.tckpt").exists()


@pytest.mark.parametrize("attack", ATTACKS)
def test_resume_cache_seeding_refuses_a_crafted_result(tmp_path: Path, data: Path, attack: str) -> None:
    save_trace(_crafted_trace(data, attack, tmp_path / "marker"), tmp_path / "c.tckpt")
    trace = restore_trace(tmp_path / "c.tckpt", workspace_root=tmp_path / "ws")
    with pytest.raises(UntrustedContentError, match="result.h5"):
        seed_execute_cache(trace, tmp_path / "cache")
    assert not (tmp_path / "marker").exists()
    crafted = trace.hist[1][0].sub_workspace_list[0].hash_func("All")
    assert not (tmp_path / "cache" / EXECUTE_CACHE / f"{crafted}.pkl").exists()


def test_resume_cache_seeding_does_not_follow_a_link(tmp_path: Path, data: Path) -> None:
    """A restored result.h5 that is a link (to any HDF5 file of this machine) seeds nothing."""
    trace = build_trace([()], [True], data)
    ws = trace.hist[0][0].sub_workspace_list[0]
    elsewhere = tmp_path / "someone-elses-values.h5"
    (ws.workspace_path / "result.h5").rename(elsewhere)
    (ws.workspace_path / "result.h5").symlink_to(elsewhere)
    assert seed_execute_cache(trace, tmp_path / "cache") == 0
    (ws.workspace_path / "result.h5").unlink()
    elsewhere.rename(ws.workspace_path / "result.h5")
    assert seed_execute_cache(trace, tmp_path / "cache") == 1  # the file itself does


# ---- class 5: resume runs checkpoint content only when trusted ----------------------------------------------


@pytest.fixture(scope="module")
def unsigned(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("unsigned") / "u.tckpt"
    save_trace(build_trace([(), (0,)], [True, True], data), path)
    return path


@pytest.fixture(scope="module")
def signed(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("signed") / "s.tckpt"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRACE_CKPT_SIGNING_KEY", KEY)
        save_trace(build_trace([(), (0,)], [True, True], data), path)
    assert read_manifest(path).signature is not None
    return path


def _bad_features(tmp_path: Path) -> Path:
    """A --base-features folder that resume refuses (exit 11) after the trust check and before RD-Agent runs."""
    (tmp_path / "feats").mkdir(exist_ok=True)
    (tmp_path / "feats" / "base_factors.json").write_text("[1, 2]")
    return tmp_path / "feats"


def _resume(capsys: pytest.CaptureFixture[str], ckpt: Path, tmp_path: Path, *extra: str) -> tuple[int, str]:
    code, _, err = run(
        capsys,
        "resume",
        ckpt,
        "--only",
        "model",
        "--log-dir",
        tmp_path / "log",
        "--workspace-root",
        tmp_path / "ws",
        "--base-features",
        _bad_features(tmp_path),
        *extra,
    )
    return code, err


def test_resume_of_an_unsigned_checkpoint_needs_trust(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, unsigned: Path
) -> None:
    code, err = _resume(capsys, unsigned, tmp_path)
    assert code == UntrustedContentError.exit_code == 6, err
    assert err.count("\n") == 1 and "unsigned" in err and "factor.py" in err and "--trust" in err
    assert not (tmp_path / "ws").exists()  # refused before anything was restored


def test_resume_with_trust_goes_on(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, unsigned: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, err = _resume(capsys, unsigned, tmp_path, "--trust")
    assert code == ResumeError.exit_code and "base_factors.json" in err  # past the trust check
    monkeypatch.setenv("TRACE_CKPT_TRUST_RESUME", "true")
    code, err = _resume(capsys, unsigned, tmp_path)
    assert code == ResumeError.exit_code, err


def test_resume_of_a_checkpoint_signed_with_the_configured_key_needs_no_flag(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, signed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, err = _resume(capsys, signed, tmp_path)  # signed, but no key here to check it: not verified
    assert code == UntrustedContentError.exit_code and "no key configured here checks it" in err
    monkeypatch.setenv("TRACE_CKPT_SIGNING_KEY", KEY)
    code, err = _resume(capsys, signed, tmp_path)
    assert code == ResumeError.exit_code, err
    monkeypatch.setenv("TRACE_CKPT_SIGNING_KEY", KEY[::-1])  # another key: a bad signature, trust or not
    code, err = _resume(capsys, signed, tmp_path, "--trust")
    assert code == UntrustedContentError.exit_code and "signed with another key" in err


def test_resume_of_an_ed25519_signed_checkpoint_needs_its_public_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run(capsys, "keygen", tmp_path / "factor-box", "--comment", "alice@factor-box")
    assert code == 0, err
    with monkeypatch.context() as m:
        m.setenv("TRACE_CKPT_PRIVATE_KEY_FILE", str(tmp_path / "factor-box"))
        save_trace(build_trace([()], [True], data), tmp_path / "e.tckpt")
    code, err = _resume(capsys, tmp_path / "e.tckpt", tmp_path)  # the model box trusts no public key yet
    assert code == UntrustedContentError.exit_code and "TRACE_CKPT_TRUSTED_KEYS" in err, err
    monkeypatch.setenv("TRACE_CKPT_TRUSTED_KEYS", str(tmp_path / "factor-box.pub"))
    code, err = _resume(capsys, tmp_path / "e.tckpt", tmp_path)
    assert code == ResumeError.exit_code, err  # verified: past the trust check with no flag


def test_resume_api_needs_trust_too(tmp_path: Path, unsigned: Path) -> None:
    from trace_ckpt.rdagent.resume import resume

    with pytest.raises(UntrustedContentError, match="trust=True"):
        resume(unsigned, log_dir=tmp_path / "log", workspace_root=tmp_path / "ws")
    with pytest.raises(ResumeError):
        resume(
            unsigned,
            log_dir=tmp_path / "log",
            workspace_root=tmp_path / "ws",
            base_features=_bad_features(tmp_path),
            trust=True,
        )
    with pytest.raises(UntrustedContentError, match="unsigned"):  # a loop of your own: the same rule
        restore_into(object(), unsigned, workspace_root=tmp_path / "ws2")
    assert not (tmp_path / "ws2").exists()


# ---- class 6: the seeded cache belongs to the resumed run --------------------------------------------------


def test_resume_seeds_a_private_cache_never_the_shared_one(factor_ckpt: Path, tmp_path: Path) -> None:
    """A trusted resume's factor values land in a cache folder inside its log folder; RD-Agent's shared cache
    (PICKLE_CACHE_FOLDER_PATH_STR), which any later run of the same factor code reads, gets none of them."""
    from tests.resumerun import resume_in_fresh_folder

    proc, log_dir = resume_in_fresh_folder(tmp_path, factor_ckpt, "--only", "model", "--loop-n", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    shared = tmp_path / "pickle_cache" / EXECUTE_CACHE  # offline_env's PICKLE_CACHE_FOLDER_PATH_STR
    private = list(log_dir.glob(f"pickle_cache-*/{EXECUTE_CACHE}/*.pkl"))
    assert private, "the resumed run seeded no cache"
    assert not shared.exists() or not any(shared.iterdir())  # nothing for a later, unrelated run to read
    assert not (tmp_path / "FACTOR_CODE_RAN").exists()  # the private cache answered the model runner
    assert oct(private[0].parent.parent.stat().st_mode & 0o777) == oct(0o700)


def test_resume_without_trust_seeds_nothing(factor_ckpt: Path, tmp_path: Path) -> None:
    from tests.resumerun import resume_in_fresh_folder

    proc, _ = resume_in_fresh_folder(tmp_path, factor_ckpt, "--only", "model", "--loop-n", "1", trust=False)
    assert proc.returncode == UntrustedContentError.exit_code, proc.stderr[-3000:]
    assert not list(tmp_path.rglob("*.pkl")) and not (tmp_path / "FACTOR_CODE_RAN").exists()


# ---- class 7: every reader honours --require-signature ------------------------------------------------------


def test_export_factors_honours_require_signature(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, unsigned: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run(capsys, "export-factors", unsigned, tmp_path / "o.parquet", "--require-signature")
    assert code == UntrustedContentError.exit_code and "unsigned" in err and err.count("\n") == 1
    assert not (tmp_path / "o.parquet").exists()
    monkeypatch.setenv("TRACE_CKPT_REQUIRE_SIGNATURE", "true")
    code, _, err = run(capsys, "export-factors", unsigned, tmp_path / "o.parquet")
    assert code == UntrustedContentError.exit_code and not (tmp_path / "o.parquet").exists()


def test_diff_honours_require_signature(
    capsys: pytest.CaptureFixture[str], unsigned: Path, signed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run(capsys, "diff", unsigned, unsigned, "--require-signature")
    assert code == UntrustedContentError.exit_code and "unsigned" in err
    monkeypatch.setenv("TRACE_CKPT_SIGNING_KEY", KEY)
    monkeypatch.setenv("TRACE_CKPT_REQUIRE_SIGNATURE", "true")
    code, _, err = run(capsys, "diff", signed, signed)
    assert code == 0, err


@pytest.mark.parametrize("command", ["restore", "export-factors", "prune", "merge", "diff"])
def test_every_reader_refuses_unsigned_when_required(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, unsigned: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    monkeypatch.setenv("TRACE_CKPT_REQUIRE_SIGNATURE", "true")
    if command == "restore":
        with pytest.raises(UntrustedContentError, match="unsigned"):
            restore_trace(unsigned, workspace_root=tmp_path / "ws")
        return
    args = {
        "export-factors": [unsigned, tmp_path / "o.parquet"],
        "prune": [unsigned, tmp_path / "o.tckpt", "--keep", "sota"],
        "merge": [unsigned, unsigned, tmp_path / "o.tckpt"],
        "diff": [unsigned, unsigned],
    }[command]
    code, _, err = run(capsys, command, *args)
    assert code == UntrustedContentError.exit_code and "unsigned" in err and err.count("\n") == 1


def test_an_unsigned_file_read_while_a_key_is_configured_is_a_warning(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, unsigned: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACE_CKPT_SIGNING_KEY", KEY)
    code, _, err = run(capsys, "export-factors", unsigned, tmp_path / "o.parquet")
    assert code == 0 and "warning" in err and "unsigned although a signing key is configured" in err
    monkeypatch.delenv("TRACE_CKPT_SIGNING_KEY")
    code, _, err = run(capsys, "keygen", tmp_path / "k", "--comment", "me")
    monkeypatch.setenv("TRACE_CKPT_TRUSTED_KEYS", str(tmp_path / "k.pub"))  # public keys only
    code, _, err = run(capsys, "export-factors", unsigned, tmp_path / "o.parquet", "--force")
    assert code == 0 and "unsigned although a signing key is configured" in err


def test_environment_is_clean() -> None:
    assert "TRACE_CKPT_TRUST_RESUME" not in os.environ  # no test leaves trust switched on for the others
