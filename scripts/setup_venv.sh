#!/usr/bin/env bash
# Create .venv (Python 3.11) and install the project with all extras; re-installs only when
# pyproject.toml changed (a stamp holds its hash). pip's cache makes a re-install quick.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3
"$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { echo "error: Python 3.11 is required ($PY is $("$PY" -V))" >&2; exit 1; }
[ -x .venv/bin/python ] || { echo "[venv] creating .venv"; "$PY" -m venv .venv; }
want=$(sha1sum pyproject.toml | cut -c1-16)
stamp=.venv/.installed-$want
if [ -f "$stamp" ]; then echo "[venv] up to date"; exit 0; fi
echo "[venv] installing dh-agent[all] (first time: torch and models, several minutes)..."
.venv/bin/pip install --progress-bar off -q --upgrade pip
.venv/bin/pip install --progress-bar off -e ".[all]"
rm -f .venv/.installed-*
touch "$stamp"
echo "[venv] ready"
