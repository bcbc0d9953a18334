"""The command line as a user meets it: output, one-line errors, and the documented exit codes."""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.builders import RunHolder, build_trace, data_folder, result_series, write_session
from tests.clirun import manifest_only_probe, saved_run
from tests.clirun import run_cli as run
from tests.reseal import seal, split
from trace_ckpt.cli import EXIT_CODES
from trace_ckpt.errors import (
    CheckpointNotFoundError,
    CorruptCheckpointError,
    NothingToExportError,
    SaveError,
    UnsupportedVersionError,
    UntrustedContentError,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cli")
    saved_run(d)
    return d


@pytest.fixture(scope="module")
def ckpt(work: Path) -> Path:
    return work / "run.tckpt"


def test_save_reports_what_it_wrote(ckpt: Path) -> None:
    assert ckpt.exists()


def test_inspect_table_marks_sota(capsys: pytest.CaptureFixture[str], ckpt: Path) -> None:
    code, out, err = run(capsys, "inspect", ckpt)
    assert code == 0 and err == ""
    assert "5 (3 accepted, 2 rejected" in out
    sota_line = next(line for line in out.splitlines() if "*SOTA*" in line)
    assert sota_line.split()[0] == "3"  # the last accepted node
    assert "rdagent 1.0.0" in out and "source:" in out and "base features: 1" in out


def test_inspect_json_is_the_manifest(capsys: pytest.CaptureFixture[str], ckpt: Path) -> None:
    code, out, _ = run(capsys, "inspect", ckpt, "--json")
    doc = json.loads(out)
    assert code == 0 and len(doc["nodes"]) == 5 and doc["counts"]["accepted"] == 3
    assert doc["metadata"]["source"]["loop"] == 1 and doc["metadata"]["source"]["step_name"] == "record"
    assert doc["metadata"]["plan"]["features"] == {"RESI5": "Resi($close, 5)/$close"}


def test_inspect_never_imports_rdagent_or_unpickles(ckpt: Path) -> None:
    probe = manifest_only_probe(
        ["inspect", str(ckpt)], checks='assert not {"dill", "pandas", "pyarrow"} & set(sys.modules), sys.modules.keys()'
    )
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().endswith("clean"), r.stderr[-2000:]


def test_inspect_loads_no_settings_when_none_is_set(ckpt: Path) -> None:
    """pydantic (and pydantic-settings) cost more than the rest of `inspect` (issue 16): with no TRACE_CKPT_*
    variable set, or only ones it does not read, the command imports neither (the manifest is plain records; typer is
    below 0.29, which validates options with pydantic); with one it reads set, the CLI reads it."""
    probe = manifest_only_probe(
        ["inspect", str(ckpt)], checks='print("pydantic_settings" in sys.modules, "pydantic" in sys.modules)'
    )
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("TRACE_CKPT_")}
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120, env=env)
    assert r.returncode == 0 and r.stdout.split()[-3:] == ["False", "False", "clean"], (
        r.stdout[-500:] + r.stderr[-2000:]
    )
    env["TRACE_CKPT_ALLOW_MODULES"] = '["tests"]'  # a setting inspect does not read
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120, env=env)
    assert r.returncode == 0 and r.stdout.split()[-3:] == ["False", "False", "clean"], (
        r.stdout[-500:] + r.stderr[-2000:]
    )
    env["trace_ckpt_use_rdagent_key"] = "0"  # any case, as pydantic-settings reads it
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120, env=env)
    assert r.returncode == 0 and r.stdout.split()[-3:] == ["True", "True", "clean"], r.stdout[-500:] + r.stderr[-2000:]


def test_verify_ok_and_damaged(capsys: pytest.CaptureFixture[str], ckpt: Path, tmp_path: Path) -> None:
    code, out, _ = run(capsys, "verify", ckpt)
    assert code == 0 and out.startswith("ok:")
    data = bytearray(ckpt.read_bytes())
    data[40] ^= 0xFF
    bad = tmp_path / "bad.tckpt"
    bad.write_bytes(bytes(data))
    code, out, err = run(capsys, "verify", bad)
    assert code == CorruptCheckpointError.exit_code and "fail their checksum" in err and err.count("\n") == 1


