"""What a resumed phase needs on this machine, checked before RD-Agent starts (nothing is written).

RD-Agent finds out late and far from the cause: the loop's constructor probes the runtime (its
``get_runtime_environment`` runs ``python runtime_info.py`` in the factor env, an active conda env, and
in the model env, Docker or the ``rdagent4qlib`` conda env per ``MODEL_CoSTEER_ENV_TYPE``; an empty
answer ends in ``AttributeError: 'NoneType' object has no attribute 'group'``), the factor and quant
scenarios read the factor data folder (missing, RD-Agent builds it in Docker: ``DockerException``), the
runner runs ``qrun`` in the model env, and every step asks the LLM. :func:`check_ready` asks the same
questions cheaply and names what to do.

A setting that replaces a part skips its check: a scenario class whose ``get_runtime_environment`` is
not RD-Agent's (no probe), a setup hook (``TRACE_CKPT_RESUME_SETUP``, which may install another Qlib
environment: no runner check), an LLM backend other than RD-Agent's LiteLLM one (no key check).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trace_ckpt.errors import NotReadyError
from trace_ckpt.rdagent.logs import rdagent_logs_off
from trace_ckpt.rdagent.qlib_env import qlib_env_available, qlib_env_name

GUIDE = "docs/guide.md section 11"  # "Model phase on a machine without Docker"
_PHASE_SETTING = {"model": "MODEL_PROP_SETTING", "factor": "FACTOR_PROP_SETTING", None: "QUANT_PROP_SETTING"}
_SCEN_ENV = {"model": "QLIB_MODEL_SCEN", "factor": "QLIB_FACTOR_SCEN", None: "QLIB_QUANT_SCEN"}


def docker_problem() -> str | None:
    """Why RD-Agent could not reach Docker here (None when it can)."""
    import docker
    import requests

    try:
        docker.from_env(timeout=10).ping()
    except (docker.errors.DockerException, requests.RequestException, OSError) as e:
        return f"{type(e).__name__}: {e}"[:160]
    return None


def _own(cls: type, method: str) -> bool:
    """True when ``cls.method`` is RD-Agent's own code (not replaced by a subclass of yours)."""
    return str(getattr(getattr(cls, method, None), "__module__", "")).startswith("rdagent.")


def _qlib_runtime(found: list[str]) -> str | None:
    """The model env RD-Agent's ``get_model_env`` and ``QlibFBWorkspace.execute`` use."""
    from rdagent.components.coder.model_coder.conf import ModelCoSTEERSettings

    env_type = ModelCoSTEERSettings().env_type
    if env_type == "docker":
        why = docker_problem()
        if why:
            return (
                f"no Docker for Qlib (MODEL_CoSTEER_ENV_TYPE=docker; {why}): start it, or use conda "
                f"(MODEL_CoSTEER_ENV_TYPE=conda, {GUIDE})"
            )
        found.append("Qlib runtime: Docker")
    elif env_type == "conda":
        if not qlib_env_available():
            where = "conda not on PATH" if shutil.which("conda") is None else "conda does not list it"
            return (
                f"no conda env {qlib_env_name()} for Qlib (MODEL_CoSTEER_ENV_TYPE=conda, {where}): create it "
                f"({GUIDE}) or use docker"
            )
        found.append(f"Qlib runtime: conda env {qlib_env_name()}")
    else:
        return f"MODEL_CoSTEER_ENV_TYPE={env_type!r} is neither docker nor conda"
    return None


def _factor_probe(found: list[str]) -> str | None:
    """RD-Agent's factor runtime probe runs in the active conda env (``CONDA_DEFAULT_ENV``)."""
    name = os.environ.get("CONDA_DEFAULT_ENV")
    if not name or shutil.which("conda") is None:
        why = "CONDA_DEFAULT_ENV unset" if not name else "conda not on PATH"
        return f"no active conda env for RD-Agent's factor probe ({why}): conda activate one"
    found.append(f"factor runtime: conda env {name}")
    return None


def _data_folder(found: list[str]) -> str | None:
    from rdagent.components.coder.factor_coder.config import FactorCoSTEERSettings

    conf = FactorCoSTEERSettings()
    missing = [f for f in (conf.data_folder, conf.data_folder_debug) if not (Path(f) / "daily_pv.h5").is_file()]
    if not missing:
        found.append(f"factor data folder: {Path(conf.data_folder).absolute()}")
        return None
    if any(not Path(f).exists() for f in missing) and docker_problem() is None:
        found.append("factor data folder: missing, RD-Agent will build it in Docker")
        return None
    return (
        f"no daily_pv.h5 in FACTOR_CoSTEER_DATA_FOLDER{'' if missing[0] == conf.data_folder else '_DEBUG'} "
        f"{Path(missing[0]).absolute()}, no Docker to build it: copy RD-Agent's factor data there"
    )


def _llm(found: list[str]) -> str | None:
    from rdagent.oai.llm_conf import LLM_SETTINGS, LLMSettings

    if LLM_SETTINGS.backend != LLMSettings.model_fields["backend"].default:
        found.append(f"LLM: backend {LLM_SETTINGS.backend} (not checked)")
        return None
    import litellm
    from rdagent.oai.backend.litellm import LITELLM_SETTINGS

    model = LITELLM_SETTINGS.chat_model
    try:
        missing = litellm.validate_environment(model=model).get("missing_keys") or []
    except Exception as e:  # noqa: BLE001 — an unknown provider: litellm cannot say, RD-Agent will
        found.append(f"LLM: {model} (litellm cannot check it: {type(e).__name__})")
        return None
    keys = [k for k in missing if "KEY" in k or "TOKEN" in k]  # an API base often has a default
    if keys:
        return f"LLM {model} needs {', '.join(keys)}: export it (trace-ckpt does not read .env)"
    found.append(f"LLM: {model}")
    return None


def check_ready(only: str | None, *, setup: str | None = None) -> list[str]:
    """Check what resuming phase ``only`` (model, factor, None: quant) needs here; return what was found.

    All problems are one NotReadyError (exit 15). Nothing is written: RD-Agent's logger is off meanwhile.
    """
    with rdagent_logs_off():
        from rdagent.app.qlib_rd_loop import conf
        from rdagent.core.utils import import_class

        setting: Any = getattr(conf, _PHASE_SETTING[only])
        found: list[str] = []
        checks: list[Callable[[list[str]], str | None]] = []
        try:
            scen = import_class(setting.scen)
        except (ImportError, AttributeError, ValueError) as e:
            raise NotReadyError(
                f"cannot import the scenario class {setting.scen} ({_SCEN_ENV[only]}): {e}; "
                "install its package or put it on PYTHONPATH"
            ) from None
        probes = _own(scen, "get_runtime_environment")
        if probes and only in ("factor", None):
            checks.append(_factor_probe)
        if (probes and only in ("model", None)) or not setup:
            checks.append(_qlib_runtime)
        else:
            found.append(f"Qlib runtime: not checked (the setup hook {setup} may install one)")
        if only in ("factor", None):
            checks.append(_data_folder)
        checks.append(_llm)
        problems = [p for p in (check(found) for check in checks) if p]
    if problems:
        phase = f"resume --only {only}" if only else "resume (quant loop)"
        numbered = "; ".join(f"({i}) {p}" for i, p in enumerate(problems, 1)) if len(problems) > 1 else problems[0]
        raise NotReadyError(f"{phase} cannot run here: {numbered}")
    return found
