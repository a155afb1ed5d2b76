"""Once-per-avatar preparation: read the portrait, find its face landmarks, save a rig folder.

The folder holds ``portrait.png`` (the image, at most 1024 px a side), ``landmarks.npy``
(478 x 3 mediapipe face-mesh points in that image's pixels) and ``meta.json`` (face box,
lip/skin/teeth colours for the mouth interior). Rendering needs only these files and
numpy/OpenCV; mediapipe runs once here, in its own venv (scripts/setup_face.sh), because
it needs protobuf<5 while the worker's venv has protobuf>=5.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ...images import ImageError, decode_image, rgb_array
from ..base import EngineError, PreparationError
from . import landmarks as L
from .settings import PortraitSettings

logger = logging.getLogger("avatar.engines.portrait")

RIG_VERSION = 1
STORE_MAX_SIDE = 1024
_TOOL = Path(__file__).with_name("face_mesh_tool.py")
_MAX_BYTES = 40 * 1024 * 1024


def load_image(image: Any, max_side: int = 4096) -> np.ndarray:
    """Return ``image`` (RGB array, encoded bytes or a file path) as RGB uint8, or raise PreparationError.

    Encoded pictures go through the one decoder (:func:`avatar.images.decode_image`), as uploads do.
    """
    if isinstance(image, (str, Path)):
        try:
            image = Path(image).read_bytes()
        except OSError as exc:
            raise PreparationError(f"cannot read the avatar image file ({exc.strerror}); upload a PNG or JPEG") from None
    if isinstance(image, (bytes, bytearray, memoryview)):
        try:
            img, _ = decode_image(bytes(image), max_bytes=_MAX_BYTES, max_side=max_side, min_side=32,
                                  what="avatar image")
        except ImageError as exc:
            raise PreparationError(str(exc)) from None
        image = rgb_array(img)
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
        raise PreparationError("the avatar image could not be read; upload a PNG or JPEG photo of one face")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.shape[2] == 4:
        image = image[:, :, :3]
    if image.shape[2] != 3:
        raise PreparationError("the avatar image could not be read; it must be an RGB picture")
    if max(image.shape[:2]) > max_side:
        raise PreparationError(
            f"the avatar image is {image.shape[1]}x{image.shape[0]} pixels, over the {max_side} pixel limit; "
            "upload a smaller picture"
        )
    if min(image.shape[:2]) < 32:
        raise PreparationError("the avatar image is too small to hold a face; upload a larger portrait")
    if image.dtype != np.uint8:
        if np.issubdtype(image.dtype, np.floating) and image.max() <= 1.0:
            image = image * 255.0
        image = np.clip(image, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image)


def face_python(settings: PortraitSettings) -> Path:
    """The face venv's interpreter, or EngineError telling the operator how to set it up."""
    py = settings.face_venv / "bin" / "python"
    if not py.exists():
        raise EngineError(
            f"the face-landmark tools are not set up (no {py}); run scripts/setup_face.sh once, "
            "then prepare the avatar again"
        )
    return py


