"""Strict loading in the official layouts: DiT shards + index, VAE/umT5/CLIP .pth files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from avatar.engines.base import EngineError
from avatar.engines.flashtalk.checkpoint import DIT_INDEX
from avatar.engines.flashtalk.modeling_clip import CLIP_FILE, CLIPVisual
from avatar.engines.flashtalk.modeling_dit import DiTConfig, FlashTalkDiT
from avatar.engines.flashtalk.modeling_t5 import T5_FILE, UMT5Encoder
from avatar.engines.flashtalk.modeling_vae import WanVAE
from avatar.engines.flashtalk.tiny import tiny_dit_config

# The official config.json's fields (values of the 14B release); the rest must default.
OFFICIAL_CONFIG = {
    "_class_name": "WanModel", "_diffusers_version": "0.31.0", "model_type": "i2v", "text_len": 512, "in_dim": 36,
    "dim": 5120, "ffn_dim": 13824, "freq_dim": 256, "out_dim": 16, "num_heads": 40, "num_layers": 40, "eps": 1e-06,
    "audio_window": 5, "intermediate_dim": 512, "output_dim": 768, "context_tokens": 32, "vae_scale": 4,
    "norm_input_visual": True, "norm_output_audio": True,
}  # fmt: skip


def _save_tiny_dit(folder: Path, max_shard_bytes: int = 30_000) -> FlashTalkDiT:
    torch.manual_seed(0)
    model = FlashTalkDiT(tiny_dit_config())
    model.save_pretrained(folder, max_shard_bytes=max_shard_bytes)
    return model


def test_dit_sharded_round_trip(tmp_path):
    model = _save_tiny_dit(tmp_path)
    index = json.loads((tmp_path / DIT_INDEX).read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1
    assert (
        shards[0] == f"diffusion_pytorch_model-00001-of-{len(shards):05d}.safetensors"
    )
    assert set(index["weight_map"]) == set(model.state_dict())
    loaded = FlashTalkDiT.from_pretrained(tmp_path)
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    assert loaded.config == model.config


def test_dit_official_key_names_and_full_size_shapes():
    with torch.device("meta"):
        model = FlashTalkDiT(DiTConfig.from_dict(OFFICIAL_CONFIG))
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = {
        "patch_embedding.weight": (5120, 36, 1, 2, 2),
        "text_embedding.0.weight": (5120, 4096),
        "text_embedding.2.weight": (5120, 5120),
        "time_embedding.0.weight": (5120, 256),
        "time_projection.1.weight": (30720, 5120),
        "img_emb.proj.0.weight": (1280,),
        "img_emb.proj.1.weight": (1280, 1280),
        "img_emb.proj.3.weight": (5120, 1280),
        "img_emb.proj.4.bias": (5120,),
        "audio_proj.proj1.weight": (512, 46080),
        "audio_proj.proj1_vf.weight": (512, 73728),
        "audio_proj.proj2.weight": (512, 512),
        "audio_proj.proj3.weight": (32 * 768, 512),
        "audio_proj.norm.weight": (768,),
        "blocks.39.modulation": (1, 6, 5120),
        "blocks.0.self_attn.norm_q.weight": (5120,),
        "blocks.0.cross_attn.k_img.weight": (5120, 5120),
        "blocks.0.cross_attn.norm_k_img.weight": (5120,),
        "blocks.0.norm3.bias": (5120,),
        "blocks.0.ffn.0.weight": (13824, 5120),
        "blocks.0.ffn.2.weight": (5120, 13824),
        "blocks.0.audio_cross_attn.q_linear.bias": (5120,),
        "blocks.0.audio_cross_attn.kv_linear.weight": (10240, 768),
        "blocks.0.audio_cross_attn.proj.weight": (5120, 5120),
        "blocks.0.norm_x.weight": (5120,),
        "head.head.weight": (64, 5120),
        "head.modulation": (1, 2, 5120),
    }
    for k, shape in expected.items():
        assert shapes[k] == shape, k
    assert not any(
        ".norm1." in k or ".norm2." in k or "freqs" in k or "rope" in k for k in shapes
    )
    n = sum(p.numel() for p in model.parameters())
    assert 18.8e9 < n < 19.0e9  # "about 18.9 B parameters"


def test_dit_config_defaults_what_the_official_file_lacks():
    cfg = DiTConfig.from_dict(OFFICIAL_CONFIG)
    assert (cfg.text_dim, cfg.patch_size, cfg.qk_norm, cfg.cross_attn_norm) == (
        4096,
        (1, 2, 2),
        True,
        True,
    )
    assert (cfg.clip_dim, cfg.clip_tokens, cfg.audio_blocks, cfg.audio_channels) == (
        1280,
        257,
        12,
        768,
    )
    with pytest.raises(EngineError, match="i2v"):
        DiTConfig.from_dict({**OFFICIAL_CONFIG, "model_type": "t2v"})


def test_dit_wrong_shape_is_named(tmp_path):
    _save_tiny_dit(tmp_path)
    index = json.loads((tmp_path / DIT_INDEX).read_text())
    key = "blocks.1.audio_cross_attn.kv_linear.weight"
    shard = tmp_path / index["weight_map"][key]
    state = load_file(str(shard))
    state[key] = torch.zeros(3, 3)
    save_file(state, str(shard))
    with pytest.raises(EngineError) as err:
        FlashTalkDiT.from_pretrained(tmp_path)
    assert key in str(err.value) and "shape mismatch" in str(err.value)


def test_dit_missing_and_unexpected_keys_are_named(tmp_path):
    _save_tiny_dit(tmp_path)
    index = json.loads((tmp_path / DIT_INDEX).read_text())
    gone, extra = "head.modulation", "blocks.0.audio_cross_attn.q_norm.weight"
    shard_name = index["weight_map"].pop(gone)
    state = load_file(str(tmp_path / shard_name))
    del state[gone]
    state[extra] = torch.ones(16)
    index["weight_map"][extra] = shard_name
    save_file(state, str(tmp_path / shard_name))
    (tmp_path / DIT_INDEX).write_text(json.dumps(index))
    with pytest.raises(EngineError) as err:
        FlashTalkDiT.from_pretrained(tmp_path)
    msg = str(err.value)
    assert f"missing keys: {gone}" in msg and f"unexpected keys: {extra}" in msg


def test_dit_missing_shard_and_files(tmp_path):
    _save_tiny_dit(tmp_path)
    next(tmp_path.glob("diffusion_pytorch_model-00002-*.safetensors")).unlink()
    with pytest.raises(EngineError, match="00002"):
        FlashTalkDiT.from_pretrained(tmp_path)
    with pytest.raises(EngineError, match="config.json"):
        FlashTalkDiT.from_pretrained(tmp_path / "nowhere")


def test_vae_pth_official_names_and_strict_load(tiny_ckpt, tmp_path):
    path = Path(tiny_ckpt["checkpoint_dir"]) / "Wan2.1_VAE.pth"
    vae = WanVAE.from_pth(path)
    keys = set(vae.state_dict())
    for k in ("encoder.conv1.weight", "encoder.downsamples.0.residual.0.gamma", "encoder.middle.1.to_qkv.weight",
              "encoder.head.2.weight", "conv1.weight", "conv2.bias", "decoder.upsamples.2.resample.1.weight",
              "decoder.upsamples.2.time_conv.weight", "decoder.head.0.gamma"):  # fmt: skip
        assert k in keys, k
    state = torch.load(path, weights_only=True)
    state["encoder.conv1.weight"] = state["encoder.conv1.weight"][:1]
    bad = tmp_path / "Wan2.1_VAE.pth"
    torch.save(state, bad)
    (tmp_path / "vae_config.json").write_text(
        (path.parent / "vae_config.json").read_text()
    )
    with pytest.raises(EngineError, match="encoder.conv1.weight"):
        WanVAE.from_pth(bad)
    with torch.device("meta"):
        full = WanVAE()
    assert (
        126e6 < sum(p.numel() for p in full.parameters()) < 128e6
    )  # Wan2.1_VAE.pth: ~127 M parameters


def test_t5_and_clip_pth_load(tiny_ckpt, tmp_path):
    ckpt = Path(tiny_ckpt["checkpoint_dir"])
    t5 = UMT5Encoder.from_pth(ckpt / T5_FILE)
    assert (
        "blocks.1.pos_embedding.embedding.weight" in t5.state_dict()
    )  # umT5: a table per layer
    clip = CLIPVisual.from_pth(ckpt / CLIP_FILE)
    assert "visual.transformer.0.attn.to_qkv.weight" in clip.state_dict()
    # the text tower's keys are skipped, anything else unexpected is not
    state = torch.load(ckpt / CLIP_FILE, weights_only=True)
    state["textual.token_embedding.weight"] = torch.zeros(4, 4)
    state["visual.extra"] = torch.zeros(1)
    torch.save(state, tmp_path / CLIP_FILE)
    (tmp_path / "clip_config.json").write_text((ckpt / "clip_config.json").read_text())
    with pytest.raises(EngineError, match="unexpected keys: visual.extra"):
        CLIPVisual.from_pth(tmp_path / CLIP_FILE)
    with torch.device("meta"):
        full_t5, full_clip = UMT5Encoder(), CLIPVisual()
    assert (
        5.6e9 < sum(p.numel() for p in full_t5.parameters()) < 5.8e9
    )  # umT5-XXL encoder, ~11 GB bf16
    assert full_clip.state_dict()["visual.pos_embedding"].shape == (1, 257, 1280)
