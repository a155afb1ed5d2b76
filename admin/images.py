"""Portrait upload checks: content sniffing, size and pixel limits, decompression-bomb
guard, EXIF orientation. The face check is the engine's preparation step (a task)."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

# Magic numbers of the formats we accept; the declared content type is ignored.
_SIGNATURES: list[tuple[bytes, int, str]] = [
    (b"\xff\xd8\xff", 0, "JPEG"),
    (b"\x89PNG\r\n\x1a\n", 0, "PNG"),
    (b"WEBP", 8, "WEBP"),
]


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


def sniff(data: bytes) -> str | None:
    """The image format from its first bytes, or None."""
    for magic, offset, name in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic and (name != "WEBP" or data[:4] == b"RIFF"):
            return name
    return None


def load_portrait(data: bytes, *, max_bytes: int, max_pixels: int, min_side: int) -> Portrait:
    """Validate an uploaded portrait and return it upright, RGB, re-encoded as PNG."""
    if len(data) > max_bytes:
        raise PortraitError(f"The portrait is larger than {max_bytes // (1024 * 1024)} MB; upload a smaller file.")
    fmt = sniff(data)
    if fmt is None:
        raise PortraitError("The file is not a JPEG, PNG or WebP image; upload a photo in one of those formats.")
    try:
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x its limit; make every excess an error.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=[fmt])
            # The header gives the size before any pixel is decoded: refuse bombs here.
            w, h = img.size
            if w * h > max_pixels:
                raise PortraitError(
                    f"The portrait has {w}x{h} pixels, more than the {max_pixels // 1_000_000} megapixel limit; resize it."
                )
            img.load()
    except PortraitError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PortraitError(
            f"The portrait declares more pixels than the {max_pixels // 1_000_000} megapixel limit; resize it."
        ) from None
    except Exception:
        raise PortraitError("The image could not be decoded; it may be truncated or corrupt.") from None
    img = ImageOps.exif_transpose(img)  # phones store rotation in EXIF; engines need upright pixels
    if min(img.size) < min_side:
        raise PortraitError(f"The portrait is {img.size[0]}x{img.size[1]}; it must be at least {min_side} pixels on each side.")
    if img.mode != "RGB":
        background = Image.new("RGB", img.size, (255, 255, 255))
        rgba = img.convert("RGBA")
        background.paste(rgba, mask=rgba.getchannel("A"))
        img = background
    buf = io.BytesIO()
    img.save(buf, format="PNG")  # re-encoding also drops EXIF metadata (location, device)
    png = buf.getvalue()
    return Portrait(
        rgb=np.asarray(img, dtype=np.uint8), png=png, sha256=hashlib.sha256(png).hexdigest(),
        width=img.size[0], height=img.size[1], format=fmt,
    )
