# Two commands set everything up: `make train` and `make test`.
# Both create .venv when missing and (re)install the project with its dev extras only when
# pyproject.toml changed since the last install.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: train test docs install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e ".[dev]"
	touch $(STAMP)

train: $(STAMP)
	$(VENV)/bin/python experiments/train.py

# one pytest worker per CPU core (pytest-xdist): about 8 minutes on a 2-core CPU, 15 with one
test: $(STAMP)
	$(VENV)/bin/python -m pytest -q -n auto

# the documentation site into docs/_build/html, warnings as errors; it runs every examples/plot_*.py
docs: $(STAMP)
	$(VENV)/bin/sphinx-build -W --keep-going -q -b html docs docs/_build/html

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis docs/_build docs/auto_examples docs/sg_execution_times.rst
