"""Benchmark one streaming chunk, stage by stage (not a test).

    python -m avatar.engines.flashtalk.bench --tiny --device cpu --chunks 5
    python -m avatar.engines.flashtalk.bench --full-size --device cuda --chunks 5 [--compile]
    python -m avatar.engines.flashtalk.bench --checkpoint DIR --avatar AVATAR_DIR --device cuda

Stages: audio encode, each DiT step, VAE decode, colour match, motion re-encode; then the
chunk's total and frames/s (new frames / chunk time; real time needs >= fps). The first chunk
is reported apart (warm-up, compilation). ``--full-size`` builds the real 14B architecture
(and the full VAE and wav2vec2-base) with random bf16 weights, so per-chunk time at 768x448
can be measured on a GPU without the checkpoint. On CUDA the peak GPU memory is printed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from .avatar_file import AvatarFeatures, load_avatar
from .pipeline import FlashTalkPipeline, StageTimer
from .settings import FlashTalkSettings


def _random_init_(module: torch.nn.Module, std: float = 0.02) -> None:
    """Fast random weights in place (norm weights 1, biases 0), on whatever device the module is."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif p.dim() == 1 or name.endswith(
                ("gamma", "norm_q.weight", "norm_k.weight", "norm_k_img.weight")
            ):
                p.fill_(1.0)
            else:
                p.normal_(0.0, std)


def random_pipeline(
    settings: FlashTalkSettings, dit_config=None, vae_config=None, wav2vec_config=None
) -> tuple[FlashTalkPipeline, AvatarFeatures]:
    """A pipeline with random weights and random avatar features of the right shapes.

    The defaults are the official architecture (``--full-size``): the 14B DiT in the engine's
    dtype, the Wan2.1 VAE and wav2vec2-base (12 x 768). Tests pass tiny configs to run this path on CPU.
    """
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    from .audio import AudioEncoder
    from .modeling_dit import DiTConfig, FlashTalkDiT, RoPE3D
    from .modeling_vae import VAEConfig, WanVAE

    device, dtype = settings.torch_device(), settings.torch_dtype()
    cfg = dit_config or DiTConfig()
    with torch.device("meta"):
        dit = FlashTalkDiT(cfg)
    # cast on the meta device first: materialising 18.9 B fp32 parameters would need 75 GB
    dit = dit.to(dtype).to_empty(device=device)
    dit.rope = RoPE3D(cfg.head_dim)
    _random_init_(dit)
    vae = (
        WanVAE(vae_config or VAEConfig()).to(device=device).eval()
    )  # fp32 weights, autocast to vae_dtype

    # random wav2vec2 saved to a temp folder, so the real loader and feature extractor run
    tmp = Path(tempfile.mkdtemp(prefix="flashtalk-bench-"))
    Wav2Vec2Model(wav2vec_config or Wav2Vec2Config()).save_pretrained(str(tmp))
    Wav2Vec2FeatureExtractor(
        do_normalize=True, return_attention_mask=False
    ).save_pretrained(str(tmp))
    audio = AudioEncoder(tmp, device=str(device), dtype=torch.float32, fps=settings.fps)

    pipe = FlashTalkPipeline(settings, dit=dit.eval(), vae=vae, audio_encoder=audio)
    stride = vae.spatial_stride
    h, w = settings.height // stride, settings.width // stride
    t_lat = 1 + (settings.frame_num - 1) // vae.temporal_stride
    feats = AvatarFeatures(
        text=torch.randn(30, cfg.text_dim), clip=torch.randn(cfg.clip_tokens, cfg.clip_dim),
        y=torch.cat([torch.zeros(4, t_lat, h, w), torch.randn(cfg.out_dim, t_lat, h, w)]),
        motion=torch.randn(cfg.out_dim, 1, h, w), reference=torch.rand(3, settings.height, settings.width) * 2 - 1,
        width=settings.width, height=settings.height, frame_num=settings.frame_num, fps=settings.fps, prompt="bench",
    )  # fmt: skip
    return pipe, feats


