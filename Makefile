# Two commands set up a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# uv resolves and installs: seconds where pip backtracked for minutes through boto3 releases. It is
# installed with pip into the venv first, so nothing but Python is needed on the machine.
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed-test

# Qlib for RD-Agent's model phase without Docker/conda (docs/guide.md, "Model phase on a machine without
# Docker"): a virtualenv RD-Agent reaches through the conda stand-in examples/qlib_env/bin/conda.
QLIB_VENV ?= .qlib-venv
QLIB_STAMP := $(QLIB_VENV)/.installed

.PHONY: test test-fast test-floors lint demo venv install dist bench clean qlib-env e2e

$(PY):
	$(PYTHON) -m venv $(VENV)

$(UV): $(PY)
	$(PY) -m pip install --quiet 'uv>=0.9'

$(STAMP): $(UV) pyproject.toml
	$(UV) pip install --quiet --python $(PY) -e '.[test]'
	touch $(STAMP)

venv: $(PY)

install: $(STAMP)

# The suite includes tests/test_qlib_real.py (real qrun in the Qlib venv), so the venv is built first. On both
# cores (pytest-xdist), a file's tests on one worker so its module fixtures are built once: 652 tests in 6 min 13 s
# here (15 min on one core).
test: $(STAMP) $(QLIB_STAMP)
	$(PY) -m pytest -q -n auto --dist loadfile

# Everything but the tests marked slow (RD-Agent loop runs, real Qlib, the demo, fuzzing): on both cores
# (pytest-xdist), 84 s here on a shared 2-core machine (125 s on one). No Qlib venv needed.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" -n auto

# Floors are real: a venv on the lowest Python requires-python allows, every direct dependency at the lowest
# release pyproject.toml allows (uv's lowest-direct resolution), a check that each resolved exactly to its
# floor (.ci/floors.py), then the fast tests of the format, codecs, CLI, signing and storage there.
FLOORS_VENV ?= .floors-venv
FLOORS_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.10*/bin/python3.10) python3.10)
FLOORS_EXTRAS := test,plot,s3
FLOORS_TESTS ?= tests/test_format.py tests/test_tables.py tests/test_signing.py tests/test_attack_signing.py \
	tests/test_cli.py tests/test_fidelity.py tests/test_security.py tests/test_storage.py tests/test_plot.py
test-floors: $(STAMP)
	rm -rf $(FLOORS_VENV)
	$(UV) venv --quiet --python $(FLOORS_PYTHON) $(FLOORS_VENV)
	$(UV) pip install --quiet --python $(FLOORS_VENV)/bin/python --resolution lowest-direct \
		-e '.[$(FLOORS_EXTRAS)]'
	$(PY) .ci/floors.py $(FLOORS_VENV)/bin/python $(FLOORS_EXTRAS)
	$(FLOORS_VENV)/bin/python -m pytest -q -m "not slow" $(FLOORS_TESTS)

# The rule set is written down in pyproject.toml ([tool.ruff.lint]); CI runs this before the tests.
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# A wheel in dist/ to install elsewhere: pip install 'dist/trace_ckpt-<version>-py3-none-any.whl[plot,s3]'
dist: $(UV)
	$(UV) build --quiet --wheel --out-dir dist

demo: $(STAMP)
	$(PY) examples/demo.py demo-out

# uv too (30-42 s here with an empty cache; pip 100-160 s). uv reads no pip configuration: the folder of local wheels pip is
# pointed to (where this machine keeps the CPU build of torch) is passed on, or torch 2.13.0 is the CUDA build.
QLIB_FIND_LINKS ?= $(PIP_FIND_LINKS)
$(QLIB_STAMP): examples/qlib_env/requirements.txt | $(UV)
	rm -rf $(QLIB_VENV)
	$(PYTHON) -m venv $(QLIB_VENV)
	$(UV) pip install --quiet --python $(QLIB_VENV)/bin/python $(addprefix --find-links ,$(QLIB_FIND_LINKS)) \
		-r examples/qlib_env/requirements.txt
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
	rm -rf $(VENV) $(QLIB_VENV) $(FLOORS_VENV) build dist *.egg-info
