"""The RD-Agent integration: the only package of trace-ckpt that imports rdagent."""

from trace_ckpt.rdagent.checkpoint import restore_trace, save_trace

__all__ = ["restore_trace", "save_trace"]
