"""Set up a benchmark process before it imports rdagent: the repo on sys.path, and RD-Agent's folders
(workspaces, caches, logs) in a temp folder of this process (the script removes it at the end)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def isolated(prefix: str) -> Path:
    """Point RD-Agent's settings into a new temp folder (read by rdagent at import time) and return it."""
    sys.path.insert(0, str(ROOT))
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ["WORKSPACE_PATH"] = str(tmp / "RD-Agent_workspace")
    os.environ["PICKLE_CACHE_FOLDER_PATH_STR"] = str(tmp / "pickle_cache")
    os.environ["LOG_TRACE_PATH"] = str(tmp / "log")
    os.environ["TRACE_CKPT_ALLOW_MODULES"] = '["tests"]'  # the stand-in scenario of tests/builders.py
    return tmp
