"""The VAE really runs in ``vae_dtype`` in the live loop, and the reference image is preprocessed as upstream."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avatar.engines import create_engine
from avatar.engines.flashtalk.modeling_vae import CausalConv3d
from avatar.engines.flashtalk.preparation import cover_geometry, reference_frame

SPF, CHUNK = 640, 28


def _record_conv_dtypes(module: torch.nn.Module, seen: list) -> list:
    """Forward hooks on every causal conv of ``module``: (input dtype, output dtype) per call."""
    return [
        m.register_forward_hook(lambda _m, inp, out: seen.append((inp[0].dtype, out.dtype)))
        for m in module.modules()
        if isinstance(m, CausalConv3d)
    ]


@pytest.mark.parametrize("vae_dtype, expected", [("bfloat16", torch.bfloat16), ("float32", torch.float32)])
def test_vae_runs_in_vae_dtype_inside_the_live_loop(tiny_ckpt, vae_dtype, expected):
    engine = create_engine("flashtalk", **{**tiny_ckpt, "vae_dtype": vae_dtype})
    pipe = engine.pipeline
    assert pipe.vae.decoder.conv1.weight.dtype == torch.float32  # weights stay fp32
    decode_seen: list = []
    encode_seen: list = []
    hooks = _record_conv_dtypes(pipe.vae.decoder, decode_seen) + _record_conv_dtypes(pipe.vae.encoder, encode_seen)
    try:
        session = engine.open_session(None)
        frames = session.generate(
            (0.1 * np.random.default_rng(0).standard_normal(CHUNK * SPF)).astype(np.float32), speaking=True
        )
    finally:
        for h in hooks:
            h.remove()
    assert len(frames) == CHUNK
    # the decode of the chunk and the motion encode both ran, every conv output in vae_dtype
    assert decode_seen and encode_seen
    assert {out for _, out in decode_seen} == {expected}
    assert {out for _, out in encode_seen} == {expected}
    # what leaves the VAE is fp32 (the motion latent carried to the next chunk)
    assert session.stream.motion.dtype == torch.float32


def test_cover_geometry_uses_ceil_and_rounded_centre():
    # 90x120 to 64x64: scale 64/90, height 85.33 -> 86 (ceil, not 85), crop top round(11.0) = 11
    assert cover_geometry(90, 120, 64, 64) == (64, 86, 0, 11)
    # a 720x1280 phone portrait to the official 448x768: 796.44 -> 797 rows, top round(14.5) = 14 (half to even)
    assert cover_geometry(720, 1280, 448, 768) == (448, 797, 0, 14)
    # odd margin 3: round(1.5) = 2 where a floor-centred crop takes 1
    assert cover_geometry(64, 67, 64, 64) == (64, 67, 0, 2)
    assert cover_geometry(448, 768, 448, 768) == (448, 768, 0, 0)


def test_reference_frame_is_bilinear_ceil_rounded_crop():
    from PIL import Image

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (120, 90, 3), dtype=np.uint8)
    ref = reference_frame(img, 64, 64)
    assert ref.shape == (3, 64, 64) and ref.dtype == torch.float32
    as_uint8 = ((ref + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    bilinear = np.asarray(Image.fromarray(img).resize((64, 86), Image.BILINEAR))[11:75]
    assert np.array_equal(as_uint8, bilinear)
    bicubic = np.asarray(Image.fromarray(img).resize((64, 86), Image.BICUBIC))[11:75]
    assert not np.array_equal(as_uint8, bicubic)

    # rows tagged by index: an image 3 rows too tall keeps rows 2..65 (rounded centre), not 1..64
    tagged = np.repeat(np.arange(67, dtype=np.uint8)[:, None, None] * 3, 64, axis=1).repeat(3, axis=2)
    rows = ((reference_frame(tagged, 64, 64)[0, :, 0] + 1) * 127.5).round().long()
    assert rows.tolist() == [3 * r for r in range(2, 66)]
    # normalisation as upstream: (x / 255 - 0.5) * 2, so 0 -> -1 and 255 -> 1 exactly
    flat = reference_frame(np.full((64, 64, 3), 255, np.uint8), 64, 64)
    assert torch.equal(flat, torch.ones_like(flat))
