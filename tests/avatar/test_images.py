"""One picture decoder: an upload and an engine's preparation see the same upright pixels."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from admin.images import PortraitError, load_portrait
from avatar.engines.base import PreparationError
from avatar.engines.portrait.prepare import load_image


def _phone_jpeg() -> bytes:
    """A 200x120 (w x h) JPEG stored sideways with EXIF orientation 6 (rotate 90° clockwise to view)."""
    img = Image.new("RGB", (200, 120), (200, 30, 30))
    img.paste((30, 30, 200), (0, 0, 100, 120))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    return buf.getvalue()


def test_upload_and_preparation_apply_the_same_orientation():
    data = _phone_jpeg()
    uploaded = load_portrait(data, max_bytes=1 << 20, max_pixels=10_000_000, min_side=64).rgb
    prepared = load_image(data)
    assert uploaded.shape == prepared.shape == (200, 120, 3)  # upright: taller than wide
    assert np.array_equal(uploaded, prepared)
    assert prepared[10, 60, 2] > 150 and prepared[190, 60, 0] > 150  # blue on top after the rotation


def test_transparency_is_flattened_onto_white_in_both():
    img = Image.new("RGBA", (80, 80), (0, 0, 0, 0))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    assert load_portrait(buf.getvalue(), max_bytes=1 << 20, max_pixels=10_000_000, min_side=64).rgb.min() == 255
    assert load_image(buf.getvalue()).min() == 255


@pytest.mark.parametrize("data", [b"GIF89a" + b"\0" * 64, b"\xff\xd8\xff" + b"\0" * 64])
def test_the_same_refusal_reaches_both_as_one_sentence(data):
    with pytest.raises(PortraitError) as upload:
        load_portrait(data, max_bytes=1 << 20, max_pixels=10_000_000, min_side=64)
    with pytest.raises(PreparationError) as prep:
        load_image(data)
    assert str(upload.value).replace("portrait", "X") == str(prep.value).replace("avatar image", "X")
    assert "\n" not in str(prep.value)
