"""RD-Agent's Qlib scenarios without the runtime probe (which needs Docker or conda)."""

from __future__ import annotations

from rdagent.scenarios.qlib.experiment.factor_experiment import QlibFactorScenario
from rdagent.scenarios.qlib.experiment.model_experiment import QlibModelScenario
from rdagent.scenarios.qlib.experiment.quant_experiment import QlibQuantScenario

RUNTIME = "[simulated runtime probe] Python 3.11 on CPU, pandas and torch available; no GPU."


class OfflineQlibFactorScenario(QlibFactorScenario):
    """QlibFactorScenario with a fixed runtime description (simulated runtime probe)."""

    def get_runtime_environment(self) -> str:
        return RUNTIME


class OfflineQlibModelScenario(QlibModelScenario):
    """QlibModelScenario with a fixed runtime description (simulated runtime probe)."""

    def get_runtime_environment(self) -> str:
        return RUNTIME


class OfflineQlibQuantScenario(QlibQuantScenario):
    """QlibQuantScenario (fin_quant) with a fixed runtime description (simulated runtime probe)."""

    def get_runtime_environment(self, tag: str | None = None) -> str:
        return RUNTIME