def test_export_factors(capsys: pytest.CaptureFixture[str], ckpt: Path, tmp_path: Path) -> None:
    out_file = tmp_path / "sota.parquet"
    code, _out, _ = run(capsys, "export-factors", ckpt, out_file)
    assert code == 0
    values = pd.read_parquet(out_file)
    assert list(values.columns) == ["factor_0", "factor_2", "factor_3"]
    assert values.index.names == ["datetime", "instrument"]
    assert values.notna().sum().min() > 0


def test_export_factors_with_no_sota(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    trace = build_trace([()], [False], data_folder(tmp_path / "data"))
    write_session(tmp_path / "run", trace, loops=1)
    run(capsys, "save", tmp_path / "run", tmp_path / "c.tckpt")
    code, _, err = run(capsys, "export-factors", tmp_path / "c.tckpt", tmp_path / "o.parquet")
    assert code == NothingToExportError.exit_code and "no accepted factor experiment" in err
    assert not (tmp_path / "o.parquet").exists()


UNCOMBINABLE = {
    # a repeated (datetime, instrument) row: pd.concat cannot line it up with the other factors
    "duplicate rows": (
        lambda v: pd.concat([v, v.iloc[:3]]),
        "result.h5 of node 1 (factor_1) has 3 duplicate index rows",
    ),
    # a foreign result.h5 indexed by instrument only: its rows cannot be sorted among (datetime, instrument)
    "plain index": (
        lambda v: v.reset_index(drop=True).set_axis([f"i{k}" for k in range(len(v))]),
        "the SOTA factor values cannot be combined into one table",
    ),
}


@pytest.mark.parametrize("damage", UNCOMBINABLE, ids=list(UNCOMBINABLE))
def test_export_factors_that_cannot_be_combined(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, damage: str
) -> None:
    """Factor values that cannot be lined up with the others are a one-line error (exit 10), not a pandas
    InvalidIndexError or TypeError."""
    change, message = UNCOMBINABLE[damage]
    trace = build_trace([(), (0,)], [True, True], data_folder(tmp_path / "data"))
    h5 = trace.hist[1][0].sub_workspace_list[0].workspace_path / "result.h5"
    change(pd.read_hdf(h5)).to_hdf(h5, key="data")
    write_session(tmp_path / "run", trace, loops=2)
    run(capsys, "save", tmp_path / "run", tmp_path / "c.tckpt")
    code, _, err = run(capsys, "export-factors", tmp_path / "c.tckpt", tmp_path / "o.parquet")
    assert code == NothingToExportError.exit_code, err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "o.parquet").exists()


def test_save_takes_the_end_of_a_chosen_loop(capsys: pytest.CaptureFixture[str], work: Path, tmp_path: Path) -> None:
    code, out, _ = run(capsys, "save", work / "run", tmp_path / "l0.tckpt", "--loop", "0")
    assert code == 0 and "from loop 0 step record" in out
    code, _, err = run(capsys, "save", work / "run", tmp_path / "l9.tckpt", "--loop", "9")
    assert code == CheckpointNotFoundError.exit_code and "loop 9" in err


# ---- bad input, as a new user would try it -------------------------------------------------------


def test_folder_without_session(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "save", tmp_path, tmp_path / "x.tckpt")
    assert code == CheckpointNotFoundError.exit_code and "no __session__" in err and err.count("\n") == 1


def test_empty_session_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "__session__").mkdir()
    code, _, err = run(capsys, "save", tmp_path, tmp_path / "x.tckpt")
    assert code == CheckpointNotFoundError.exit_code and "empty __session__" in err


