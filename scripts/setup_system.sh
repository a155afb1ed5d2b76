#!/usr/bin/env bash
# Debian packages the stack and its tests use; installs only what is missing.
set -euo pipefail
PKGS=(espeak-ng ffmpeg caddy)  # caddy: the HTTPS front of compose.yaml, run natively by tests/deploy
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -eq 0 ]; then echo "[system] packages present"; exit 0; fi
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "[system] installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
