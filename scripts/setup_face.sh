#!/usr/bin/env bash
# Build the small, separate virtualenv that the portrait engine uses ONLY at
# avatar-preparation time to find face landmarks (mediapipe face mesh).
#
# Why a separate venv: mediapipe 0.10.21 needs protobuf<5 while livekit in the
# main venv needs protobuf>=5. Rendering never imports mediapipe, so the live
# worker keeps a single venv; preparation runs the landmark step as a
# subprocess in this one.
#
# Idempotent: re-running is quick when everything is already installed.
# Override the location with DH_FACE_VENV (the engine reads the same variable).
set -euo pipefail

VENV="${DH_FACE_VENV:-$HOME/.cache/dh-agent/venv-face}"
PY="${PYTHON:-python3.11}"

if ! command -v "$PY" >/dev/null 2>&1; then
  PY=python3
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "creating face-landmark venv at $VENV"
  mkdir -p "$(dirname "$VENV")"
  "$PY" -m venv "$VENV"
fi

# mediapipe's drawing helpers import matplotlib at import time but the face mesh
# never plots; the landmark tool installs a stub module instead of a 40 MB dependency.
STUB='import sys, types; m = types.ModuleType("matplotlib"); m.pyplot = types.ModuleType("matplotlib.pyplot"); sys.modules.update({"matplotlib": m, "matplotlib.pyplot": m.pyplot})'

if "$VENV/bin/python" -c "$STUB
import mediapipe as mp, cv2, numpy
mp.solutions.face_mesh.FaceMesh" 2>/dev/null
then
  echo "face-landmark venv ready: $VENV"
  exit 0
fi

"$VENV/bin/python" -m pip install --quiet --upgrade pip
# mediapipe's wheel metadata pulls in jax, matplotlib and sounddevice, which the
# face mesh does not use; install it without deps plus exactly what it imports.
"$VENV/bin/python" -m pip install --quiet \
  "absl-py" "attrs" "flatbuffers>=2.0" "protobuf>=4.25.3,<5" \
  "numpy<2" "opencv-python-headless<4.11"
"$VENV/bin/python" -m pip install --quiet --no-deps "mediapipe==0.10.21"

"$VENV/bin/python" -c "$STUB
import mediapipe as mp
mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True).close()
print('mediapipe', mp.__version__, 'face mesh OK')"
echo "face-landmark venv ready: $VENV"
