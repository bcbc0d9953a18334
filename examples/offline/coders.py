"""Simulated LLM-written code: coders that write deterministic factor.py / model.py files.

They replace RD-Agent's CoSTEER coders (whose every step asks the LLM) through the class-path
settings ``QLIB_FACTOR_CODER`` / ``QLIB_MODEL_CODER``. The factor code they write is real pandas code
that RD-Agent's factor runner executes on the synthetic panel.
"""

from __future__ import annotations

import re
from typing import Any

from rdagent.components.coder.CoSTEER.evaluators import CoSTEERMultiFeedback, CoSTEERSingleFeedback
from rdagent.components.coder.factor_coder.factor import FactorFBWorkspace
from rdagent.components.coder.model_coder.model import ModelFBWorkspace
from rdagent.core.developer import Developer

from examples.offline.llm import factor_recipe, offline_seed

FACTOR_CODE = """import pandas as pd

# [simulated LLM-written code{sample}] {description}
df = pd.read_hdf("daily_pv.h5", key="data")
close = df["$close"].astype("float64")
volume = df["$volume"].astype("float64")
factor = ({expression}).sort_index().rename("{name}")
factor.to_frame().to_hdf("result.h5", key="data")
"""

MODEL_CODE = """import torch
from torch import nn


class Net(nn.Module):  # [simulated LLM-written code] {name}
    def __init__(self, num_features: int, num_timesteps: int | None = None, hidden: int = {hidden}) -> None:
        super().__init__()
        self.gru = nn.GRU(num_features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x)
        return self.head(out[:, -1]).squeeze(-1)


model_cls = Net
"""


def _passed(n: int) -> CoSTEERMultiFeedback:
    return CoSTEERMultiFeedback(
        [
            CoSTEERSingleFeedback(
                execution="[simulated] not evaluated offline",
                return_checking=None,
                code="[simulated] accepted",
                final_decision=True,
            )
            for _ in range(n)
        ]
    )


class OfflineFactorCoder(Developer):
    """Writes each factor task's factor.py from the offline recipe (simulated: no LLM)."""

    def develop(self, exp: Any) -> Any:
        workspaces = []
        for task in exp.sub_tasks:
            m = re.search(r"_r(\d+)$", task.factor_name)
            _name, description, _, expression = factor_recipe(int(m.group(1)) if m else 0)
            ws = FactorFBWorkspace(target_task=task)
            sample = f", sample {offline_seed()}" if offline_seed() else ""
            ws.inject_files(
                **{
                    "factor.py": FACTOR_CODE.format(
                        description=description, expression=expression, name=task.factor_name, sample=sample
                    )
                }
            )
            task.factor_implementation = True
            workspaces.append(ws)
        exp.sub_workspace_list = workspaces
        exp.prop_dev_feedback = _passed(len(workspaces))
        return exp


class OfflineModelCoder(Developer):
    """Writes each model task's model.py (simulated: no LLM; the simulated backtest never trains it)."""

    def develop(self, exp: Any) -> Any:
        workspaces = []
        for task in exp.sub_tasks:
            ws = ModelFBWorkspace(target_task=task)
            hidden = (task.hyperparameters or {}).get("hidden", "16")
            ws.inject_files(**{"model.py": MODEL_CODE.format(name=task.name, hidden=hidden)})
            workspaces.append(ws)
        exp.sub_workspace_list = workspaces
        exp.prop_dev_feedback = _passed(len(workspaces))
        return exp