def detect_faces(rgb: np.ndarray, settings: PortraitSettings) -> tuple[list[np.ndarray], list[list[float]]]:
    """Run mediapipe face mesh in the face venv; return (478x3 landmark arrays, detector boxes)."""
    py = face_python(settings)
    with tempfile.TemporaryDirectory(prefix="portrait-prep-") as tmp:
        src, dst = Path(tmp) / "in.png", Path(tmp) / "out.json"
        cv2.imwrite(str(src), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        proc = subprocess.run(
            [str(py), str(_TOOL), str(src), str(dst)], capture_output=True, text=True, timeout=120
        )
        if proc.returncode != 0 or not dst.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise EngineError(
                "face landmark detection failed to run; re-run scripts/setup_face.sh (" + " | ".join(tail) + ")"
            )
        data = json.loads(dst.read_text())
    faces = [np.asarray(f, np.float32) for f in data["faces"]]
    return faces, data["boxes"]


def prepare(image: Any, out_dir: Path | str, **settings: Any) -> dict[str, Any]:
    """Prepare one portrait (photo or cartoon) for the engine; write the rig into ``out_dir``.

    Raises PreparationError (one sentence) for: an unreadable or oversized image, no face,
    several faces, or a face smaller than ``min_face_px``. Returns the metadata it stored.
    """
    s = PortraitSettings.from_kwargs(**settings)
    rgb = load_image(image, s.max_image_side)
    t0 = time.perf_counter()
    faces, boxes = detect_faces(rgb, s)
    n = max(len(faces), len(boxes))
    if n > 1:
        raise PreparationError(
            f"{n} faces were found in the avatar image; upload a portrait with exactly one person"
        )
    if not faces:
        raise PreparationError("no face was found in the avatar image; upload a clear, front-facing portrait")
    lm = faces[0]
    face_w = float(np.linalg.norm(lm[L.FACE_RIGHT, :2] - lm[L.FACE_LEFT, :2]))
    if face_w < s.min_face_px:
        raise PreparationError(
            f"the face in the avatar image is too small, only {face_w:.0f} pixels wide (at least {s.min_face_px} needed); "
            "upload a closer or larger portrait"
        )
    meta = prepare_with_landmarks(rgb, lm, out_dir, source="upload")
    meta["prepare_s"] = round(time.perf_counter() - t0, 3)
    (Path(out_dir) / "meta.json").write_text(json.dumps(meta, indent=2))
    logger.info("prepared portrait avatar in %s (face %d px)", out_dir, face_w)
    return meta


def _region_color(rgb: np.ndarray, poly: np.ndarray, hole: np.ndarray | None = None) -> list[float]:
    mask = np.zeros(rgb.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 255)
    if hole is not None:
        cv2.fillPoly(mask, [np.round(hole).astype(np.int32)], 0)
    px = rgb[mask > 0]
    if len(px) == 0:
        return [150.0, 80.0, 80.0]
    return [float(v) for v in np.median(px, axis=0)]


def prepare_with_landmarks(rgb: np.ndarray, lm: np.ndarray, out_dir: Path | str, source: str) -> dict[str, Any]:
    """Write the rig folder from an image and its face-mesh landmarks (no mediapipe needed)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lm = np.asarray(lm, np.float32).copy()
    scale = min(1.0, STORE_MAX_SIDE / max(rgb.shape[:2]))
    if scale < 1.0:
        rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        lm *= scale
    lips = _region_color(rgb, lm[L.LIPS_OUTER, :2], lm[L.LIPS_INNER, :2])
    cheeks = np.concatenate([lm[L.CHEEK_A], lm[L.CHEEK_B]])
    skin = _region_color(rgb, lm[L.CHEEK_A, :2]) if len(cheeks) else [200.0, 160.0, 140.0]
    lum = float(np.dot(skin, [0.299, 0.587, 0.114]))
    # Teeth a little below white, dimmed for dark photos so they do not glow.
    k = float(np.clip(0.55 + lum / 400.0, 0.6, 1.0))
    teeth = [235 * k, 228 * k, 212 * k]
    cv2.imwrite(str(out / "portrait.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    np.save(out / "landmarks.npy", lm)
    x0, y0 = lm[:, :2].min(0)
    x1, y1 = lm[:, :2].max(0)
    meta = {
        "engine": "portrait",
        "rig_version": RIG_VERSION,
        "source": source,
        "image_size": [int(rgb.shape[1]), int(rgb.shape[0])],
        "face_box": [round(float(v), 1) for v in (x0, y0, x1, y1)],
        "lip_rgb": [round(v, 1) for v in lips],
        "skin_rgb": [round(v, 1) for v in skin],
        "teeth_rgb": [round(v, 1) for v in teeth],
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta


def default_avatar_dir(settings: PortraitSettings) -> Path:
    """The built-in avatar (skimage's public-domain astronaut photo), prepared once and cached.

    Its landmarks ship in ``assets/`` (made by this module's own preparation), so the
    default avatar works even where the face venv is not installed.
    """
    out = settings.cache_dir / f"astronaut-v{RIG_VERSION}"
    meta = out / "meta.json"
    if meta.exists() and (out / "landmarks.npy").exists() and (out / "portrait.png").exists():
        return out
    from skimage import data

    rgb = data.astronaut()
    asset = Path(__file__).with_name("assets") / "astronaut_landmarks.json"
    lm = np.asarray(json.loads(asset.read_text())["landmarks"], np.float32)
    tmp = out.with_name(out.name + f".tmp{id(settings)}")
    prepare_with_landmarks(rgb, lm, tmp, source="builtin:astronaut")
    try:
        tmp.replace(out)
    except OSError:  # another process finished first; use its folder
        pass
    return out


if __name__ == "__main__":  # python -m avatar.engines.portrait.prepare IMAGE OUT_DIR
    print(json.dumps(prepare(Path(sys.argv[1]), Path(sys.argv[2])), indent=2))
