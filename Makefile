# Developer entry points. Every step is idempotent: a stamp under .run/stamps/ (or the thing itself) marks it done.
#   make run     install, then the demo: Redis + model + backend + Label Studio with a connected project
#   make test    install, then every test tier (unit, api, e2e, browser) with a per-tier summary
#   make lint    ruff + mypy
#   make bench   the inference engines' table (pipeline() vs ours on torch, ONNX fp32/int8, OpenVINO)
#   make container-test   build the image with podman (local base, tiny baked checkpoint) and test it with buildah
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON      ?= python3
VENV        := .venv
LS_VENV     := .venv-ls
LS_VERSION  := 1.23.2
RUN         := .run
STAMPS      := $(RUN)/stamps
# torch==2.13.0 (pinned in pyproject) from the CPU-only index when it can be reached; else the default index
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
REDIS_HOST  ?= 127.0.0.1
REDIS_PORT  ?= 6379
CHROMIUM    := /usr/bin/chromium
PYTEST_ARGS ?=
# the local stand-in for python:3.11-slim (no registry here): devtools/container_base.sh builds it with debootstrap
CONTAINER_BASE ?= localhost/python-base
# apt-get needs root; CI runs as root, a developer machine gets sudo
SUDO        := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help venv ls-venv chromium redis setup-run setup-test run test lint bench clean container-tools container-base container-test

help:
	@sed -n 's/^#   //p' Makefile

$(STAMPS):
	@mkdir -p $@

# ---------------------------------------------------------------- environments
venv: $(STAMPS)/venv
$(STAMPS)/venv: pyproject.toml | $(STAMPS)
	@[ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  echo "python3-venv is missing: installing it"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv >/dev/null && $(PYTHON) -m venv $(VENV); }
	@extra=""; \
	if $(PYTHON) -c "import urllib.request as u; u.urlopen('$(TORCH_INDEX)/torch/', timeout=5)" 2>/dev/null; then \
	  extra="--extra-index-url $(TORCH_INDEX)"; echo "torch from $(TORCH_INDEX)"; fi; \
	echo "installing the project into $(VENV) (log: $(RUN)/pip-venv.log)"; \
	start=$$(date +%s); \
	$(VENV)/bin/pip install -q $$extra -e '.[dev]' > $(RUN)/pip-venv.log 2>&1 \
	  || { tail -n 40 $(RUN)/pip-venv.log; echo "pip install failed, see $(RUN)/pip-venv.log"; exit 1; }; \
	echo "$(VENV) ready in $$(( $$(date +%s) - start )) s"
	@touch $@

ls-venv: $(STAMPS)/ls-venv
$(STAMPS)/ls-venv: | $(STAMPS)
	@if [ -x $(LS_VENV)/bin/label-studio ]; then echo "$(LS_VENV) already has label-studio"; else \
	  echo "installing label-studio==$(LS_VERSION) into $(LS_VENV) (log: $(RUN)/pip-ls.log, about a minute)"; \
	  start=$$(date +%s); \
	  { [ -x $(LS_VENV)/bin/python ] || $(PYTHON) -m venv $(LS_VENV); } && \
	  $(LS_VENV)/bin/pip install -q label-studio==$(LS_VERSION) > $(RUN)/pip-ls.log 2>&1 \
	    || { tail -n 40 $(RUN)/pip-ls.log; echo "pip install failed, see $(RUN)/pip-ls.log"; exit 1; }; \
	  echo "$(LS_VENV) ready in $$(( $$(date +%s) - start )) s"; fi
	@touch $@

chromium:
	@if [ -x $(CHROMIUM) ]; then echo "chromium: $(CHROMIUM)"; else \
	  echo "installing Debian chromium (apt)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; fi

# Redis for the job queue: start a throw-away one on loopback when none answers
redis: venv
	@if $(VENV)/bin/python -c "import redis; redis.Redis(host='$(REDIS_HOST)', port=$(REDIS_PORT), socket_timeout=2).ping()" 2>/dev/null; then \
	  echo "redis: $(REDIS_HOST):$(REDIS_PORT) answers"; else \
	  command -v redis-server >/dev/null || { echo "installing redis-server (apt)"; \
	    $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server >/dev/null; }; \
	  redis-server --daemonize yes --bind $(REDIS_HOST) --port $(REDIS_PORT) --save "" --appendonly no >/dev/null; \
	  for i in $$(seq 50); do $(VENV)/bin/python -c "import redis; redis.Redis(host='$(REDIS_HOST)', port=$(REDIS_PORT)).ping()" 2>/dev/null && break; sleep 0.1; done; \
	  echo "redis: started on $(REDIS_HOST):$(REDIS_PORT)"; fi

# ---------------------------------------------------------------- what people run
# the installs are independent (pip, pip, apt): run them side by side
setup-run:
	@$(MAKE) --no-print-directory -j2 venv ls-venv

setup-test:
	@$(MAKE) --no-print-directory -j3 venv ls-venv chromium
	@$(MAKE) --no-print-directory redis

run: setup-run
	$(VENV)/bin/python -m devtools.demo

test: setup-test
	@mkdir -p test-artifacts
	$(VENV)/bin/python -m pytest -p devtools.pytest_tiers $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check backend devtools tests bench docker
	$(VENV)/bin/mypy backend

# ---------------------------------------------------------------- the container image (podman/buildah, see README)
container-tools:
	@if command -v podman >/dev/null && command -v buildah >/dev/null && command -v debootstrap >/dev/null \
	  && command -v redis-server >/dev/null; then echo "container tools: $$(podman --version), $$(buildah --version | cut -d' ' -f1-3)"; \
	else echo "installing podman, buildah, debootstrap, redis-server (apt)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	    podman buildah debootstrap redis-server >/dev/null; fi

container-base: container-tools
	@$(SUDO) bash devtools/container_base.sh $(CONTAINER_BASE)

# the test builds the image (podman's layer cache is kept), then runs it with buildah; it starts Label Studio and
# redis-server itself and stops both
container-test: container-base
	@[ "$$(id -u)" = 0 ] || { echo "container-test runs as root (podman build, buildah run, unshare --net)"; exit 1; }
	@$(MAKE) --no-print-directory -j2 venv ls-venv
	@mkdir -p test-artifacts
	CONTAINER_BASE=$(CONTAINER_BASE) $(VENV)/bin/python -m pytest -p devtools.pytest_tiers -m container tests/container $(PYTEST_ARGS)
	@cat test-artifacts/container/figures.json

bench: venv
	$(VENV)/bin/pip install -q -e '.[bench]' > $(RUN)/pip-bench.log 2>&1 || echo "OpenVINO not installed: its rows are left out"
	$(VENV)/bin/python bench/engines.py $$( [ -d models/versions ] && echo --starter models )

clean:
	rm -rf $(STAMPS) test-artifacts .pytest_cache
