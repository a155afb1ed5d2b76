#!/usr/bin/env bash
# Build livekit-server v1.13.5 once into the cache (reused by the demo and the tests).
set -euo pipefail
VERSION=v1.13.5
CACHE="${DH_CACHE:-$HOME/.cache/dh-agent}"
BIN="$CACHE/bin/livekit-server-$VERSION"
if [ -x "$BIN" ]; then echo "livekit-server $VERSION: cached at $BIN"; exit 0; fi
command -v go >/dev/null || { echo "error: Go is needed to build livekit-server (install Go >= 1.26)" >&2; exit 1; }
mkdir -p "$CACHE/bin" "$CACHE/gobuild"
echo "livekit-server $VERSION: building with go install (first time only, a few minutes)..."
GOBIN="$CACHE/gobuild" go install "github.com/livekit/livekit-server/cmd/server@$VERSION"
mv "$CACHE/gobuild/server" "$BIN"
"$BIN" --version
