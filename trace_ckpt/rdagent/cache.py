"""The resumed run's own factor execute cache, seeded from the checkpoint's captured factor values.

RD-Agent's model runner re-executes every SOTA factor on the full data; with the cache seeded it runs no
factor code and needs no factor data folder.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from trace_ckpt.codec.hdf import read_factor_values
from trace_ckpt.errors import CorruptCheckpointError
from trace_ckpt.quant import RESULT_FILE
from trace_ckpt.rdagent.trace import experiment_kind, iter_experiments

log = logging.getLogger("trace_ckpt")
EXECUTE_CACHE = "rdagent.components.coder.factor_coder.factor.execute"  # cache_with_pickle's folder name


def seed_execute_cache(trace: Any, cache_dir: str | Path) -> int:
    """Seed the factor execute cache in ``cache_dir`` from the captured result files of the SOTA factors.

    RD-Agent's model runner re-executes every SOTA factor on the full data; with the cache seeded
    (signed with the local rdagent key) it runs no factor code and needs no factor data folder. The cache
    is keyed on the factor code alone, so ``cache_dir`` must be read by the resumed run only (``resume``
    makes one in the run's log folder): a shared cache would hand these values to any later run of that code.
    """
    from rdagent.components.coder.factor_coder.factor import FactorFBWorkspace
    from rdagent.core.serialization import dumps

    folder = Path(cache_dir) / EXECUTE_CACHE
    seeded = 0
    for exp in iter_experiments(trace):
        if experiment_kind(exp) != "factor":
            continue
        for ws in getattr(exp, "sub_workspace_list", None) or []:
            if not isinstance(ws, FactorFBWorkspace):
                continue
            key = ws.hash_func("All")
            result = Path(ws.workspace_path) / RESULT_FILE
            if key is None or result.is_symlink() or not result.is_file():  # a link may name any file here
                continue
            target = folder / f"{key}.pkl"
            if target.exists():
                continue
            try:  # values that could run code when read are refused (UntrustedContentError) and end the resume
                values = read_factor_values(result.read_bytes(), str(result))
            except CorruptCheckpointError as e:  # a damaged artifact only costs a re-execution
                log.warning("cannot seed the factor cache from %s: %s", result, e)
                continue
            folder.mkdir(parents=True, exist_ok=True)
            message = FactorFBWorkspace.FB_EXECUTION_SUCCEEDED + FactorFBWorkspace.FB_OUTPUT_FILE_FOUND
            target.write_bytes(dumps((message, values)))
            seeded += 1
    return seeded
