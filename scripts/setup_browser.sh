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
# A Chinese font, so the console's Chinese UI renders (and its screenshots are readable).
if ! fc-list :lang=zh 2>/dev/null | grep -q .; then
  echo "[browser] installing a Chinese font (fonts-wqy-microhei)..."
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends fonts-wqy-microhei >/dev/null \
    || { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends fonts-wqy-microhei >/dev/null; }
fi
if [ -x .venv/bin/python ] && ! .venv/bin/python -c 'import playwright' 2>/dev/null; then
  echo "[browser] installing the playwright driver into .venv (no browser download)..."
  .venv/bin/pip install --progress-bar off -q -e ".[widget]"
fi
echo "[browser] ready: $(/usr/bin/chromium --version 2>/dev/null || chromium --version)"