def dit_flops_per_step(cfg, latent_frames: int, lat_h: int, lat_w: int) -> float:
    """Matmul FLOPs of one DiT forward (multiply-add = 2), for planning; norms and RoPE are ignored."""
    pt, ph, pw = cfg.patch_size
    n_t = latent_frames // pt
    L = n_t * (lat_h // ph) * (lat_w // pw)  # visual tokens
    d, ctx = cfg.dim, cfg.clip_tokens + cfg.text_len
    per_block = (
        2 * L * d * d * 4  # self-attn q, k, v, o
        + 2 * 2 * L * L * d  # self-attn scores and values
        + 2 * L * d * d * 2 + 2 * ctx * d * d * 4 + 2 * 2 * L * ctx * d  # text/image cross-attn
        + 2 * L * d * d * 2 + 2 * n_t * cfg.context_tokens * cfg.output_dim * 2 * d  # audio cross-attn
        + 2 * 2 * L * cfg.context_tokens * d
        + 2 * L * d * cfg.ffn_dim * 2  # FFN
    )  # fmt: skip
    return float(per_block * cfg.num_layers + 2 * L * cfg.in_dim * pt * ph * pw * d)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Time FlashTalk's streaming chunk, stage by stage."
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--tiny",
        action="store_true",
        help="a tiny random checkpoint (built in a temp folder)",
    )
    which.add_argument(
        "--full-size",
        action="store_true",
        help="the real 14B architecture, random bf16 weights (GPU)",
    )
    which.add_argument("--checkpoint", help="a real checkpoint folder (needs --avatar)")
    p.add_argument("--avatar", help="prepared avatar folder (with --checkpoint)")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    p.add_argument(
        "--vae-dtype",
        default="auto",
        help="auto (bf16 autocast on CUDA, as upstream), float32 or bfloat16",
    )
    p.add_argument("--chunks", type=int, default=3)
    p.add_argument("--width", type=int)
    p.add_argument("--height", type=int)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--attention", default="auto")
    a = p.parse_args(argv)

    common = {"device": a.device, "dtype": a.dtype, "vae_dtype": a.vae_dtype, "steps": a.steps, "compile": a.compile,
              "attention": a.attention, "threads": a.threads}  # fmt: skip
    if a.full_size:
        s = FlashTalkSettings.from_kwargs(
            width=a.width or 448, height=a.height or 768, **common
        )
        if s.torch_device().type != "cuda":
            print(
                "--full-size builds the 14B model (about 38 GB in bf16, about 1.9 PFLOP per chunk): far too big for a CPU. "
                "Run it with --device cuda on a GPU with 80 GB, or use --tiny here.",
                file=sys.stderr,
            )
            return 2
        pipe, feats = random_pipeline(s)
    elif a.tiny:
        from .tiny import build_tiny_checkpoint

        folder = Path(tempfile.mkdtemp(prefix="flashtalk-tiny-"))
        width, height = a.width or 64, a.height or 64
        tiny = build_tiny_checkpoint(folder, width=width, height=height)
        tiny.update(
            {
                k: v
                for k, v in common.items()
                if v not in (None, "auto", 0) or k == "steps"
            }
        )
        if a.threads:
            tiny["threads"] = a.threads
        s = FlashTalkSettings.from_kwargs(**tiny)
        pipe, feats = FlashTalkPipeline(s), load_avatar(tiny["default_avatar"])
    else:
        if not a.avatar:
            p.error(
                "--checkpoint needs --avatar (a folder made by avatar.engines.flashtalk.prepare)"
            )
        feats = load_avatar(a.avatar)
        s = FlashTalkSettings.from_kwargs(
            checkpoint_dir=a.checkpoint,
            width=feats.width,
            height=feats.height,
            frame_num=feats.frame_num,
            **common,
        )
        pipe = FlashTalkPipeline(s)

    stream = pipe.open_stream(feats)
    lat = pipe.latent_frames
    flops = dit_flops_per_step(pipe.dit.config, lat, s.height // 8, s.width // 8)
    rng = np.random.default_rng(0)
    dev = pipe.device
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    print(
        f"flashtalk bench: {s.width}x{s.height}, frame_num {s.frame_num}, {s.chunk_frames} new frames/chunk, "
        f"{s.steps} steps, device {dev}, dtype {pipe.dtype}, threads {torch.get_num_threads()}, compile {s.compile}"
    )
    totals: list[float] = []
    per_stage: dict[str, list[float]] = {}
    for i in range(a.chunks):
        audio = (0.1 * rng.standard_normal(stream.samples_per_chunk)).astype(np.float32)
        stream.timer = StageTimer(dev)
        t0 = time.perf_counter()
        frames = stream.push(audio)
        total = time.perf_counter() - t0
        assert len(frames) == s.chunk_frames
        times = stream.timer.times
        line = " ".join(
            f"{k}={'/'.join(f'{x * 1000:.1f}' for x in v)}ms" for k, v in times.items()
        )
        tag = "warm-up" if i == 0 and a.chunks > 1 else f"chunk {i}"
        print(
            f"  {tag}: total {total * 1000:.1f} ms, {s.chunk_frames / total:.1f} frames/s | {line}"
        )
        if i > 0 or a.chunks == 1:
            totals.append(total)
            for k, v in times.items():
                per_stage.setdefault(k, []).append(sum(v) / len(v))
    mean = statistics.mean(totals)
    print("summary (mean over measured chunks):")
    for k, v in per_stage.items():
        n = s.steps if k == "dit_step" else 1
        print(
            f"  {k:14s} {statistics.mean(v) * 1000:9.1f} ms"
            + (f" per step x {n}" if n > 1 else "")
        )
    print(
        f"  chunk          {mean * 1000:9.1f} ms for {s.chunk_frames} frames = {s.chunk_frames / mean:.1f} frames/s "
        f"(real time: {s.fps} frames/s, {s.chunk_frames / s.fps * 1000:.0f} ms of audio per chunk)"
    )
    dit_mean = statistics.mean(per_stage.get("dit_step", [float("nan")]))
    print(
        f"  DiT: {flops / 1e12:.3g} TFLOP per step (matmuls, estimated), "
        f"{flops * s.steps / 1e12:.3g} TFLOP per chunk; achieved {flops / dit_mean / 1e12:.3g} TFLOP/s"
    )
    if dev.type == "cuda":
        print(
            f"  peak GPU memory {torch.cuda.max_memory_allocated(dev) / 2**30:.2f} GiB allocated, "
            f"{torch.cuda.max_memory_reserved(dev) / 2**30:.2f} GiB reserved"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