def test_truncated_last_dump_falls_back_with_a_warning(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    trace = build_trace([(), (0,)], [True, True], data_folder(tmp_path / "data"), write_outputs=False)
    run_dir = write_session(tmp_path / "run", trace, loops=2)
    last = run_dir / "__session__" / "1" / "4_record"
    last.write_bytes(last.read_bytes()[: len(last.read_bytes()) // 2])  # crash mid-write
    code, out, err = run(capsys, "save", run_dir, tmp_path / "x.tckpt")
    assert code == 0 and "warning: skipped" in err and "3_feedback" in err and "step feedback" in out


def test_truncated_single_session_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    trace = build_trace([()], [True], data_folder(tmp_path / "data"), write_outputs=False)
    run_dir = write_session(tmp_path / "run", trace, loops=1)
    f = run_dir / "__session__" / "0" / "4_record"
    f.write_bytes(f.read_bytes()[:200])
    code, _, err = run(capsys, "save", f, tmp_path / "x.tckpt")
    assert code == UntrustedContentError.exit_code and "signature check failed" in err and err.count("\n") == 1


def test_unsigned_legacy_dump_needs_trust_legacy(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    trace = build_trace([()], [True], data_folder(tmp_path / "data"), write_outputs=False)
    f = tmp_path / "run" / "__session__" / "0" / "4_record"
    f.parent.mkdir(parents=True)
    f.write_bytes(pickle.dumps(RunHolder(trace)))
    code, _, err = run(capsys, "save", tmp_path / "run", tmp_path / "x.tckpt")
    assert code == UntrustedContentError.exit_code and "--trust-legacy" in err
    code, _, _ = run(capsys, "save", tmp_path / "run", tmp_path / "x.tckpt", "--trust-legacy")
    assert code == 0


def test_out_folder_missing(capsys: pytest.CaptureFixture[str], work: Path, tmp_path: Path) -> None:
    code, _, err = run(capsys, "save", work / "run", tmp_path / "nope" / "x.tckpt")
    assert code == SaveError.exit_code and "does not exist" in err and err.count("\n") == 1


@pytest.mark.parametrize("command", ["inspect", "verify"])
def test_checkpoint_commands_on_bad_files(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, ckpt: Path, command: str
) -> None:
    code, _, err = run(capsys, command, tmp_path / "missing.tckpt")
    assert code == CheckpointNotFoundError.exit_code and err.count("\n") == 1
    junk = tmp_path / "junk"
    junk.write_bytes(b"PK\x03\x04 not a checkpoint")
    code, _, err = run(capsys, command, junk)
    assert code == CorruptCheckpointError.exit_code and "not a trace-ckpt checkpoint" in err
    future = tmp_path / "future.tckpt"
    data = bytearray(ckpt.read_bytes())
    data[8] = 99
    future.write_bytes(bytes(data))
    code, _, err = run(capsys, command, future)
    assert code == UnsupportedVersionError.exit_code and "v99" in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["frobnicate"], ["inspect"], ["save", "a", "b", "--level", "99"]):
        code, _, err = run(capsys, *args)
        assert code == 2 and err.startswith("trace-ckpt: usage error:") and err.count("\n") == 1, args


def test_console_script_is_installed_and_exits_with_codes(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "trace-ckpt"
    r = subprocess.run([str(exe), "verify", str(tmp_path / "none.tckpt")], capture_output=True, text=True, timeout=120)
    assert r.returncode == CheckpointNotFoundError.exit_code and "Traceback" not in r.stderr


def test_exit_code_table_is_complete() -> None:
    """Every error class's exit code has a row, and no two kinds of error share a code by accident."""
    import trace_ckpt.errors as errors

    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.CheckpointError)]
    codes = {c.exit_code for c in classes}
    assert codes <= set(EXIT_CODES) and {0, 2, 130} <= set(EXIT_CODES)

    # a kind of error has a code of its own; a refinement (OutputExistsError of SaveError) keeps its base's code
    def refines(c: type) -> bool:
        return any(b in classes and b.exit_code == c.exit_code for b in c.__mro__[1:])

    kinds = [c for c in classes if c.exit_code not in (1, 4) and not refines(c)]
    assert len({c.exit_code for c in kinds}) == len(kinds)  # 4: not a checkpoint / corrupt, on purpose


# ---- what inspect and ls show (issue 14) ----------------------------------------------------------


def _cells(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def test_inspect_shows_the_quant_metrics_factor_names_sota_and_best(
    capsys: pytest.CaptureFixture[str], ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rank IC, ICIR, information ratio and max drawdown are columns; factor names are in the rows; RD-Agent's SOTA,
    the SOTA of each sub-trace, the best accepted node and the SOTA factor set are said apart."""
    monkeypatch.setenv("COLUMNS", "220")
    code, out, _ = run(capsys, "inspect", ckpt)
    assert code == 0
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("#"))
    assert {"IC", "Rank IC", "ICIR", "Rank ICIR", "ann. return", "IR", "max DD"} <= set(_cells(header))
    rows = lines[lines.index(header) + 1 :]
    assert "factor_2: Momentum of 3 days" in rows[2]
    best = max((0, 2, 3), key=lambda i: result_series(i)["IC"])
    assert "SOTA (RD-Agent's: the last accepted): node 3 (loop 3)" in out
    assert "SOTA of each sub-trace: root 0: node 2 (loop 2); root 3: node 3 (loop 3)" in out
    assert f"best accepted by IC: node {best} (loop {best})" in out
    assert "SOTA factors (what a model phase trains on): 3: factor_0, factor_2, factor_3" in out
    assert "*SOTA" in rows[3] and "best*" in rows[best]


def test_inspect_table_fits_a_narrow_terminal(
    capsys: pytest.CaptureFixture[str], ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run(capsys, "inspect", ckpt)
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("#"))
    table = [line for line in lines[start:] if not line.startswith("(")]
    assert code == 0 and len(table) == 6 and all(len(line) <= 80 for line in table), table
    assert "IC" in _cells(table[0]) and "left out for the terminal width" in lines[-1]


def test_inspect_json_fills_action_keeps_models_apart_and_one_timestamp_form(
    capsys: pytest.CaptureFixture[str], ckpt: Path, tmp_path: Path
) -> None:
    """A model node's names are under ``models``, not ``factors``; every node has its phase as ``action``."""
    body, doc = split(ckpt.read_bytes())
    doc["nodes"][4].update(kind="model", factors=["LGBModel"], action=None)
    doc["counts"]["model_experiments"], doc["counts"]["factor_experiments"] = 1, 4
    forged = tmp_path / "model.tckpt"
    forged.write_bytes(seal(body, doc))
    code, out, _ = run(capsys, "inspect", forged, "--json")
    nodes = json.loads(out)["nodes"]
    assert code == 0 and [n["action"] for n in nodes] == ["factor"] * 4 + ["model"]
    assert nodes[4]["models"] == ["LGBModel"] and nodes[4]["factors"] == [] and nodes[0]["models"] == []
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", json.loads(out)["created_at"])
    summary = json.loads(out)["summary"]
    assert summary["sota_by_subtrace"] == {"0": 2, "3": 3} and summary["file_size"] == forged.stat().st_size


def test_ls_says_sota_best_and_the_factor_set(capsys: pytest.CaptureFixture[str], ckpt: Path) -> None:
    code, out, _ = run(capsys, "ls", ckpt.parent)
    assert code == 0 and {"SOTA IC", "best IC", "SOTA factors"} <= set(_cells(out.splitlines()[0]))
    code, out, _ = run(capsys, "ls", ckpt.parent, "--json")
    row = json.loads(out.splitlines()[0])
    assert row["sota_index"] == 3 and row["sota_by_subtrace"] == {"0": 2, "3": 3}
    assert row["best_index"] == max((0, 2, 3), key=lambda i: result_series(i)["IC"])
    assert row["sota_factors"] == ["factor_0", "factor_2", "factor_3"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row["created_at"])


def test_save_and_inspect_say_the_same_size(capsys: pytest.CaptureFixture[str], work: Path, tmp_path: Path) -> None:
    _, out, _ = run(capsys, "save", work / "run", tmp_path / "s.tckpt")
    saved = re.search(r"\(([\d.]+ [KMG]?B) file;", out)
    _, out, _ = run(capsys, "inspect", tmp_path / "s.tckpt")
    shown = re.search(r"size: ([\d.]+ [KMG]?B) file", out)
    assert saved and shown and saved.group(1) == shown.group(1), out
