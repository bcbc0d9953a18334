"""The RD-Agent integration: the only package of trace-ckpt that imports rdagent."""

import os

# rdagent imports litellm, which otherwise tries to download its price map at import time;
# trace-ckpt never needs it. An explicit user setting wins.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from trace_ckpt.rdagent import keys  # noqa: F401  (hands RD-Agent's artifact key to trace_ckpt.signing)
from trace_ckpt.rdagent.checkpoint import restore_trace, save_trace

__all__ = ["restore_trace", "save_trace"]
