#!/usr/bin/env bash
# Write a deployment's .env with fresh secrets (mode 600; an existing file is never overwritten):
#   bash scripts/init_env.sh DOMAIN [OUT_FILE]        (OUT_FILE: .env next to compose.yaml)
# Starts from .env.example; every "replace-me" value gets its own random secret. The first
# administrator's e-mail is it@DOMAIN unless DH_ADMIN_EMAIL is set.
set -euo pipefail
domain="${1:?usage: scripts/init_env.sh DOMAIN [OUT_FILE]}"
here="$(cd "$(dirname "$0")/.." && pwd)"
out="${2:-$here/.env}"
email="${DH_ADMIN_EMAIL:-it@$domain}"
if [ -e "$out" ]; then echo "error: $out exists; remove it first to make new secrets" >&2; exit 1; fi
rand() { head -c 96 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c "$1"; }
umask 077
while IFS= read -r line; do
    case "$line" in
        DH_DOMAIN=*) echo "DH_DOMAIN=$domain" ;;
        DH_ADMIN_EMAIL=*) echo "DH_ADMIN_EMAIL=$email" ;;
        LIVEKIT_API_KEY=*) echo "LIVEKIT_API_KEY=API$(rand 12)" ;;
        DH_AGENT_KEY=*) echo "DH_AGENT_KEY=dhk_$(rand 43)" ;;
        DH_ADMIN_PASSWORD=*|DH_GRAFANA_PASSWORD=*) echo "${line%%=*}=$(rand 20)" ;;
        *=*replace-me*) echo "${line%%=*}=$(rand 48)" ;;
        *) echo "$line" ;;
    esac
done < "$here/.env.example" > "$out"
echo "wrote $out (mode 600): the first administrator is $email, its password is DH_ADMIN_PASSWORD there" >&2
