"""The Qlib environment RD-Agent runs ``qrun`` and its feature check in, and the check of ``--base-features``.

RD-Agent reaches Qlib outside Docker through conda (``MODEL_COSTEER_ENV_TYPE=conda``): it asks
``conda env list`` for ``rdagent4qlib`` and runs its commands with that environment's ``PATH``. Its
``validate_qlib_features`` computes the expressions there for ``SH600000`` (``python test_fea.py``);
this module runs that check before a resumed loop starts and names the expression that fails.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Callable

from trace_ckpt.errors import ResumeError

log = logging.getLogger("trace_ckpt")
PROBE = "$close"  # a field every Qlib market has: when it fails too, the environment (or its data) is at fault


def qlib_env_name() -> str:
    """The conda environment RD-Agent runs Qlib in (``QlibCondaConf.conda_env_name``)."""
    from rdagent.utils.env import QlibCondaConf

    return str(QlibCondaConf.model_fields["conda_env_name"].default)


def qlib_env_available() -> bool:
    """True when ``conda`` is on PATH and lists RD-Agent's Qlib environment (the only way RD-Agent checks)."""
    conda = shutil.which("conda")
    if conda is None:
        return False
    try:
        envs = subprocess.run([conda, "env", "list"], check=False, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return False
    name = qlib_env_name()
    return envs.returncode == 0 and any(line.split()[:1] == [name] for line in envs.stdout.splitlines())


def _failing(names: list[str], ok: Callable[[list[str]], bool]) -> list[str]:
    """The names whose expressions fail, found by halving (``names`` as a whole failed)."""
    if len(names) == 1:
        return names
    half = len(names) // 2
    out = []
    for part in (names[:half], names[half:]):
        if not ok(part):
            out += _failing(part, ok)
    return out


def check_base_features(features: dict[str, str], source: object) -> bool | None:
    """Validate ``features`` with RD-Agent's ``validate_qlib_features``: True when Qlib computes them all,
    None when there is no Qlib environment to ask; a failing expression is a ResumeError naming it."""
    if not features or not qlib_env_available():
        return None
    from rdagent.utils.qlib import validate_qlib_features

    def ok(names: list[str]) -> bool:
        return bool(validate_qlib_features([features[n] for n in names]))

    names = list(features)
    if ok(names):
        return True
    if not validate_qlib_features([PROBE]):
        raise ResumeError(
            f"RD-Agent's Qlib environment {qlib_env_name()!r} cannot compute even {PROBE} for SH600000: "
            "is there market data under ~/.qlib/qlib_data/cn_data of this $HOME? (docs/guide.md, "
            '"Model phase on a machine without Docker")'
        )
    bad = _failing(names, ok) or names  # none fails alone: the set fails as a whole
    shown = "; ".join(f"{n} = {features[n]}" for n in bad)
    raise ResumeError(f"--base-features {source}: Qlib cannot compute {shown}; fix or remove it")
