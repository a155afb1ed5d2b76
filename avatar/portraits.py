"""The built-in default portrait: a public-domain NASA photo shipped with scikit-image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Portrait:
    """An RGB image and where the mouth is (pixel centre and half-width), at the render size."""

    image: np.ndarray
    mouth_center: tuple[int, int]  # (x, y)
    mouth_half_width: int


def default_portrait(width: int = 512, height: int = 512) -> Portrait:
    """Eileen Collins' official NASA portrait (skimage.data.astronaut), cropped to the head."""
    from PIL import Image
    from skimage import data

    src = data.astronaut()
    # Head-and-shoulders crop; the mouth sits at about (223, 145) in the 512x512 original.
    x0, y0, x1, y1 = 98, 10, 348, 260
    crop = Image.fromarray(src[y0:y1, x0:x1]).resize((width, height), Image.Resampling.LANCZOS)
    sx, sy = width / (x1 - x0), height / (y1 - y0)
    return Portrait(
        image=np.asarray(crop, dtype=np.uint8).copy(),
        mouth_center=(round((223 - x0) * sx), round((146 - y0) * sy)),
        mouth_half_width=round(17 * sx),
    )
