"""Test session setup: RD-Agent reads several settings from the environment at import time, so
they are pointed into a temporary folder here, before any test imports rdagent.

What is real in these tests: RD-Agent (its loops, proposals, runners, feedback, session dumps), trace-ckpt,
and in tests/test_qlib_real.py Qlib too (real `qrun` in the Qlib venv of `make qlib-env`: dataset, PyTorch
training, backtest). What stands in: the LLM and the code it writes (examples/offline/), the market data
(synthetic), conda (examples/qlib_env/bin/conda) and, everywhere but tests/test_qlib_real.py, the Qlib
backtest (examples/offline/backtest.py)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="trace-ckpt-tests-"))
atexit.register(shutil.rmtree, _SESSION_DIR, ignore_errors=True)
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ["WORKSPACE_PATH"] = str(_SESSION_DIR / "RD-Agent_workspace")
os.environ["PICKLE_CACHE_FOLDER_PATH_STR"] = str(_SESSION_DIR / "pickle_cache")
os.environ["LOG_TRACE_PATH"] = str(_SESSION_DIR / "log")
# The stand-in scenario of tests/builders.py is test code: trusted here the way a user trusts their own
# scenario package. Tests of the allowlist itself remove this variable.
os.environ["TRACE_CKPT_ALLOW_MODULES"] = '["tests"]'
# RD-Agent signs session dumps with this key; without it RD-Agent creates ~/.rdagent/artifact_signing.key
os.environ.setdefault("ARTIFACT_SIGNING_KEY", "trace-ckpt-tests-artifact-signing-key-0123456789")


import pytest  # noqa: E402

# A test that needs one of these fixtures is slow (minutes on a shared 2-core machine): `make test-fast`
# leaves it out (-m "not slow"), `make test` runs it. Tests slow for another reason carry @pytest.mark.slow.
SLOW_FIXTURES = {
    "factor_run": "a real 4-loop RD-Agent factor run",
    "qlib_venv": "real Qlib in the venv of make qlib-env",
    "five_loops": "trace-ckpt run: five RD-Agent loops with autosave (tests/test_autosave.py)",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark slow every test that uses a fixture of SLOW_FIXTURES, directly or through another fixture."""
    for item in items:
        if SLOW_FIXTURES.keys() & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def factor_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 4-loop RD-Agent factor run (offline stand-ins only for LLM, coder, Qlib backtest and
    runtime probe), done once per test session: returns the run's log folder (holding __session__)."""
    from examples.offline.run import run_factor_loop

    return run_factor_loop(tmp_path_factory.mktemp("offline"), 4)


@pytest.fixture(scope="session")
def factor_ckpt(factor_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`trace-ckpt save` of the factor_run fixture, done once per test session (read it, do not change it)."""
    from trace_ckpt.cli import main

    out = tmp_path_factory.mktemp("factor-ckpt") / "run1.tckpt"
    with pytest.raises(SystemExit) as e:
        main(["save", str(factor_run), str(out), "--allow-module", "examples"])
    assert e.value.code == 0
    return out
