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
    settings: FlashTalkSettings, dit_config=None, vae_config=None, wav2vec_config=None,
    *, sp=None, seed: int = 0,
) -> tuple[FlashTalkPipeline, AvatarFeatures]:  # fmt: skip
    """A pipeline with random weights and random avatar features of the right shapes.

    The defaults are the official architecture (``--full-size``): the 14B DiT in the engine's
    dtype, the Wan2.1 VAE and wav2vec2-base (12 x 768). Tests pass tiny configs to run this path on CPU.
    The DiT is built on the meta device, cast, then allocated on the target device and filled
    there: the 14B parameters never exist in host memory. ``seed`` makes every rank of a
    sequence-parallel group draw the same weights; follower ranks (``sp.rank > 0``) get no
    wav2vec2 and a VAE on the meta device (rank 0 alone runs them).
    """
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    from .audio import AudioEncoder
    from .modeling_dit import DiTConfig, FlashTalkDiT, RoPE3D
    from .modeling_vae import VAEConfig, WanVAE

    leader = sp is None or sp.rank == 0
    device, dtype = settings.torch_device(), settings.torch_dtype()
    cfg = dit_config or DiTConfig()
    torch.manual_seed(seed)
    with torch.device("meta"):
        dit = FlashTalkDiT(cfg)
    # cast on the meta device first: materialising 18.9 B fp32 parameters would need 75 GB
    dit = dit.to(dtype).to_empty(device=device)
    dit.rope = RoPE3D(cfg.head_dim)
    torch.manual_seed(seed)  # seeds every device: each rank draws the same weights on its GPU
    _random_init_(dit)
    if leader:
        vae = WanVAE(vae_config or VAEConfig()).to(device=device).eval()  # fp32 weights, autocast to vae_dtype
        # random wav2vec2 saved to a temp folder, so the real loader and feature extractor run
        tmp = Path(tempfile.mkdtemp(prefix="flashtalk-bench-"))
        Wav2Vec2Model(wav2vec_config or Wav2Vec2Config()).save_pretrained(str(tmp))
        Wav2Vec2FeatureExtractor(
            do_normalize=True, return_attention_mask=False
        ).save_pretrained(str(tmp))
        audio = AudioEncoder(tmp, device=str(device), dtype=torch.float32, fps=settings.fps)
    else:
        with torch.device("meta"):
            vae = WanVAE(vae_config or VAEConfig())
        audio = None

    pipe = FlashTalkPipeline(settings, dit=dit.eval(), vae=vae, audio_encoder=audio, sp=sp)
    return pipe, _bench_features(settings, pipe, seed)


def full_size_rank_pipeline(
    *, sp, device: str, settings: dict, seed: int = 0, configs: tuple | None = None
) -> FlashTalkPipeline:
    """Builder for every rank of ``--full-size`` with sequence parallelism (see :mod:`.launch`).

    ``configs`` (DiT, VAE, wav2vec2 configs) replaces the official sizes (tests)."""
    s = FlashTalkSettings.from_kwargs(**{**settings, "device": device})
    return random_pipeline(s, *(configs or ()), sp=sp, seed=seed)[0]


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


def _parse_ranks(text: str) -> list[int]:
    ranks = sorted({int(x) for x in text.split(",") if x.strip()})
    if not ranks or ranks[0] < 1:
        raise argparse.ArgumentTypeError("--ranks takes positive numbers, e.g. 1,2,4,8")
    return ranks


def run_chunks(stream, settings: FlashTalkSettings, chunks: int, device: torch.device) -> dict:
    """Render ``chunks`` chunks back to back, as fast as the engine takes them (each chunk's
    frames are finished while the next one renders when overlap_output is on); print one line
    per chunk; return the figures. A chunk's period is the time between its frames being ready
    and the previous chunk's: the throughput a live call gets when audio is not the bottleneck."""
    rng = np.random.default_rng(0)
    done_at: dict[int, float] = {}
    submitted = []
    t_start = time.perf_counter()
    for i in range(chunks):
        audio = (0.1 * rng.standard_normal(stream.samples_per_chunk)).astype(np.float32)
        timer = stream.timer = StageTimer(device)
        fut = stream.submit(audio)
        fut.add_done_callback(lambda _f, i=i: done_at.__setitem__(i, time.perf_counter()))
        submitted.append((fut, timer))
    rows = []
    for fut, _timer in submitted:
        assert len(fut.result()) == settings.chunk_frames
    for i, (_fut, timer) in enumerate(submitted):
        period = done_at[i] - (done_at[i - 1] if i else t_start)
        rows.append((i, timer, period))
        line = " ".join(
            f"{k}={'/'.join(f'{x * 1000:.1f}' for x in v)}ms" for k, v in timer.times.items()
        )
        tag = "warm-up" if i == 0 and chunks > 1 else f"chunk {i}"
        print(
            f"    {tag}: critical path {timer.critical() * 1000:.1f} ms, "
            f"period {period * 1000:.1f} ms ({settings.chunk_frames / period:.1f} frames/s) | {line}"
        )
    measured = [r for r in rows if r[0] > 0] or rows
    stages: dict[str, list[float]] = {}
    for _, t, _ in measured:
        for k, v in t.times.items():
            stages.setdefault(k, []).append(sum(v) / len(v))
    return {
        "period": statistics.mean(r[2] for r in measured),
        "critical": statistics.mean(r[1].critical() for r in measured),
        "stages": {k: statistics.mean(v) for k, v in stages.items()},
    }


