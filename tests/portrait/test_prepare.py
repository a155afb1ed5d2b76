"""Once-per-avatar preparation: good portraits give a rig folder; bad images get one clear error."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import avatar.engines.portrait as portrait_pkg
from avatar.engines import PreparationError, prepare_avatar
from avatar.engines.portrait import prepare, samples

from .conftest import needs_face_venv


@needs_face_venv
def test_photo_prepares_to_a_rig_folder(tmp_path):
    meta = prepare_avatar("portrait", samples.photo(), tmp_path)  # through the registry, as the worker does
    assert meta["engine"] == "portrait" and meta["image_size"] == [512, 512]
    assert {p.name for p in tmp_path.iterdir()} >= {"portrait.png", "landmarks.npy", "meta.json"}
    assert np.load(tmp_path / "landmarks.npy").shape == (478, 3)
    assert json.loads((tmp_path / "meta.json").read_text())["rig_version"] == meta["rig_version"]
    # The shipped landmarks of the built-in avatar are what preparation finds today.
    asset = Path(portrait_pkg.__file__).with_name("assets") / "astronaut_landmarks.json"
    shipped = np.asarray(json.loads(asset.read_text())["landmarks"])
    assert np.abs(np.load(tmp_path / "landmarks.npy")[:, :2] - shipped[:, :2]).max() < 3.0


@needs_face_venv
def test_cartoon_prepares_too(cartoon_dir):
    assert (cartoon_dir / "meta.json").exists()


def _png(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


@needs_face_venv
@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: np.full((400, 400, 3), 128, np.uint8), "no face"),
        (lambda: np.concatenate([samples.photo(), samples.photo()], axis=1), "2 faces"),
        (lambda: cv2.resize(samples.photo(), (160, 160), interpolation=cv2.INTER_AREA), "too small"),
    ],
    ids=["no-face", "several-faces", "face-too-small"],
)
def test_bad_portraits_are_rejected_with_one_sentence(tmp_path, make, message):
    with pytest.raises(PreparationError, match=message) as err:
        prepare(_png(make()), tmp_path)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "meta.json").exists()


@needs_face_venv
def test_small_face_message_names_the_size(tmp_path):
    small = cv2.resize(samples.photo(), (160, 160), interpolation=cv2.INTER_AREA)
    with pytest.raises(PreparationError, match=r"only \d+ pixels wide \(at least 80 needed\)"):
        prepare(small, tmp_path)


@pytest.mark.parametrize(
    "image, message",
    [
        (b"this is not an image", "not a JPEG, PNG or WebP"),
        (b"", "not a JPEG, PNG or WebP"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "could not be decoded"),
        (np.zeros((10, 10), np.float64)[None], "could not be read"),
        (np.zeros((5000, 300, 3), np.uint8), "over the 4096 pixel limit"),
    ],
    ids=["garbage-bytes", "empty-bytes", "truncated-png", "bad-array", "oversized"],
)
def test_unreadable_or_oversized_images_are_rejected(tmp_path, image, message):
    with pytest.raises(PreparationError, match=message):
        prepare(image, tmp_path)


def test_oversized_encoded_image_is_rejected(tmp_path):
    big = _png(np.zeros((4200, 64, 3), np.uint8))
    with pytest.raises(PreparationError, match="pixel limit"):
        prepare(big, tmp_path)
