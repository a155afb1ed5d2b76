#!/usr/bin/env bash
# Headless Chromium for the widget's browser tests (Debian's package; no browser download by
# Playwright) and the Python driver (the `widget` extra). Idempotent: installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
  echo "[browser] installing Debian's chromium..."
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
if [ -x .venv/bin/python ] && ! .venv/bin/python -c 'import playwright' 2>/dev/null; then
  echo "[browser] installing the playwright driver into .venv (no browser download)..."
  .venv/bin/pip install --progress-bar off -q -e ".[widget]"
fi
echo "[browser] ready: $(/usr/bin/chromium --version 2>/dev/null || chromium --version)"
