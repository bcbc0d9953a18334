"""Offline stand-ins that let RD-Agent's own factor and model loops run with no LLM, no Docker/conda and
no Qlib data — for the tests and `make demo`. See README.md beside this file for what is simulated.

Only these are replaced (what needs an LLM endpoint, Docker/conda or Qlib data):
- ``llm.OfflineBackend``   simulated LLM answers, plugged in with RD-Agent's ``BACKEND`` setting;
- ``coders``              simulated LLM-written factor / model code (no CoSTEER LLM loop);
- ``backtest``            simulated Qlib backtest (``qrun``), plugged in where RD-Agent creates the Qlib env;
- ``scenarios``           RD-Agent's Qlib scenarios without the Docker/conda runtime probe.
Everything between — loops, session dumps and signing, proposals, factor execution, runners,
feedback — is RD-Agent's own code.
"""
