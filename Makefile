# Two commands on a fresh machine: `make demo` and `make test`. Every step is idempotent
# and cached under ~/.cache/dh-agent (models, livekit-server, face venv, databases).
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY := .venv/bin/python

.PHONY: help setup venv system models livekit face llm browser widget console console-deps services deploy-tools demo test test-fast clean

help:
	@echo "make demo   - set everything up, then run a scripted call (out/demo.mp4, out/transcript.json)"
	@echo "make test   - set everything up, then run the test suite"

venv:
	@bash scripts/setup_venv.sh

system:
	@bash scripts/setup_system.sh

models: venv
	@$(PY) scripts/setup_models.py

livekit:
	@bash scripts/setup_livekit.sh

face:
	@bash scripts/setup_face.sh

llm: venv
	@bash scripts/setup_llm.sh

browser: venv
	@bash scripts/setup_browser.sh

# Only needed after changing widget/src: the built bundle is committed.
widget:
	@bash scripts/setup_widget.sh

# Only needed after changing console/: the built bundle (admin/static/console) is committed.
console: console-deps
	@cd console && npx tsc --noEmit -p . && node build.mjs

# Caddy and the Compose schema, for the test that runs compose.yaml natively (tests/deploy).
deploy-tools:
	@bash scripts/setup_deploy.sh

services:
	@bash scripts/services.sh install
	@bash scripts/services.sh start

setup: system venv models livekit face

demo: setup
	@$(PY) -m harness.demo --out out

# The console's locked npm packages, so the suite also rebuilds the bundle and compares it.
console-deps:
	@cd console && ([ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund)

test: setup llm browser services console-deps deploy-tools
	@set -a; eval "$$(bash scripts/services.sh env)"; set +a; \
	COLUMNS=$${COLUMNS:-240} $(PY) -m pytest -q -ra --force-short-summary $(PYTEST_ARGS)

# Without the end-to-end calls (quick loop while developing).
test-fast: setup
	@$(PY) -m pytest -q -m "not e2e" $(PYTEST_ARGS)

clean:
	rm -rf out .pytest_cache
