"""Model-phase proposal classes that read a restored factor trace the right way.

Plug them in through RD-Agent's own class-path settings (``trace-ckpt resume --only model`` does):

    QLIB_MODEL_HYPOTHESIS_GEN=trace_ckpt.rdagent.proposal.SotaFactorModelHypothesisGen
    QLIB_MODEL_HYPOTHESIS2EXPERIMENT=trace_ckpt.rdagent.proposal.SotaFactorModelHypothesis2Experiment
    QLIB_MODEL_SUMMARIZER=trace_ckpt.rdagent.proposal.SotaFactorModelExperiment2Feedback

- The LLM sees model experiments as the model history and the SOTA factors as factor context, not
  factor hypotheses presented as earlier model attempts or a factor node as "the SOTA model".
- Exactly one SOTA factor experiment still counts: RD-Agent's model runner combines SOTA factors only
  when ``based_experiments`` holds more than one QlibFactorExperiment, so an empty baseline is put in
  front of a lone one, as RD-Agent's own factor proposal does.
"""

from __future__ import annotations

from typing import Any

from rdagent.core.proposal import Hypothesis, Trace
from rdagent.scenarios.qlib.developer.feedback import QlibModelExperiment2Feedback
from rdagent.scenarios.qlib.experiment.factor_experiment import QlibFactorExperiment
from rdagent.scenarios.qlib.proposal.model_proposal import QlibModelHypothesis2Experiment, QlibModelHypothesisGen

from trace_ckpt.quant import IC, factor_name
from trace_ckpt.rdagent.trace import experiment_kind, sota_factor_experiments

_MAX_FACTORS_IN_PROMPT = 50


def model_view(trace: Trace) -> Trace:
    """A trace holding only the model nodes of ``trace`` (same scenario, same node objects)."""
    view = Trace(trace.scen, trace.knowledge_base)
    for exp, fb in trace.hist:
        if experiment_kind(exp) == "model" or getattr(exp.hypothesis, "action", None) == "model":
            view.hist.append((exp, fb))
            view.dag_parent.append(() if len(view.hist) == 1 else (len(view.hist) - 2,))
            view.idx2loop_id[len(view.hist) - 1] = len(view.hist) - 1
    return view


def sota_factor_context(trace: Trace) -> str:
    """A prompt block listing the SOTA factors (name, formulation, IC) the models will train on."""
    lines = []
    for exp in sota_factor_experiments(trace):
        ic = None
        result = getattr(exp, "result", None)
        if result is not None and hasattr(result, "get"):
            ic = result.get(IC)
        for task in exp.sub_tasks:
            name = factor_name(task) or "?"
            formulation = getattr(task, "factor_formulation", "")
            lines.append(f"- {name}: {formulation}" + (f" (IC of its run: {float(ic):.4f})" if ic is not None else ""))
    if not lines:
        return ""
    more = len(lines) - _MAX_FACTORS_IN_PROMPT
    shown = lines[:_MAX_FACTORS_IN_PROMPT] + ([f"- ... and {more} more"] if more > 0 else [])
    return (
        "The models are trained on the base features plus these SOTA factors, found in an earlier "
        "factor-evolution phase (they are inputs, not earlier model attempts):\n" + "\n".join(shown)
    )


def _with_factor_context(text: Any, trace: Trace) -> Any:
    block = sota_factor_context(trace)
    if not block:
        return text
    return f"{text}\n\n{block}" if text else block


class SotaFactorModelHypothesisGen(QlibModelHypothesisGen):
    """RD-Agent's model hypothesis generator, shown model history only plus the SOTA factor context."""

    def prepare_context(self, trace: Trace) -> tuple[dict, bool]:
        context, ok = super().prepare_context(model_view(trace))
        context["RAG"] = _with_factor_context(context.get("RAG"), trace)
        return context, ok


class SotaFactorModelHypothesis2Experiment(QlibModelHypothesis2Experiment):
    """RD-Agent's model hypothesis->experiment, with model-only history and a lone SOTA factor kept."""

    def prepare_context(self, hypothesis: Hypothesis, trace: Trace) -> tuple[dict, bool]:
        context, ok = super().prepare_context(hypothesis, model_view(trace))
        context["hypothesis_and_feedback"] = _with_factor_context(context.get("hypothesis_and_feedback"), trace)
        return context, ok

    def convert_response(self, response: str, hypothesis: Hypothesis, trace: Trace) -> Any:
        exp = super().convert_response(response, hypothesis, trace)
        exp.based_experiments = with_baseline(list(exp.based_experiments))
        return exp


class SotaFactorModelExperiment2Feedback(QlibModelExperiment2Feedback):
    """RD-Agent's model feedback, comparing against the SOTA *model* only (a factor node is no SOTA model)."""

    def generate_feedback(self, exp: Any, trace: Trace) -> Any:
        return super().generate_feedback(exp, model_view(trace))


def with_baseline(based: list[Any]) -> list[Any]:
    """Put an empty factor experiment in front when exactly one SOTA factor experiment is present."""
    if sum(isinstance(e, QlibFactorExperiment) for e in based) == 1:
        return [QlibFactorExperiment(sub_tasks=[]), *based]
    return based
