"""The pieces: VAE frame arithmetic, RoPE split, audio windows, sampler, colour match, audio encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from avatar.engines.flashtalk.audio import (
    AudioEncoder,
    frame_windows,
    loudness_normalize,
)
from avatar.engines.flashtalk.color import lab_to_rgb, match_colors, rgb_to_lab
from avatar.engines.flashtalk.modeling_dit import (
    FlashTalkDiT,
    group_audio_windows,
    rope_frequencies,
)
from avatar.engines.flashtalk.modeling_vae import WanVAE
from avatar.engines.flashtalk.sampler import sample, shifted_timesteps
from avatar.engines.flashtalk.tiny import tiny_dit_config, tiny_vae_config


def test_vae_frame_counts_and_causality():
    torch.manual_seed(0)
    vae = WanVAE(tiny_vae_config()).eval()
    video = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    z = vae.encode(video)
    assert z.shape == (1, 16, 3, 4, 4)  # 1 + (9-1)/4 latent frames, stride 8
    assert (
        vae.encode(video[:, :, -5:]).shape[2] == 2
    )  # motion: 5 frames -> 2 latent frames
    assert (
        vae.encode(video[:, :, :1]).shape[2] == 1
    )  # first motion: the reference alone
    out = vae.decode(z)
    assert out.shape == (1, 3, 9, 32, 32) and out.abs().max() <= 1
    # causal: the first latent frame does not depend on later frames
    video2 = video.clone()
    video2[:, :, 5:] = 0
    assert torch.allclose(vae.encode(video2)[:, :, 0], z[:, :, 0], atol=1e-5)
    with pytest.raises(ValueError):
        vae.encode(video[:, :, :4])


def test_rope_split_matches_official_head_dim():
    angles, split = rope_frequencies(128)
    assert [2 * s for s in split] == [44, 42, 42] and angles.shape == (1024, 64)


def test_audio_window_grouping():
    # value = video frame index * 10 + window entry, so the selection can be read back
    n_t, w = 3, 5
    frames = 1 + 4 * (n_t - 1)
    a = torch.arange(frames)[:, None] * 10 + torch.arange(w)[None]
    audio = a[None, :, :, None, None].float()  # [1, 9, 5, 1, 1]
    first, later = group_audio_windows(audio, vae_scale=4, audio_window=5)
    assert first.shape == (1, 1, 5, 1, 1) and later.shape == (1, 2, 8, 1, 1)
    got = later[0, 0, :, 0, 0].tolist()
    assert got == [
        10,
        11,
        12,
        22,
        32,
        42,
        43,
        44,
    ]  # frame 1: 0..2; frames 2,3: centre; frame 4: 2..4


def test_frame_windows_clamp_without_look_ahead():
    feats = torch.arange(10).float()[:, None, None]
    win = frame_windows(feats, 7, 10)
    assert win.shape == (1, 3, 5, 1, 1)
    assert win[0, :, :, 0, 0].tolist() == [
        [5, 6, 7, 8, 9],
        [6, 7, 8, 9, 9],
        [7, 8, 9, 9, 9],
    ]
    assert frame_windows(feats, 0, 1)[0, 0, :, 0, 0].tolist() == [0, 0, 0, 1, 2]


def test_sampler_timesteps_and_motion_overwrite():
    ts = shifted_timesteps(4, 5.0)
    assert [round(t * 1000, 1) for t in ts] == [1000.0, 937.5, 833.3, 625.0, 0.0]
    seen = []

    def model(x, t):
        seen.append(float(t[0]))
        return torch.zeros_like(x)

    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(1, 2, 3, 2, 2, generator=gen)
    motion = torch.full((1, 2, 1, 2, 2), 7.0)
    out = sample(model, noise, gen, steps=4, shift=5.0, motion=motion)
    assert [round(t, 1) for t in seen] == [1000.0, 937.5, 833.3, 625.0]
    assert torch.equal(out[:, :, :1], motion)
    # zero velocity: x0 = x_t, the last step returns x0 of the last re-noised latent (fresh noise, not ODE)
    assert not torch.allclose(out[:, :, 1:], noise[:, :, 1:])


def test_sampler_deterministic_under_seed():
    def model(x, t):
        return 0.1 * x

    def run(seed):
        gen = torch.Generator().manual_seed(seed)
        return sample(model, torch.randn(1, 2, 3, 2, 2, generator=gen), gen)

    assert torch.equal(run(1), run(1)) and not torch.equal(run(1), run(2))


def test_lab_conversion_matches_skimage():
    from skimage import color

    rgb = np.random.default_rng(0).random((16, 16, 3))
    lab = rgb_to_lab(torch.from_numpy(rgb)).numpy()
    assert np.allclose(
        lab, color.rgb2lab(rgb), atol=0.05
    )  # upstream's constants differ from skimage's in the 5th digit
    assert np.allclose(lab_to_rgb(torch.from_numpy(lab)).numpy(), rgb, atol=1e-3)


def test_color_matching_on_and_off():
    gen = torch.Generator().manual_seed(0)
    frames = torch.rand(4, 3, 16, 16, generator=gen) * 0.5 - 0.5  # dark, bluish-grey
    ref = torch.rand(3, 16, 16, generator=gen) * 0.6 + 0.2
    assert torch.equal(match_colors(frames, ref, 0.0), frames)  # off: untouched
    out = match_colors(frames, ref, 1.0)
    ref_lab = rgb_to_lab(((ref + 1) / 2).permute(1, 2, 0)).mean(dim=(0, 1))
    out_lab = rgb_to_lab(((out + 1) / 2).permute(0, 2, 3, 1)).mean(dim=(1, 2))
    before = rgb_to_lab(((frames + 1) / 2).permute(0, 2, 3, 1)).mean(dim=(1, 2))
    assert (out_lab - ref_lab).abs().max() < 3.0 < (before - ref_lab).abs().max()
    half = match_colors(frames, ref, 0.5)
    assert torch.allclose(half, 0.5 * frames + 0.5 * out, atol=1e-5)


def test_audio_encoder_shapes_and_loudness(tiny_ckpt):
    enc = AudioEncoder(Path(tiny_ckpt["wav2vec_dir"]))
    audio = 0.05 * np.random.default_rng(0).standard_normal(16000 * 2).astype(
        np.float32
    )
    feats = enc.encode(audio)
    assert feats.shape == (
        50,
        2,
        16,
    )  # 2 s at 25 fps, hidden_states[1:] of 2 layers, width 16
    silence = np.zeros(16000, np.float32)
    assert np.array_equal(loudness_normalize(silence), silence)  # silence is left alone
    import pyloudnorm as pyln

    loud = loudness_normalize(audio)
    assert (
        abs(pyln.Meter(16000).integrated_loudness(loud.astype(np.float64)) + 23.0) < 0.5
    )


def test_dit_forward_shapes():
    torch.manual_seed(0)
    cfg = tiny_dit_config()
    dit = FlashTalkDiT(cfg).eval()
    t_lat, h, w = 3, 4, 6
    x = torch.randn(1, 16, t_lat, h, w)
    y = torch.randn(1, 20, t_lat, h, w)
    audio = torch.randn(1, 1 + 4 * (t_lat - 1), 5, cfg.audio_blocks, cfg.audio_channels)
    text = [torch.randn(7, cfg.text_dim)]
    clip = torch.randn(1, cfg.clip_tokens, cfg.clip_dim)
    with torch.no_grad():
        out = dit(x, torch.tensor([937.5]), y, audio, text=text, clip_fea=clip)
        ctx = dit.embed_context(text, clip)
        again = dit(x, torch.tensor([937.5]), y, audio, context=ctx)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert ctx.shape == (1, cfg.clip_tokens + cfg.text_len, cfg.dim)
    assert torch.allclose(out, again)


def test_t5_padding_is_masked_and_bucketed_positions():
    from avatar.engines.flashtalk.modeling_t5 import T5Config, UMT5Encoder

    torch.manual_seed(0)
    t5 = UMT5Encoder(
        T5Config(vocab=50, dim=16, dim_attn=16, dim_ffn=32, num_heads=2, num_layers=2)
    ).eval()
    ids = torch.randint(0, 50, (1, 10))
    mask = torch.ones(1, 10, dtype=torch.long)
    mask[:, 6:] = 0
    other = ids.clone()
    other[:, 6:] = (ids[:, 6:] + 7) % 50  # different padding content
    with torch.no_grad():
        a, b = t5(ids, mask), t5(other, mask)
    assert torch.allclose(a[:, :6], b[:, :6], atol=1e-5)
    bias = t5.blocks[0].pos_embedding(10, 10)
    assert bias.shape == (1, 2, 10, 10)


def test_attention_function_matches_naive():
    from avatar.engines.flashtalk.attention import attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 5, 3, 8, generator=g) for _ in range(3))
    bias = torch.randn(1, 3, 5, 5, generator=g)
    naive = torch.einsum("bqhd,bkhd->bhqk", q, k) / 8**0.5
    want = torch.einsum("bhqk,bkhd->bqhd", naive.softmax(-1), v)
    assert torch.allclose(attention(q, k, v), want, atol=1e-5)
    biased = (torch.einsum("bqhd,bkhd->bhqk", q, k) + bias).softmax(-1)
    assert torch.allclose(
        attention(q, k, v, bias=bias, scale=1.0),
        torch.einsum("bhqk,bkhd->bqhd", biased, v),
        atol=1e-5,
    )


def test_dit_bf16_matches_fp32():
    import copy

    torch.manual_seed(0)
    cfg = tiny_dit_config()
    dit = FlashTalkDiT(cfg).eval()
    half = copy.deepcopy(dit).to(torch.bfloat16)
    x, y = torch.randn(1, 16, 3, 4, 4), torch.randn(1, 20, 3, 4, 4)
    audio = torch.randn(1, 9, 5, cfg.audio_blocks, cfg.audio_channels)
    text, clip = (
        [torch.randn(7, cfg.text_dim)],
        torch.randn(1, cfg.clip_tokens, cfg.clip_dim),
    )
    with torch.no_grad():
        ref = dit(x, torch.tensor([625.0]), y, audio, text=text, clip_fea=clip)
        out = half(x, torch.tensor([625.0]), y, audio, text=text, clip_fea=clip)
    assert out.dtype == torch.float32
    assert (out - ref).norm() / ref.norm() < 0.05
