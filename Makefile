# The two commands of the README: `make demo` (the main job) and `make test` (the test suite).
# Each installs what it needs first; torch comes from the local CPU wheel (`torch==2.13.0`), which keeps a
# fresh install small and fast.
PYTHON ?= python3
PIP = $(PYTHON) -m pip install -q --disable-pip-version-check

.PHONY: install install-dev demo test test-slow lint

install:
	$(PIP) "torch==2.13.0"
	$(PIP) -e ".[maze,video]"

install-dev:
	$(PIP) "torch==2.13.0"
	$(PIP) -e ".[dev]"

demo: install
	MUJOCO_GL=$${MUJOCO_GL:-egl} $(PYTHON) -m aligniql.demo

test: install-dev
	HF_HUB_OFFLINE=1 MUJOCO_GL=$${MUJOCO_GL:-egl} $(PYTHON) -m pytest -q

test-slow: install-dev
	HF_HUB_OFFLINE=1 MUJOCO_GL=$${MUJOCO_GL:-egl} $(PYTHON) -m pytest -q -m slow

lint: install-dev
	$(PYTHON) -m ruff check .
