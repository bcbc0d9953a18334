"""Resume: rebuild a saved Trace inside a new RD-Agent loop before its first step, then run it.

    trace-ckpt resume run1.tckpt --only model --loop-n 10 --trust   # model evolution on run 1's SOTA factors

From Python, with a loop you built yourself::

    from trace_ckpt.rdagent.resume import restore_into
    loop = ModelRDLoop(MODEL_PROP_SETTING)
    restore_into(loop, "run1.tckpt", trust=True)   # or a checkpoint signed with a configured key
    asyncio.run(loop.run(loop_n=loop.resume_offset + 10))

Everything RD-Agent needs follows from ``loop.trace.hist``: the model proposal takes every accepted
experiment as ``based_experiments`` (``ModelExperiment`` is an alias of ``Experiment``).

Resume runs what the checkpoint holds (factor code on a cache miss, the plan's feature code and
expressions, workspace files), so :func:`resume` needs a checkpoint signed with a configured key or an
explicit ``trust=True`` (``--trust``, ``TRACE_CKPT_TRUST_RESUME``). Its factor values are seeded into a
cache folder of the resumed run only, never into RD-Agent's shared pickle cache.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from trace_ckpt.ckpt import Checkpoint, PathLike
from trace_ckpt.errors import NotReadyError, ResumeError, UntrustedContentError
from trace_ckpt.format.manifest import Manifest
from trace_ckpt.rdagent.cache import EXECUTE_CACHE, seed_execute_cache  # noqa: F401 (EXECUTE_CACHE: its old home)
from trace_ckpt.rdagent.checkpoint import restore_checkpoint, restore_trace
from trace_ckpt.rdagent.logs import without_rdagent_logs
from trace_ckpt.rdagent.preflight import check_ready
from trace_ckpt.rdagent.qlib_env import check_base_features, qlib_env_name
from trace_ckpt.rdagent.resume_plan import (
    UNBOUNDED,
    ResumePlan,
    check_writable,
    checkpoint_plan,
    load_base_features,
    make_plan,
    resolve_checkpoint,
)
from trace_ckpt.rdagent.trace import experiment_kind, sota_factor_experiments
from trace_ckpt.settings import Options, get_settings
from trace_ckpt.storage import is_remote

log = logging.getLogger("trace_ckpt")
Phase = Literal["model", "factor"]


@dataclass
class ResumeReport:
    """What the resume did, for the caller to print."""

    log_dir: Path
    restored_nodes: int
    first_loop_id: int
    sota_factor_experiments: int
    base_features: dict[str, str] = field(default_factory=dict)
    features_validated: bool | None = None
    seeded_cache_entries: int = 0
    cache_dir: Path | None = None
    new_nodes: int = 0
    checkpoint: str = ""

    def to_json(self) -> str:
        """One JSON object (``resume --json``)."""
        return json.dumps(asdict(self), default=str)


def fill_missing_actions(trace: Any) -> int:
    """Give hypotheses from fin_factor / fin_model the ``.action`` the quant and model proposals read."""
    n = 0
    for exp, _ in trace.hist:
        hyp = getattr(exp, "hypothesis", None)
        if hyp is not None and getattr(hyp, "action", None) is None:
            kind = experiment_kind(exp)
            if kind in ("factor", "model"):
                hyp.action = kind
                n += 1
    return n


def restore_into(
    loop: Any,
    ckpt: PathLike | Checkpoint,
    *,
    workspace_root: PathLike | None = None,
    trust: bool | None = None,
    **restore_kwargs: Any,
) -> int:
    """Put the checkpoint's trace into ``loop`` before its first step; return the first new loop id.

    The loop will run the checkpoint's code, so it must be verified by a configured key or trusted
    (:func:`check_trust`; UntrustedContentError otherwise).

    The loop keeps its own trace object (its class, its new scenario, a QuantTrace's controller unless
    the checkpoint carries one); restored loops count as finished, so new loops get new ids and their
    session dumps never land in a restored loop's folder. ``loop.resume_offset`` holds the first new id:
    run ``loop.run(loop_n=loop.resume_offset + N)`` for N new loops (RD-Agent counts finished loops).
    ``ckpt`` may be a checkpoint already open (``Checkpoint.open``): it is then read once, with its options.
    """
    if isinstance(ckpt, Checkpoint):
        if trust is not True:
            check_trust(ckpt, trust)
        restored = restore_checkpoint(
            ckpt,
            workspace_root=workspace_root,
            overwrite=restore_kwargs.get("overwrite", False),
            progress=restore_kwargs.get("progress"),
        )
    else:
        if trust is not True and check_trust(ckpt, trust, restore_kwargs.get("require_signature"))[1]:
            restore_kwargs["require_signature"] = True
        restored = restore_trace(ckpt, workspace_root=workspace_root, **restore_kwargs)
    target = loop.trace
    target.hist = restored.hist
    target.dag_parent = restored.dag_parent
    target.idx2loop_id = restored.idx2loop_id
    target.current_selection = getattr(restored, "current_selection", target.current_selection)
    if getattr(target, "knowledge_base", None) is None:
        target.knowledge_base = getattr(restored, "knowledge_base", None)
    if hasattr(target, "controller") and hasattr(restored, "controller"):
        target.controller = restored.controller  # the bandit's state survives the checkpoint
    fill_missing_actions(target)
    offset = max(target.idx2loop_id.values(), default=-1) + 1
    for li in range(offset):
        loop.step_idx[li] = len(loop.steps)  # finished: RD-Agent will not re-run or count them
    loop.resume_offset = offset
    return offset


def _settings_and_loop(only: Phase | None) -> tuple[Any, type]:
    from trace_ckpt.rdagent import proposal

    if only == "model":
        from rdagent.app.qlib_rd_loop.conf import MODEL_PROP_SETTING as setting
        from rdagent.app.qlib_rd_loop.model import ModelRDLoop as loop_cls

        defaults = type(setting).model_fields
        for name, ours in (
            ("hypothesis_gen", "SotaFactorModelHypothesisGen"),
            ("hypothesis2experiment", "SotaFactorModelHypothesis2Experiment"),
            ("summarizer", "SotaFactorModelExperiment2Feedback"),
        ):
            if getattr(setting, name) == defaults[name].default:  # a class the user chose is kept
                setattr(setting, name, f"{proposal.__name__}.{ours}")
        return setting, loop_cls
    if only == "factor":
        from rdagent.app.qlib_rd_loop.conf import FACTOR_PROP_SETTING as setting
        from rdagent.app.qlib_rd_loop.factor import FactorRDLoop as loop_cls

        return setting, loop_cls
    from rdagent.app.qlib_rd_loop.conf import QUANT_PROP_SETTING as setting
    from rdagent.app.qlib_rd_loop.quant import QuantRDLoop as loop_cls

    return setting, loop_cls


def run_setup_hook(spec: str | None, loop: Any) -> None:
    """Call the ``module:function`` named by TRACE_CKPT_RESUME_SETUP with the loop, before it starts."""
    if not spec:
        return
    module, _, func = spec.partition(":")
    try:
        hook = getattr(importlib.import_module(module), func or "setup")
    except (ImportError, AttributeError) as e:
        raise ResumeError(f"TRACE_CKPT_RESUME_SETUP={spec}: cannot import it ({e})") from None
    hook(loop)


def resume(
    ckpt: PathLike,
    *,
    only: Phase | None = "model",
    loop_n: int | None = None,
    step_n: int | None = None,
    all_duration: str | None = None,
    base_features: Path | None = None,
    workspace_root: Path | None = None,
    log_dir: Path | None = None,
    setup: str | None = None,
    trust: bool | None = None,
    **restore_kwargs: Any,
) -> ResumeReport:
    """Run RD-Agent's model (``only="model"``), factor, or quant loop on top of a restored trace.

    The checkpoint must be signed with a configured key, or trusted (``trust``, default
    ``TRACE_CKPT_TRUST_RESUME``): resume runs its content. UntrustedContentError otherwise.
    """
    from rdagent.core.conf import RD_AGENT_SETTINGS
    from rdagent.log import rdagent_logger
    from rdagent.log.conf import LOG_SETTINGS

    options = Options.resolve(
        allow_modules=restore_kwargs.pop("allow_modules", ()),
        require_signature=restore_kwargs.pop("require_signature", None),
    )
    path = resolve_checkpoint(ckpt)
    if is_remote(path):  # refuse an untrusted URL from its manifest (three ranged reads), before downloading it all
        check_trust(path, trust, options.require_signature)
    # opened once: the trust check, the plan and the restore read one file (a URL is fetched once and checked again)
    with Checkpoint.open(path, options, check=False) as ck:
        plan = plan_resume(
            ck,
            only=only,
            loop_n=loop_n,
            step_n=step_n,
            all_duration=all_duration,
            base_features=base_features,
            workspace_root=workspace_root,
            log_dir=log_dir,
            setup=setup,
            trust=trust,
            require_signature=options.require_signature,
        )
        if plan.not_ready:
            raise NotReadyError(plan.not_ready)
        ckpt = plan.checkpoint
        if plan.bound == UNBOUNDED:
            log.warning("no --loop-n, --step-n or --all-duration: RD-Agent runs until you stop it (Ctrl-C)")
        RD_AGENT_SETTINGS.workspace_path = Path(plan.workspace_root)
        LOG_SETTINGS.trace_path = plan.log_dir
        rdagent_logger.set_storages_path(Path(plan.log_dir))
        Path(plan.log_dir).mkdir(parents=True, exist_ok=True)
        validated = plan.features_validated

        setting, loop_cls = _settings_and_loop(only)
        loop = loop_cls(setting)
        offset = restore_into(
            loop,
            ck,
            workspace_root=RD_AGENT_SETTINGS.workspace_path,
            trust=True,  # checked above
            **restore_kwargs,
        )
    run_setup_hook(setup or get_settings().resume_setup, loop)

    if plan.base_features:
        loop.plan["features"] = plan.base_features
    if plan.feature_codes:
        loop.plan["feature_codes"] = plan.feature_codes

    sota = sota_factor_experiments(loop.trace)
    if only == "model" and not sota:
        log.warning("the checkpoint holds no accepted factor experiment: the model phase trains on base features only")
    # RD-Agent's pickle cache is keyed on code alone: the resumed run reads and writes a cache of its own
    cache_dir = Path(tempfile.mkdtemp(prefix="pickle_cache-", dir=LOG_SETTINGS.trace_path))
    shared_cache = RD_AGENT_SETTINGS.pickle_cache_folder_path_str
    RD_AGENT_SETTINGS.pickle_cache_folder_path_str = str(cache_dir)
    try:
        seeded = seed_execute_cache(loop.trace, cache_dir)
        report = ResumeReport(
            log_dir=Path(LOG_SETTINGS.trace_path),
            restored_nodes=len(loop.trace.hist),
            first_loop_id=offset,
            sota_factor_experiments=len(sota),
            base_features=dict(loop.plan.get("features") or {}),
            features_validated=validated,
            seeded_cache_entries=seeded,
            cache_dir=cache_dir,
            checkpoint=str(ckpt),
        )
        remaining = None if loop_n is None else offset + loop_n
        asyncio.run(loop.run(step_n=step_n, loop_n=remaining, all_duration=all_duration))
    finally:
        RD_AGENT_SETTINGS.pickle_cache_folder_path_str = shared_cache
    report.new_nodes = len(loop.trace.hist) - report.restored_nodes
    return report


@without_rdagent_logs  # importing RD-Agent's modules logs: nothing may be written before the run starts
def plan_resume(
    ckpt: PathLike | Checkpoint,
    *,
    only: Phase | None = "model",
    loop_n: int | None = None,
    step_n: int | None = None,
    all_duration: str | None = None,
    base_features: Path | None = None,
    workspace_root: Path | None = None,
    log_dir: Path | None = None,
    setup: str | None = None,
    trust: bool | None = None,
    require_signature: bool | None = None,
) -> ResumePlan:
    """What :func:`resume` with these arguments would run, and whether this machine can (``not_ready``):
    its checks, without starting RD-Agent or writing anything (``resume --dry-run``)."""
    from rdagent.core.conf import RD_AGENT_SETTINGS
    from rdagent.log.conf import LOG_SETTINGS

    opened = ckpt if isinstance(ckpt, Checkpoint) else None
    ckpt = opened.source if opened is not None else resolve_checkpoint(ckpt)
    manifest, pin = check_trust(opened or ckpt, trust, require_signature)
    workspaces = Path(workspace_root if workspace_root is not None else RD_AGENT_SETTINGS.workspace_path)
    logs = Path(log_dir if log_dir is not None else LOG_SETTINGS.trace_path)
    check_writable(workspaces, "--workspace-root" if workspace_root is not None else "the workspace root")
    check_writable(logs, "--log-dir" if log_dir is not None else "the log folder (LOG_TRACE_PATH)")
    validated = None
    if base_features is not None:
        features, codes = load_base_features(Path(base_features))
        validated = check_base_features(features, base_features)  # a bad expression stops here, named
        if features and validated is None:
            log.warning(
                "the %d base features in %s could NOT be validated (RD-Agent's check needs a Qlib environment: "
                "conda listing %s, docs/guide.md); they are used as given — RD-Agent itself would have "
                "silently fallen back to Alpha20",
                len(features),
                base_features,
                qlib_env_name(),
            )
    else:
        features, codes = checkpoint_plan(manifest)
    plan = make_plan(
        ckpt,
        manifest,
        only=only,
        loop_n=loop_n,
        step_n=step_n,
        all_duration=all_duration,
        features=features,
        features_from=str(base_features) if base_features is not None else "the checkpoint's plan",
        validated=validated,
        log_dir=logs,
        workspace_root=workspaces,
    )
    plan.feature_codes, plan.pin_signature = codes, pin
    try:
        plan.ready = check_ready(only, setup=setup or get_settings().resume_setup)
    except NotReadyError as e:
        plan.not_ready = str(e)
    return plan


def check_trust(
    ckpt: PathLike | Checkpoint, trust: bool | None, require_signature: bool | None = None
) -> tuple[Manifest, bool]:
    """Refuse a checkpoint that no configured key verifies unless ``trust`` (default TRACE_CKPT_TRUST_RESUME).

    Returns the manifest and whether a restore that opens the file again must require the signature (trust came
    from it: a file swapped before then is refused). An open ``Checkpoint`` is checked with its own options.
    """
    manifest, verified = _checked_manifest(ckpt, require_signature)
    trusted = get_settings().trust_resume if trust is None else trust
    if not verified and not trusted:
        where = ckpt.source if isinstance(ckpt, Checkpoint) else ckpt
        raise UntrustedContentError(_untrusted_message(where, manifest))
    return manifest, verified and not trusted


def _checked_manifest(ckpt: PathLike | Checkpoint, require_signature: bool | None) -> tuple[Manifest, bool]:
    """The manifest, and whether a configured key verified the signature (a bad one is refused here)."""
    if isinstance(ckpt, Checkpoint):
        return ckpt.manifest, ckpt.signature == "ok"
    options = Options.resolve(require_signature=require_signature)
    with Checkpoint.open(ckpt, options, fetch=False) as ck:  # the manifest only: fail before any RD-Agent set-up
        return ck.manifest, ck.signature == "ok"


def _untrusted_message(ckpt: PathLike, m: Manifest) -> str:
    status = "signed, but no key configured here checks it" if m.signature else "unsigned"
    factors = sum(len(n.factors) or len(n.sub_workspaces) for n in m.nodes if n.kind == "factor")
    plan = m.metadata.get("plan") if isinstance(m.metadata, dict) else None
    codes = len(plan.get("feature_codes") or {}) if isinstance(plan, dict) else 0
    return (  # one line under the 600 characters of CheckpointError, with room for a long URL
        f"{ckpt} is {status}; resume runs its content (the factor.py of its {factors} factor(s) when not cached, "
        f"its {codes} feature code file(s) and expressions, its workspaces' code and configs): pass --trust if you "
        "trust its author (trust=True, TRACE_CKPT_TRUST_RESUME=true), or configure the key that signed it "
        "(TRACE_CKPT_TRUSTED_KEYS, TRACE_CKPT_SIGNING_KEY[_FILE])"
    )
