"""Per-avatar preparation and its file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avatar.engines import prepare_avatar
from avatar.engines.base import PreparationError
from avatar.engines.flashtalk.avatar_file import (
    AVATAR_FILE,
    AvatarFeatures,
    load_avatar,
    save_avatar,
)
from avatar.engines.flashtalk.preparation import reference_frame
from avatar.engines.flashtalk.tiny import synthetic_face


def test_avatar_file_round_trip(tmp_path):
    g = torch.Generator().manual_seed(0)
    feats = AvatarFeatures(
        text=torch.randn(7, 16, generator=g), clip=torch.randn(5, 16, generator=g), y=torch.randn(20, 9, 8, 8, generator=g),
        motion=torch.randn(16, 1, 8, 8, generator=g), reference=torch.rand(3, 64, 64, generator=g) * 2 - 1,
        width=64, height=64, frame_num=33, fps=25, prompt="A person is talking, \"quoted\".",
    )  # fmt: skip
    save_avatar(feats, tmp_path)
    back = load_avatar(tmp_path)
    for k in ("text", "clip", "y", "motion", "reference"):
        assert torch.equal(getattr(back, k), getattr(feats, k)), k
    assert (back.width, back.height, back.frame_num, back.fps, back.prompt) == (
        64,
        64,
        33,
        25,
        feats.prompt,
    )


def test_prepare_through_registry(tiny_ckpt, tmp_path):
    settings = {k: v for k, v in tiny_ckpt.items() if k != "default_avatar"}
    meta = prepare_avatar("flashtalk", synthetic_face(200, 300), tmp_path, **settings)
    assert meta["file"] == AVATAR_FILE and (tmp_path / AVATAR_FILE).is_file()
    a = load_avatar(tmp_path)
    assert a.y.shape == (20, 9, 8, 8) and a.motion.shape == (16, 1, 8, 8)
    assert (
        torch.equal(a.y[:4, 0], torch.ones(4, 8, 8)) and not a.y[:4, 1:].any()
    )  # mask: latent frame 0 only
    assert torch.allclose(
        a.y[4:, 0], a.motion[:, 0], atol=1e-5
    )  # both start with the reference's latent
    assert a.clip.shape == (5, 16) and a.reference.shape == (3, 64, 64)
    assert (
        a.text.shape[1] == 16 and 10 < a.text.shape[0] < 32
    )  # trimmed to the real token count


def test_reference_frame_cover_crop_and_bad_images():
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, 50:150] = 255  # a white centre band survives the centre crop
    ref = reference_frame(img, 64, 64)
    assert ref.shape == (3, 64, 64) and ref.min() >= -1 and ref.max() <= 1
    assert ref[:, :, 32].min() > 0.9
    with pytest.raises(PreparationError):
        reference_frame(np.zeros((100, 100), np.uint8), 64, 64)
    with pytest.raises(PreparationError):
        reference_frame(np.zeros((8, 8, 3), np.uint8), 64, 64)


def test_prepare_cli(tiny_ckpt, tmp_path, capsys):
    from PIL import Image

    from avatar.engines.flashtalk.preparation import main

    Image.fromarray(synthetic_face(120, 90)).save(tmp_path / "face.png")
    ckpt = tiny_ckpt["checkpoint_dir"]
    main(["--checkpoint", ckpt, "--image", str(tmp_path / "face.png"), "--out", str(tmp_path / "a"),
          "--width", "64", "--height", "64", "--device", "cpu"])  # fmt: skip
    assert load_avatar(tmp_path / "a").y.shape == (20, 9, 8, 8)
    assert "flashtalk_avatar.safetensors" in capsys.readouterr().out
