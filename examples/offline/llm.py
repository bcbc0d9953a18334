"""Simulated LLM: RD-Agent's ``APIBackend`` answering from a script, selected with ``BACKEND``.

    BACKEND=examples.offline.llm.OfflineBackend

It recognises which RD-Agent prompt it was given (hypothesis, hypothesis->experiment, feedback; factor
or model) and answers with valid JSON of the schema that prompt asks for. Rounds are counted in a small
state file (``TRACE_CKPT_OFFLINE_STATE``), so every run is deterministic. Feedback decisions follow a
fixed pattern: factor rounds 1, 4, 7, ... are rejected, model rounds 1, 3, 5, ... are rejected. In the quant
loop (fin_quant) the proposal prompt asks for an ``"action"``: the answer takes the action RD-Agent's bandit
chose (read from the prompt) and numbers its round after the rounds shown in the prompt's history, so a
quant loop resumed on a restored trace proposes new factors.

``TRACE_CKPT_OFFLINE_SEED=s`` (default 0) simulates another LLM sample, for runs that must differ: with
s != 0 the factors of odd rounds get windows shifted by s (new names), and every factor's code is written
as "sample s" (so even rounds propose a factor of the same name as a seed-0 run, with other code).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from rdagent.oai.backend.base import APIBackend

# (name stem, description, formulation, how factor.py computes it from the close / volume series)
FACTOR_RECIPES = [
    (
        "Mom{w}",
        "[Momentum Factor] {w}-day price momentum",
        "close_t / close_{{t-{w}}} - 1",
        'close.groupby(level="instrument").pct_change({w})',
    ),
    (
        "Vol{w}",
        "[Volatility Factor] {w}-day return volatility",
        "std(r_{{t-{w}..t}})",
        'close.groupby(level="instrument").pct_change().groupby(level="instrument").rolling({w}).std().droplevel(0)',
    ),
    (
        "Rev{w}",
        "[Reversal Factor] negative {w}-day return",
        "-(close_t / close_{{t-{w}}} - 1)",
        '-close.groupby(level="instrument").pct_change({w})',
    ),
    (
        "VRatio{w}",
        "[Volume Factor] volume over its {w}-day mean",
        "volume_t / mean(volume_{{t-{w}..t}})",
        'volume / volume.groupby(level="instrument").rolling({w}).mean().droplevel(0)',
    ),
]


def _state_path() -> Path:
    return Path(os.environ.get("TRACE_CKPT_OFFLINE_STATE", "offline_llm_state.json"))


def _next(counter: str) -> int:
    path = _state_path()
    state = json.loads(path.read_text()) if path.exists() else {}
    n = state.get(counter, 0)
    state[counter] = n + 1
    path.write_text(json.dumps(state))
    return n


def _round(text: str, kind: str) -> int:
    found = [int(n) for n in re.findall(rf"\[{kind} round (\d+)\]", text)]
    return max(found) if found else 0


def offline_seed() -> int:
    """The simulated LLM sample (``TRACE_CKPT_OFFLINE_SEED``, default 0)."""
    return int(os.environ.get("TRACE_CKPT_OFFLINE_SEED") or 0)


def factor_recipe(r: int) -> tuple[str, str, str, str]:
    """The (name, description, formulation, pandas expression) of the factor proposed in round ``r``."""
    stem, desc, form, expr = FACTOR_RECIPES[r % len(FACTOR_RECIPES)]
    w = 3 + 2 * (r // len(FACTOR_RECIPES)) + r % 3 + (offline_seed() if r % 2 else 0)
    return f"{stem.format(w=w)}_r{r}", desc.format(w=w), form.format(w=w), expr.format(w=w)


def _record(text: str, reply: str) -> None:
    log = os.environ.get("TRACE_CKPT_OFFLINE_PROMPT_LOG")
    if log:
        with open(log, "a") as f:
            f.write(json.dumps({"prompt": text, "reply": reply}) + "\n")


def answer(messages: list[dict[str, Any]]) -> str:
    """The scripted answer to one RD-Agent prompt (recorded to TRACE_CKPT_OFFLINE_PROMPT_LOG when set)."""
    text = "\n".join(str(m.get("content", "")) for m in messages)
    reply = _answer(text)
    _record(text, reply)
    return reply


def _answer(text: str) -> str:
    if "Current Round Information" in text:  # model feedback (its system prompt may be the factor one)
        r = _round(text, "model")
        keep = r % 2 == 0
        return json.dumps(
            {
                "Observations": f"[simulated] model round {r}",
                "Feedback for Hypothesis": "supported" if keep else "refuted",
                "New Hypothesis": "tune the hidden size",
                "Reasoning": "simulated feedback",
                "Decision": keep,
            }
        )
    if "Replace Best Result" in text:  # factor feedback
        r = _round(text, "factor")
        keep = r % 3 != 1
        return json.dumps(
            {
                "Observations": f"[simulated] round {r}: the combined factors {'improve' if keep else 'do not improve'} IC",
                "Feedback for Hypothesis": "supported" if keep else "refuted",
                "New Hypothesis": "try another window",
                "Reasoning": "simulated feedback",
                "Replace Best Result": "yes" if keep else "no",
            }
        )
    if "e.g. [Momentum Factor]" in text:  # factor hypothesis -> experiment (its output schema)
        r = _round(text, "factor")
        name, desc, form, _ = factor_recipe(r)
        return json.dumps(
            {name: {"description": desc, "formulation": form, "variables": {"close": "daily close price"}}}
        )
    if "So far please only design one model" in text:  # model hypothesis -> experiment
        r = _round(text, "model")
        return json.dumps(
            {
                f"GRU_r{r}": {
                    "description": "[simulated] a small GRU over the factor sequence",
                    "formulation": "h_t = GRU(x_t, h_{t-1}); y = W h_T",
                    "architecture": f"GRU(hidden={16 * (1 + r % 3)}) -> Linear(1)",
                    "variables": {"x_t": "features at t"},
                    "hyperparameters": {"hidden": str(16 * (1 + r % 3))},
                    "training_hyperparameters": {
                        "n_epochs": "2",
                        "lr": "1e-3",
                        "early_stop": 2,
                        "batch_size": 256,
                        "weight_decay": 1e-4,
                    },
                    "model_type": "TimeSeries",
                }
            }
        )
    # hypothesis generation (factor, model or quant)
    is_model = "GRU model/LSTM model" in text and "SOTA factor library" not in text
    kind = "model" if is_model else "factor"
    r = _next(f"{kind}_hypothesis")
    if '"action"' in text:  # the quant loop: its history may hold a restored run's rounds, number on from them
        seen = [int(n) for n in re.findall(rf"\[{kind} round (\d+)\]", text)]
        r = max([r, *(n + 1 for n in seen)])
    out = {
        "hypothesis": f"[{kind} round {r}] "
        + (
            f"A GRU with hidden size {16 * (1 + r % 3)} over the SOTA factors improves excess return."
            if is_model
            else f"{factor_recipe(r)[1]} predicts next-day returns."
        ),
        "reason": "[simulated] chosen by the offline script",
        "concise_reason": "simulated",
        "concise_observation": "simulated",
        "concise_justification": "simulated",
        "concise_knowledge": "simulated",
    }
    if '"action"' in text:
        out["action"] = kind
    return json.dumps(out)


class OfflineBackend(APIBackend):
    """RD-Agent LLM backend that never calls a network: scripted answers (simulated: no LLM)."""

    def supports_response_schema(self) -> bool:
        return False

    def _calculate_token_from_messages(self, messages: list[dict[str, Any]]) -> int:
        return sum(len(str(m.get("content", ""))) for m in messages) // 4

    def _create_embedding_inner_function(self, input_content_list: list[str]) -> list[list[float]]:
        out = []
        for text in input_content_list:
            digest = hashlib.sha256(text.encode()).digest()
            out.append([b / 255 for b in digest])
        return out

    def _create_chat_completion_inner_function(
        self, messages: list[dict[str, Any]], response_format: Any = None, *args: Any, **kwargs: Any
    ) -> tuple[str, str | None]:
        return answer(messages), "stop"
