# freshlake: `make demo` and `make test` do all set-up themselves from a fresh clone.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export SPARK_LOCAL_IP := 127.0.0.1
export PYSPARK_PYTHON := $(abspath $(PY))
export PYSPARK_DRIVER_PYTHON := $(abspath $(PY))

.PHONY: install demo test test-slow test-all lint bench clean test-petastorm

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and exactly pinned: this takes the local CPU wheel, not CUDA builds.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/freshlake demo

test: $(STAMP)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# Exit code 5 (no test collected) is not a failure here.
test-slow: $(STAMP)
	$(PY) -m pytest -m slow $(PYTEST_ARGS) || [ $$? -eq 5 ]

test-all: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# The Petastorm loader's own environment (pyarrow < 15, numpy < 2): only its tests run there.
PETASTORM_VENV  := .venv-petastorm
PETASTORM_STAMP := $(PETASTORM_VENV)/.installed

$(PETASTORM_STAMP): training/petastorm/requirements.txt pyproject.toml
	test -x $(PETASTORM_VENV)/bin/python || $(PYTHON) -m venv $(PETASTORM_VENV)
	$(PETASTORM_VENV)/bin/python -m pip install --quiet torch==2.13.0
	$(PETASTORM_VENV)/bin/python -m pip install --quiet -r training/petastorm/requirements.txt
	$(PETASTORM_VENV)/bin/python -m pip install --quiet --no-deps -e .
	touch $(PETASTORM_STAMP)

test-petastorm: $(PETASTORM_STAMP)
	$(PETASTORM_VENV)/bin/python -m pytest tests/test_training_petastorm.py $(PYTEST_ARGS)

# Layer rules (pyproject.toml [tool.importlinter]). import-linter reads a package from one
# folder, so it runs on the installed layout (features/ as freshlake/features, ...) staged in build/.
IMPORT_LAYOUT := build/import-layout

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) deploy/stage_layout.py $(IMPORT_LAYOUT)
	cd $(IMPORT_LAYOUT) && $(abspath $(VENV))/bin/lint-imports --no-logo --no-cache $(abspath pyproject.toml)

clean:
	rm -rf lake build *.egg-info .pytest_cache
