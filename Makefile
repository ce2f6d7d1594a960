# Two commands for a newcomer: `make demo` and `make test`. Everything else is set up by them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Debian tools the tests use as peers and oracles (nfcapd comes with nfdump, softflowctl
# with softflowd).
DEBIAN_TOOLS := softflowd softflowctl nfdump nfcapd tshark
DEBIAN_PKGS := softflowd nfdump tshark
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: demo test lint fmt typecheck bench bench-quick debian-tools clean help

help:
	@echo "make demo   - set up .venv and run the end-to-end demo on the shipped data"
	@echo "make test   - set up .venv (with test extras) and Debian peers, run the suite"
	@echo "make lint   - ruff check + ruff format --check + mypy"
	@echo "make bench  - benchmarks (pytest-benchmark and peer comparisons)"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# The stamps depend on the pins: changing constraints.txt or pyproject.toml reinstalls.
$(VENV)/.installed-runtime: pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install -q -c constraints.txt -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	@touch $@ $(VENV)/.installed-runtime

debian-tools:
	@missing=""; for t in $(DEBIAN_TOOLS); do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian tools:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    $(DEBIAN_PKGS) >/dev/null; \
	fi

demo: $(VENV)/.installed-runtime
	$(VENV)/bin/rating-engine demo

# One worker per core; a test file's tests stay on one worker (they share set-ups and
# files, e.g. the README test's wheel venv).
test: $(VENV)/.installed-test debian-tools
	$(PY) -m pytest -q -m "not slow" -n auto --dist loadfile

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy src

fmt: $(VENV)/.installed-test
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(VENV)/.installed-test debian-tools
	$(PY) -m pytest benchmarks --benchmark-enable -q

clean:
	rm -rf $(VENV) .venv-wheel workspace .pytest_cache .mypy_cache .ruff_cache .hypothesis .benchmarks
