"""Portrait upload checks: the one picture decoder (:mod:`avatar.images`: content sniffing, size
and pixel limits, decompression-bomb guard, EXIF orientation) and the stored PNG. The face check
is the engine's preparation step (a task)."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np

from avatar.images import ImageError, decode_image, rgb_array, sniff

__all__ = ["Portrait", "PortraitError", "load_portrait", "sniff"]


class PortraitError(ValueError):
    """A portrait the API refuses, with one sentence saying what to do."""


@dataclass
class Portrait:
    """A validated portrait: upright RGB pixels and the normalised PNG bytes."""

    rgb: np.ndarray
    png: bytes
    sha256: str
    width: int
    height: int
    format: str


def load_portrait(data: bytes, *, max_bytes: int, max_pixels: int, min_side: int) -> Portrait:
    """Validate an uploaded portrait and return it upright, RGB, re-encoded as PNG."""
    try:
        img, fmt = decode_image(data, max_bytes=max_bytes, max_pixels=max_pixels, min_side=min_side, what="portrait")
    except ImageError as exc:
        raise PortraitError(str(exc)) from None
    buf = io.BytesIO()
    img.save(buf, format="PNG")  # re-encoding also drops EXIF metadata (location, device)
    png = buf.getvalue()
    return Portrait(
        rgb=rgb_array(img), png=png, sha256=hashlib.sha256(png).hexdigest(),
        width=img.size[0], height=img.size[1], format=fmt,
    )
