"""Build a complete tiny random-weight FlashTalk checkpoint in the official file layout.

    python -m avatar.engines.flashtalk.tiny --out DIR [--width 64 --height 64]

Writes (sizes are tiny, names are official):

    DIR/config.json, diffusion_pytorch_model.safetensors.index.json, diffusion_pytorch_model-0000N-of-0000M.safetensors
    DIR/Wan2.1_VAE.pth (+ vae_config.json: the tiny sizes; the official file needs none)
    DIR/models_t5_umt5-xxl-enc-bf16.pth (+ t5_config.json) and DIR/google/umt5-xxl/ tokenizer
    DIR/models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth (+ clip_config.json) and DIR/xlm-roberta-large/
    DIR/chinese-wav2vec2-base/ (transformers Wav2Vec2Model + feature extractor)
    DIR/avatar/flashtalk_avatar.safetensors  (a prepared synthetic face, the engine's default avatar)
    DIR/engine_settings.json                 (settings to pass to create_engine)

and prints the avatar worker's environment for it (AVATAR_ENGINE, AVATAR_WIDTH/HEIGHT,
AVATAR_ENGINE_OPTIONS: the worker passes width and height itself, the rest as options).

Used by the tests and to run the engine inside the avatar worker on CPU. The frames are
meaningless (random weights); what is real is every code path and file format.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from .modeling_clip import CLIP_FILE, CLIPVisionConfig, CLIPVisual
from .modeling_dit import DiTConfig, FlashTalkDiT
from .modeling_t5 import T5_FILE, T5_TOKENIZER_DIR, T5Config, UMT5Encoder
from .modeling_vae import VAEConfig, WanVAE
from .settings import DEFAULT_PROMPT

WAV2VEC_DIR = "chinese-wav2vec2-base"

TINY_T5 = {"dim": 16, "dim_attn": 16, "dim_ffn": 32, "num_heads": 2, "num_layers": 2, "num_buckets": 32, "shared_pos": False,
           "text_len": 32}  # fmt: skip
TINY_CLIP = CLIPVisionConfig(
    image_size=28,
    patch_size=14,
    dim=16,
    mlp_ratio=2,
    out_dim=8,
    num_heads=2,
    num_layers=3,
)
TINY_WAV2VEC_LAYERS, TINY_WAV2VEC_WIDTH = 2, 16


def tiny_dit_config(**overrides) -> DiTConfig:
    """A DiT small enough for CPU tests that still has every part of the 14B one."""
    cfg = {
        "text_len": 32, "dim": 32, "ffn_dim": 64, "freq_dim": 32, "num_heads": 2, "num_layers": 2, "intermediate_dim": 16,
        "output_dim": 16, "context_tokens": 4, "text_dim": TINY_T5["dim"], "clip_dim": TINY_CLIP.dim,
        "clip_tokens": (TINY_CLIP.image_size // TINY_CLIP.patch_size) ** 2 + 1,
        "audio_blocks": TINY_WAV2VEC_LAYERS, "audio_channels": TINY_WAV2VEC_WIDTH,
    }  # fmt: skip
    cfg.update(overrides)
    return DiTConfig(**cfg)


def tiny_vae_config() -> VAEConfig:
    return VAEConfig(dim=4, num_res_blocks=1)


def _word_tokenizer(
    words: list[str], specials: dict[str, str], folder: Path, eos: str | None
) -> int:
    """A word-level fast tokenizer built offline; returns the vocab size."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {}
    for tok in list(specials.values()) + sorted(set(words)):
        vocab.setdefault(tok, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=specials["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    if eos:
        tok.post_processor = processors.TemplateProcessing(
            single=f"$A {eos}", special_tokens=[(eos, vocab[eos])]
        )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **specials)
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(folder))
    return len(vocab)


def _tiny_wav2vec(folder: Path, seed: int) -> None:
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(seed)
    cfg = Wav2Vec2Config(
        hidden_size=TINY_WAV2VEC_WIDTH, num_hidden_layers=TINY_WAV2VEC_LAYERS, num_attention_heads=2, intermediate_size=32,
        conv_dim=(16,) * 7, num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=4, feat_extract_norm="group",
        do_stable_layer_norm=False, vocab_size=8,
    )  # fmt: skip
    Wav2Vec2Model(cfg).eval().save_pretrained(str(folder))
    Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=16000,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=False,
    ).save_pretrained(str(folder))


