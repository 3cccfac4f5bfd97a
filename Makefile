# ExtremeEarth Workbench — the two commands: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CONSTRAINTS := env/constraints.txt
EXTRAS ?= ml,gp,lab,test
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

LEAFLET := .cache/web/node_modules/leaflet/dist/leaflet.js

.PHONY: help install demo test bench lab app chromium web-assets clean-runs lock gpu-check

help:
	@echo "make demo   - create .venv, install the workbench and its kernel, run the demo pipeline"
	@echo "make test   - install the test extras and run the whole test suite"
	@echo "make bench  - run the benchmarks (each prints its ratio last)"
	@echo "make lab    - start JupyterLab with the workbench kernel"
	@echo "make app    - the processor map panel as a page (Voila) on http://127.0.0.1:$(APP_PORT)"
	@echo "make lock   - rewrite env/constraints.txt from the current .venv"
	@echo "make gpu-check - VGG-16 at full width and distributed training on this machine's GPUs (none: says so)"

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip wheel setuptools

# Reinstall when the dependency lists change.
$(STAMP): $(VENV)/bin/python pyproject.toml $(CONSTRAINTS) kernels/workbench/kernel.json
	$(PIP) install --quiet --disable-pip-version-check -c $(CONSTRAINTS) -e ".[$(EXTRAS)]"
	$(VENV)/bin/jupyter kernelspec install --sys-prefix --replace kernels/workbench >/dev/null
	$(PY) -m workbench.samples.sarsen_assets
	touch $(STAMP)

install: $(STAMP)

# Debian's chromium for the browser tests (never a downloaded browser build).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is not installed: sudo apt-get install chromium (browser tests will be skipped)"; fi; }

# Leaflet from the npm registry: the browser tests run offline and answer folium's CDN links with it;
# Font Awesome 5 likewise answers the CDN link of Voila's page template. One npm install for both
# (a --no-save install removes the packages it was not given).
WEB_PACKAGES := leaflet@1.9.3 @fortawesome/fontawesome-free@5.15.4
FONTAWESOME := .cache/web/node_modules/@fortawesome/fontawesome-free/css/all.min.css
$(LEAFLET) $(FONTAWESOME) &:
	@if command -v npm >/dev/null 2>&1; then mkdir -p .cache/web && npm install --silent --no-save --no-audit --no-fund --prefix .cache/web $(WEB_PACKAGES); \
	else echo "npm is not installed: map tests in the browser will be skipped"; fi

web-assets: $(LEAFLET) $(FONTAWESOME)

demo: install
	$(VENV)/bin/workbench run notebooks/pipelines/demo.yaml

test: install chromium web-assets
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install
	$(PY) benchmarks/run_all.py

# GPUs: install the CUDA build first (env/gpu.txt); without a GPU the check says so and passes.
gpu-check:
	VENV_PYTHON=$(PY) scripts/gpu_check.sh

lab: install
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

# The processor panel (notebooks/08_processor_panel.ipynb) as a stand-alone page, on loopback only.
APP_PORT ?= 8866
app: install
	$(VENV)/bin/voila notebooks/08_processor_panel.ipynb --no-browser --Voila.ip=127.0.0.1 --port=$(APP_PORT)

lock: $(VENV)/bin/python
	$(PIP) freeze --exclude-editable | grep -v '^extremeearth-workbench' > $(CONSTRAINTS).tmp && mv $(CONSTRAINTS).tmp $(CONSTRAINTS)

clean-runs:
	rm -rf runs
