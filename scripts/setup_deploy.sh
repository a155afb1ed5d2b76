#!/usr/bin/env bash
# What the deployment test (tests/deploy) needs besides the stack: Caddy (Debian's, via
# setup_system.sh) and the Compose specification's JSON schema, from compose-go on the Go module
# proxy (the schema `docker compose` itself validates with). Cached; idempotent.
set -euo pipefail
CACHE="${DH_CACHE:-$HOME/.cache/dh-agent}"
VERSION=v2.10.0
OUT="$CACHE/compose-spec/compose-spec-$VERSION.json"
command -v caddy >/dev/null || bash "$(dirname "$0")/setup_system.sh"
if [ -s "$OUT" ]; then echo "[deploy] compose-spec $VERSION: cached"; exit 0; fi
mkdir -p "$(dirname "$OUT")"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
proxy="${GOPROXY:-https://proxy.golang.org}"; proxy="${proxy%%,*}"
echo "[deploy] fetching the Compose specification schema (compose-go $VERSION)"
curl -fsSL -m 120 -o "$tmp/cg.zip" "$proxy/github.com/compose-spec/compose-go/v2/@v/$VERSION.zip"
unzip -p "$tmp/cg.zip" "github.com/compose-spec/compose-go/v2@$VERSION/schema/compose-spec.json" > "$tmp/schema.json"
mv "$tmp/schema.json" "$OUT"
echo "[deploy] compose-spec schema at $OUT"
