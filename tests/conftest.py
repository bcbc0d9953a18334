"""Test session setup: RD-Agent reads several settings from the environment at import time, so
they are pointed into a temporary folder here, before any test imports rdagent."""

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
