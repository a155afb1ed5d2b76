#!/usr/bin/env bash
# Write a deployment's .env with fresh secrets: bash scripts/init_env.sh DOMAIN [ADMIN_EMAIL] > .env
# Starts from .env.example; every "replace-me" value gets its own random secret.
set -euo pipefail
domain="${1:?usage: scripts/init_env.sh DOMAIN [ADMIN_EMAIL] > .env}"
email="${2:-it@$domain}"
here="$(cd "$(dirname "$0")/.." && pwd)"
rand() { head -c 96 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c "$1"; }
umask 077
while IFS= read -r line; do
    case "$line" in
        DH_DOMAIN=*) echo "DH_DOMAIN=$domain" ;;
        DH_ADMIN_EMAIL=*) echo "DH_ADMIN_EMAIL=$email" ;;
        LIVEKIT_API_KEY=*) echo "LIVEKIT_API_KEY=API$(rand 12)" ;;
        DH_AGENT_KEY=*) echo "DH_AGENT_KEY=dhk_$(rand 43)" ;;
        DH_ADMIN_PASSWORD=*) echo "DH_ADMIN_PASSWORD=$(rand 20)" ;;
        *=*replace-me*) echo "${line%%=*}=$(rand 48)" ;;
        *) echo "$line" ;;
    esac
done < "$here/.env.example"
