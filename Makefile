# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create (or reuse) .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.oreflow-installed

.PHONY: demo test lint data bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# the pip and setuptools a new venv starts with are old and carry known advisories
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip setuptools
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/oreflow demo

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/python -m pytest -q

data: $(STAMP)
	$(BIN)/oreflow data build

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_stress.py
	$(BIN)/python benchmarks/bench_mfa.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
