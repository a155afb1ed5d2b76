#!/usr/bin/env bash
# Rebuild the widget bundle (admin/static/widget/dh-widget.js) from widget/ with the locked
# npm packages. The built bundle is committed, so only people changing widget/src need this.
# Idempotent: skips the build when the sources and the lock file are unchanged.
set -euo pipefail
cd "$(dirname "$0")/../widget"
want=$(cat package-lock.json build.mjs src/* | sha1sum | cut -c1-16)
stamp=node_modules/.built-$want
if [ -f "$stamp" ] && [ -f ../admin/static/widget/dh-widget.js ]; then echo "[widget] up to date"; exit 0; fi
[ -d node_modules ] && [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund
node build.mjs
rm -f node_modules/.built-*
touch "$stamp"
echo "[widget] built admin/static/widget/dh-widget.js"
