"""Shared fixtures of the portrait engine tests: engines, the spoken test sentence, the face venv."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avatar.engines.portrait import create_engine, samples
from avatar.engines.portrait.settings import PortraitSettings

FACE_VENV_PY = PortraitSettings().face_venv / "bin" / "python"

needs_face_venv = pytest.mark.skipif(
    not FACE_VENV_PY.exists(),
    reason=f"face-landmark venv not set up ({FACE_VENV_PY} missing): run scripts/setup_face.sh",
)

OUT = Path(__file__).resolve().parents[2] / "out" / "portrait"


@pytest.fixture(scope="session")
def sentence() -> np.ndarray:
    """The test sentence, synthesised offline, with half a second of silence either side (16 kHz)."""
    pad = np.zeros(8000, np.float32)
    return np.concatenate([pad, samples.speech(), pad])


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """A private avatar cache, so tests also exercise first-use preparation of the default avatar."""
    return tmp_path_factory.mktemp("avatars")


@pytest.fixture(scope="session")
def still_engine(cache_dir):
    """512x512 engine with head sway off, so untouched pixels must equal the portrait exactly."""
    return create_engine(seed=1, head_motion=0.0, cache_dir=cache_dir)


@pytest.fixture(scope="session")
def engine(cache_dir):
    """512x512 engine with default settings (head sway on)."""
    return create_engine(seed=2, cache_dir=cache_dir)


@pytest.fixture(scope="session")
def cartoon_dir(tmp_path_factory) -> Path:
    """The cartoon portrait, prepared with the face venv."""
    if not FACE_VENV_PY.exists():
        pytest.skip(f"face-landmark venv not set up ({FACE_VENV_PY} missing): run scripts/setup_face.sh")
    from avatar.engines.portrait import prepare

    out = tmp_path_factory.mktemp("cartoon")
    prepare(samples.cartoon(), out)
    return out


def run(session, audio: np.ndarray, speaking: bool = True) -> tuple[np.ndarray, list]:
    """Feed ``audio`` frame by frame; return (frames array, FaceStates)."""
    frames, states = [], []
    for i in range(0, len(audio) - 639, 640):
        x = audio[i:i + 640]
        out = session.generate(x, speaking=speaking and bool(np.abs(x).max() > 1e-4))
        assert len(out) == 1
        frames.append(out[0])
        states.append(session.state)
    return np.stack(frames), states


def mouth_aperture(frames: np.ndarray, rig) -> np.ndarray:
    """Per frame, how many mouth-box pixels differ clearly from the portrait (the visible opening)."""
    sl = rig.mouth.box.sl
    base = rig.base[sl].astype(np.int16)
    return np.array([(np.abs(f[sl].astype(np.int16) - base).sum(axis=2) > 60).sum() for f in frames], float)


def envelope(audio: np.ndarray) -> np.ndarray:
    """RMS of each 40 ms frame."""
    n = len(audio) // 640
    return np.sqrt((audio[: n * 640].reshape(n, 640) ** 2).mean(axis=1))
