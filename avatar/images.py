"""The one decoder of uploaded pictures, for the admin's upload route and the engines' preparation.

Content sniffing (the declared type is ignored), a byte limit, a pixel limit read from the header
before any pixel is decoded (decompression bombs), EXIF orientation applied (phones store
rotation there), transparency flattened onto white. Every refusal is one sentence that says
what to do.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps

# Magic numbers of the formats we accept.
_SIGNATURES: list[tuple[bytes, int, str]] = [
    (b"\xff\xd8\xff", 0, "JPEG"),
    (b"\x89PNG\r\n\x1a\n", 0, "PNG"),
    (b"WEBP", 8, "WEBP"),
]


class ImageError(ValueError):
    """A picture that is refused, with one sentence saying what to do."""


def sniff(data: bytes) -> str | None:
    """The image format from its first bytes, or None."""
    for magic, offset, name in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic and (name != "WEBP" or data[:4] == b"RIFF"):
            return name
    return None


def decode_image(
    data: bytes,
    *,
    max_bytes: int,
    min_side: int,
    max_pixels: int | None = None,
    max_side: int | None = None,
    what: str = "picture",
) -> tuple[Image.Image, str]:
    """``data`` decoded upright as an RGB PIL image, with its format; or :class:`ImageError`."""
    if len(data) > max_bytes:
        raise ImageError(f"The {what} is larger than {max_bytes // (1024 * 1024)} MB; upload a smaller file.")
    fmt = sniff(data)
    if fmt is None:
        raise ImageError("The file is not a JPEG, PNG or WebP image; upload a photo in one of those formats.")

    def check_size(w: int, h: int) -> None:
        if max_pixels is not None and w * h > max_pixels:
            raise ImageError(
                f"The {what} has {w}x{h} pixels, more than the {max_pixels // 1_000_000} megapixel limit; resize it."
            )
        if max_side is not None and max(w, h) > max_side:
            raise ImageError(f"The {what} is {w}x{h} pixels, over the {max_side} pixel limit; upload a smaller picture.")

    try:
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x its limit; make every excess an error.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=[fmt])
            check_size(*img.size)  # the header's size, before any pixel is decoded
            img.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        limit = f"the {max_pixels // 1_000_000} megapixel limit" if max_pixels else "this server accepts"
        raise ImageError(f"The {what} declares more pixels than {limit}; resize it.") from None
    except Exception:
        raise ImageError("The image could not be decoded; it may be truncated or corrupt.") from None
    img = ImageOps.exif_transpose(img)
    check_size(*img.size)
    if min(img.size) < min_side:
        raise ImageError(f"The {what} is {img.size[0]}x{img.size[1]}; it must be at least {min_side} pixels on each side.")
    if img.mode != "RGB":
        background = Image.new("RGB", img.size, (255, 255, 255))
        rgba = img.convert("RGBA")
        background.paste(rgba, mask=rgba.getchannel("A"))
        img = background
    return img, fmt


def rgb_array(img: Image.Image) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))
