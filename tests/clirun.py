"""Running the CLI inside a test: the exit code and what it printed, and a probe for commands that must
read nothing but the manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from trace_ckpt.cli import main


def run_cli(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str, str]:
    """``trace-ckpt ARGS`` in this process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    cap = capsys.readouterr()
    return e.value.code, cap.out, cap.err


def saved_run(root: Path, name: str = "run") -> Path:
    """``trace-ckpt save`` of a 5-node trace with two roots (nodes 0-2 and 3-4; accepted 0, 2, 3; every node has
    every Qlib metric) into ``root/<name>.tckpt``; the session folder is ``root/<name>``."""
    from tests.builders import build_trace, data_folder, write_session

    trace = build_trace(
        [(), (0,), (1,), (), (3,)],
        [True, False, True, True, False],
        data_folder(root / "data"),
        loop_ids=[0, 1, 2, 3, 4],
    )
    write_session(root / name, trace)
    path = root / f"{name}.tckpt"
    with pytest.raises(SystemExit) as e:
        main(["save", str(root / name), str(path)])
    assert e.value.code == 0
    return path


# the commands that write an output OUT, each on the run saved_run made (its folder beside CKPT) or CKPT itself
WRITING_COMMANDS = ("save", "prune", "merge", "export-factors")


def writing_command(command: str, ckpt: Path, out: Path) -> list[object]:
    """The argv of one writing command (issue 14's output rules: --force, checked first) on ``ckpt``, to ``out``."""
    return {
        "save": ["save", ckpt.parent / "run", out],
        "prune": ["prune", ckpt, out, "--keep", "sota"],
        "merge": ["merge", ckpt, ckpt, out],
        "export-factors": ["export-factors", ckpt, out],
    }[command]


def manifest_only_probe(argv: list[str], checks: str = "") -> str:
    """A Python script that runs ``trace-ckpt ARGV`` with pickle and section reads booby-trapped, then
    asserts that rdagent was never imported (plus ``checks``), and prints ``clean``."""
    return f"""
import pickle, sys
def refuse(*a, **k):
    raise SystemExit("pickle or a section read was called")
def audit(event, args):
    if event == "pickle.find_class":
        refuse()
sys.addaudithook(audit)
pickle.loads = pickle.load = refuse
from trace_ckpt.format.reader import ContainerReader
ContainerReader.read_section = ContainerReader.stream_section = refuse  # only the manifest may be read
from trace_ckpt.cli import main
try:
    main({argv!r})
except SystemExit as e:
    assert e.code == 0, e.code
bad = sorted(m for m in sys.modules if m == "rdagent" or m.startswith("rdagent."))
assert not bad, bad
{checks}
print("clean")
"""
