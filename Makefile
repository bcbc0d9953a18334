# Two commands set up a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-test

# Qlib for RD-Agent's model phase without Docker/conda (docs/guide.md, "Model phase on a machine without
# Docker"): a virtualenv RD-Agent reaches through the conda stand-in examples/qlib_env/bin/conda.
QLIB_VENV ?= .qlib-venv
QLIB_STAMP := $(QLIB_VENV)/.installed

.PHONY: test lint demo venv install bench clean qlib-env e2e

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(PY)

install: $(STAMP)

# The suite includes tests/test_qlib_real.py (real qrun in the Qlib venv), so the venv is built first.
test: $(STAMP) $(QLIB_STAMP)
	$(PY) -m pytest -q

# The rule set is written down in pyproject.toml ([tool.ruff.lint]); CI runs this before the tests.
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

demo: $(STAMP)
	$(PY) examples/demo.py demo-out

$(QLIB_STAMP): examples/qlib_env/requirements.txt
	rm -rf $(QLIB_VENV)
	$(PYTHON) -m venv $(QLIB_VENV)
	$(QLIB_VENV)/bin/python -m pip install --quiet -r examples/qlib_env/requirements.txt
	touch $(QLIB_STAMP)

qlib-env: $(QLIB_STAMP)

# Factor phase -> trace-ckpt save -> model phase on real Qlib (RD-Agent's QlibModelRunner, real qrun); only
# the LLM, the code it writes, the market and conda stand in. Ends with one "e2e ok: ..." line.
E2E_DIR ?= e2e-out
e2e: $(STAMP) $(QLIB_STAMP)
	rm -rf $(E2E_DIR)
	$(PY) -m examples.qlib_e2e --workdir $(E2E_DIR)

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(QLIB_VENV) build *.egg-info