def report(figures: dict, s: FlashTalkSettings, ranks: int, flops: float, device: torch.device) -> None:
    audio_s = s.chunk_frames / s.fps
    print(f"  summary, {ranks} rank(s) (mean over measured chunks):")
    for k, v in figures["stages"].items():
        print(f"    {k:14s} {v * 1000:9.1f} ms" + (f" per step x {s.steps}" if k == "dit_step" else "")
              + ("   (off the critical path)" if k == "finish" and s.overlap_output else ""))  # fmt: skip
    period, critical = figures["period"], figures["critical"]
    print(
        f"    critical path  {critical * 1000:9.1f} ms per chunk (audio + {s.steps} DiT steps + VAE decode + "
        f"tail colour + motion encode)"
    )
    print(
        f"    chunk period   {period * 1000:9.1f} ms for {s.chunk_frames} frames = {s.chunk_frames / period:.1f} frames/s; "
        f"real-time factor {period / audio_s:.2f} (chunk time / {audio_s * 1000:.0f} ms of audio; <= 1 is real time)"
    )
    dit = figures["stages"].get("dit_step")
    if dit:
        print(
            f"    DiT: {flops / 1e12:.3g} TFLOP per step (matmuls, estimated), {flops * s.steps / 1e12:.3g} TFLOP per chunk; "
            f"achieved {flops / dit / 1e12:.3g} TFLOP/s in all, {flops / dit / ranks / 1e12:.3g} per rank"
        )
    if device.type == "cuda":
        print(
            f"    peak GPU memory (rank 0: DiT + VAE + wav2vec2) {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB "
            f"allocated, {torch.cuda.max_memory_reserved(device) / 2**30:.2f} GiB reserved"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Time FlashTalk's streaming chunk, stage by stage, on 1 or more ranks."
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
    p.add_argument(
        "--ranks", type=_parse_ranks, default=None,
        help="sequence-parallel sizes to measure, e.g. 1,2,4,8 (default: 1,2,4,8 with --full-size, else 1); "
        "on GPUs one rank per GPU, sizes above the GPU count are skipped",
    )  # fmt: skip
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
    p.add_argument("--no-overlap", action="store_true", help="finish each chunk's frames before the next starts")
    p.add_argument("--fp8", action="store_true", help="FP8 weights for the DiT's linear layers (torchao, GPU)")
    a = p.parse_args(argv)

    common = {"device": a.device, "dtype": a.dtype, "vae_dtype": a.vae_dtype, "steps": a.steps, "compile": a.compile,
              "attention": a.attention, "overlap_output": not a.no_overlap, "fp8": a.fp8}  # fmt: skip
    if a.threads:
        common["threads"] = a.threads
    ranks_list = a.ranks or ([1, 2, 4, 8] if a.full_size else [1])
    if a.full_size:
        s = FlashTalkSettings.from_kwargs(
            width=a.width or 448, height=a.height or 768, **common
        )
        if a.device == "cpu" or not torch.cuda.is_available():
            print(
                "--full-size builds the 14B model (about 38 GB in bf16, about 1.9 PFLOP per chunk): far too big for a CPU. "
                "Run it with --device cuda on a GPU with 80 GB, or use --tiny here. No GPU is visible: nothing measured.",
                file=sys.stderr,
            )
            return 2
        have = torch.cuda.device_count()
        runnable = [n for n in ranks_list if n <= have]
        for n in ranks_list:
            if n > have:
                print(f"{n} ranks: skipped, only {have} GPU(s) visible (CUDA_VISIBLE_DEVICES)")
        if not runnable:
            print(f"none of --ranks {ranks_list} fits on {have} GPU(s): nothing measured", file=sys.stderr)
            return 2
        ranks_list = runnable
    elif a.tiny:
        from .tiny import build_tiny_checkpoint

        folder = Path(tempfile.mkdtemp(prefix="flashtalk-tiny-"))
        width, height = a.width or 64, a.height or 64
        # 4 heads, so that 2 and 4 ranks split them evenly (Ulysses)
        tiny = build_tiny_checkpoint(folder, width=width, height=height, dit_overrides={"num_heads": 4})
        tiny.update({k: v for k, v in common.items() if v not in (None, "auto", 0) or k in ("steps", "overlap_output")})
        s = FlashTalkSettings.from_kwargs(**tiny)
    else:
        if not a.avatar:
            p.error(
                "--checkpoint needs --avatar (a folder made by avatar.engines.flashtalk.prepare)"
            )
        feats0 = load_avatar(a.avatar)
        s = FlashTalkSettings.from_kwargs(
            checkpoint_dir=a.checkpoint, width=feats0.width, height=feats0.height, frame_num=feats0.frame_num, **common,
        )  # fmt: skip

    results = {}
    for n in ranks_list:
        sn = s.model_copy(update={"sequence_parallel": n})
        engine = None
        if a.full_size:
            if n == 1:  # FP8 (if asked) is switched on after a reference chunk: see compare_fp8
                pipe, feats = random_pipeline(sn.model_copy(update={"fp8": False}))
                stream = pipe.open_stream(feats)
            else:
                from .engine import ParallelFlashTalkEngine

                engine = ParallelFlashTalkEngine(
                    sn, builder="avatar.engines.flashtalk.bench:full_size_rank_pipeline",
                    builder_kwargs={"settings": sn.model_dump()},
                )  # fmt: skip
                pipe = engine.pipeline
                feats = _bench_features(sn, pipe)
                stream = engine.open_avatar(feats).stream
        else:
            from .engine import create_engine

            engine = create_engine(**sn.model_dump())
            pipe = engine.pipeline
            feats = load_avatar(tiny["default_avatar"]) if a.tiny else feats0
            stream = engine.open_avatar(feats).stream
        dev = pipe.device
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        lat = pipe.latent_frames
        flops = dit_flops_per_step(pipe.dit.config, lat, s.height // 8, s.width // 8)
        print(
            f"flashtalk bench: {n} rank(s), {s.width}x{s.height}, frame_num {s.frame_num}, {s.chunk_frames} new frames/chunk, "
            f"{s.steps} steps, device {dev}, dtype {pipe.dtype}, vae {pipe.vae_dtype}, threads {torch.get_num_threads()}, "
            f"compile {s.compile}, overlap_output {s.overlap_output}, fp8 {pipe.fp8}"
        )
        if a.fp8 and n == 1 and engine is None:
            compare_fp8(pipe, feats)
        results[n] = run_chunks(stream, s, a.chunks, dev)
        report(results[n], s, n, flops, dev)
        stream = pipe = None
        if engine is not None:
            engine.close()
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    if len(results) > 1:
        print("scaling (chunk period, real-time factor):")
        base = results[min(results)]["period"]
        for n, r in results.items():
            print(f"  {n} rank(s): {r['period'] * 1000:8.1f} ms, RTF {r['period'] / (s.chunk_frames / s.fps):.2f}, "
                  f"speed-up {base / r['period']:.2f}x")  # fmt: skip
    return 0


def compare_fp8(pipe: FlashTalkPipeline, feats: AvatarFeatures) -> None:
    """One chunk in the DiT's own dtype, then the same chunk (same seed and audio) with FP8 linears."""
    audio = (0.1 * np.random.default_rng(1).standard_normal(pipe.settings.chunk_frames * pipe.settings.samples_per_frame))
    audio = audio.astype(np.float32)
    if pipe.fp8:
        print("  fp8: already on, no reference run (start without fp8 to compare)")
        return
    ref = pipe.open_stream(feats).submit(audio, raw=True).result()
    why = pipe.enable_fp8()
    if why:
        print(f"  fp8: not used: {why}")
        return
    got = pipe.open_stream(feats).submit(audio, raw=True).result()
    err = (got - ref).abs()
    mse = float(((got - ref) / 2).pow(2).mean())
    psnr = float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)
    print(f"  fp8 vs {pipe.dtype} frames (one chunk, [-1, 1] scale): max abs {err.max():.4f}, mean abs {err.mean():.5f}, "
          f"PSNR {psnr:.1f} dB")  # fmt: skip


def _bench_features(s: FlashTalkSettings, pipe: FlashTalkPipeline, seed: int = 0) -> AvatarFeatures:
    """Random avatar features for the full-size parallel run (rank 0 sends them to the others)."""
    cfg = pipe.dit.config
    stride = pipe.vae.spatial_stride
    h, w = s.height // stride, s.width // stride
    t_lat = pipe.latent_frames
    g = torch.Generator().manual_seed(seed)
    return AvatarFeatures(
        text=torch.randn(30, cfg.text_dim, generator=g), clip=torch.randn(cfg.clip_tokens, cfg.clip_dim, generator=g),
        y=torch.cat([torch.zeros(4, t_lat, h, w), torch.randn(cfg.out_dim, t_lat, h, w, generator=g)]),
        motion=torch.randn(cfg.out_dim, 1, h, w, generator=g),
        reference=torch.rand(3, s.height, s.width, generator=g) * 2 - 1,
        width=s.width, height=s.height, frame_num=s.frame_num, fps=s.fps, prompt="bench",
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