def synthetic_face(width: int = 256, height: int = 256) -> np.ndarray:
    """A drawn 'face' (RGB uint8) for tests and the default tiny avatar."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.zeros((height, width, 3), np.float32)
    img[:] = (40, 90, 160)
    cx, cy, r = width / 2, height / 2, min(width, height) * 0.35
    face = ((xx - cx) / r) ** 2 + ((yy - cy) / (1.25 * r)) ** 2 < 1
    img[face] = (230, 190, 160)
    for ex in (cx - r * 0.4, cx + r * 0.4):
        img[((xx - ex) ** 2 + (yy - (cy - r * 0.3)) ** 2) < (r * 0.1) ** 2] = (
            30,
            30,
            30,
        )
    img[(np.abs(yy - (cy + r * 0.5)) < r * 0.06) & (np.abs(xx - cx) < r * 0.35)] = (
        150,
        40,
        40,
    )
    return img.astype(np.uint8)


def build_tiny_checkpoint(
    out: str | Path,
    *,
    width: int = 64,
    height: int = 64,
    frame_num: int = 33,
    seed: int = 0,
    max_shard_bytes: int = 40_000,
    with_avatar: bool = True,
    dit_overrides: dict | None = None,
) -> dict:
    """Write a full tiny checkpoint folder into ``out``; returns the engine settings for it."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)

    words = DEFAULT_PROMPT.replace(".", " ").replace(",", " ").split() + [".", ","]
    vocab = _word_tokenizer(
        words,
        {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"},
        out / T5_TOKENIZER_DIR,
        "</s>",
    )
    _word_tokenizer(
        words,
        {
            "bos_token": "<s>",
            "pad_token": "<pad>",
            "eos_token": "</s>",
            "unk_token": "<unk>",
        },
        out / "xlm-roberta-large",
        "</s>",
    )
    UMT5Encoder(T5Config(vocab=vocab, **TINY_T5)).save_pth(out / T5_FILE)
    CLIPVisual(TINY_CLIP).save_pth(
        out / CLIP_FILE, extra={"log_scale": torch.tensor(2.6593)}
    )
    WanVAE(tiny_vae_config()).save_pth(out / "Wan2.1_VAE.pth")

    dit = FlashTalkDiT(tiny_dit_config(**(dit_overrides or {})))
    with torch.no_grad():
        for p in (
            dit.parameters()
        ):  # random but tame: keep activations O(1) through the blocks
            p.mul_(0.5)
    dit.save_pretrained(out, max_shard_bytes=max_shard_bytes)
    _tiny_wav2vec(out / WAV2VEC_DIR, seed)

    settings = {
        "checkpoint_dir": str(out), "wav2vec_dir": str(out / WAV2VEC_DIR), "device": "cpu", "dtype": "float32",
        "width": width, "height": height, "frame_num": frame_num, "motion_frames": 5,
        "threads": 1,  # tiny ops: one intra-op thread beats two on a busy 2-core machine
    }  # fmt: skip
    if with_avatar:
        from .preparation import prepare

        prepare(synthetic_face(), out / "avatar", **settings)
        settings["default_avatar"] = str(out / "avatar")
    (out / "engine_settings.json").write_text(json.dumps(settings, indent=2))
    return settings


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description="Write a tiny random-weight FlashTalk checkpoint (official layout)."
    )
    p.add_argument("--out", required=True)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    settings = build_tiny_checkpoint(a.out, width=a.width, height=a.height, seed=a.seed)
    print(json.dumps(settings, indent=2))
    options = {k: v for k, v in settings.items() if k not in ("width", "height")}
    print("\navatar worker environment for this tiny engine:")
    print(
        f"AVATAR_ENGINE=flashtalk AVATAR_WIDTH={a.width} AVATAR_HEIGHT={a.height} "
        f"AVATAR_ENGINE_OPTIONS='{json.dumps(options)}'"
    )


if __name__ == "__main__":
    main()
