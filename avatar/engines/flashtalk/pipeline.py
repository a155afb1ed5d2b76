"""The streaming loop: models loaded once (:class:`FlashTalkPipeline`), one :class:`FlashTalkStream` per call.

Per chunk (official numbers: frame_num 33, motion_frames 5, 28 new frames = 1.12 s of audio):

1. the 8 s audio ring buffer takes the chunk's 17,920 new samples;
2. the whole buffer is loudness-normalised and encoded; the last 33 frames get their +-2 windows
   (the newest frames clamp: no look-ahead);
3. fresh noise [16, 9, h, w]; the motion latent overwrites the first latent frame(s); 4 sampler steps;
4. VAE decode -> 33 frames; Lab colour match to the reference; motion = VAE.encode(last 5 frames);
5. frames 5..32 are emitted: 28 frames aligned 1:1 with the 28 new audio frames.

State carried between chunks: the motion latent and the noise generator only. The first chunk
is aligned too (the ring buffer starts silent, so its first 5 frames stand for silence), so
video never leads audio.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext

import numpy as np
import torch

from ..base import EngineError
from . import attention as attention_mod
from .audio import AudioEncoder, frame_windows
from .avatar_file import AvatarFeatures
from .color import match_colors
from .modeling_dit import FlashTalkDiT
from .modeling_vae import WanVAE
from .sampler import sample
from .settings import FlashTalkSettings

logger = logging.getLogger("avatar.engines.flashtalk")

STAGES = ("audio_encode", "dit_step", "vae_decode", "color_match", "motion_encode")


class StageTimer:
    """Wall time per stage (synchronising CUDA so GPU work is counted where it happens)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.times: dict[str, list[float]] = {}
        self._t = 0.0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def start(self) -> None:
        self._sync()
        self._t = time.perf_counter()

    def stop(self, stage: str) -> None:
        self._sync()
        now = time.perf_counter()
        self.times.setdefault(stage, []).append(now - self._t)
        self._t = now


class FlashTalkPipeline:
    """The live models: DiT, VAE and audio encoder (no umT5, no CLIP), loaded once per worker."""

    def __init__(
        self,
        settings: FlashTalkSettings,
        *,
        dit: FlashTalkDiT | None = None,
        vae: WanVAE | None = None,
        audio_encoder: AudioEncoder | None = None,
    ) -> None:
        self.settings = s = settings
        self.device = s.torch_device()
        self.dtype = s.torch_dtype()
        attention_mod.BACKEND = s.attention
        if s.threads > 0:
            torch.set_num_threads(s.threads)  # process-wide: only set when asked
        if dit is None or vae is None:
            ckpt = s.require_checkpoint()
        t0 = time.perf_counter()
        self.dit = (
            dit
            if dit is not None
            else FlashTalkDiT.from_pretrained(
                ckpt, dtype=self.dtype, device=self.device
            )
        )
        # fp32 weights; vae_dtype (bf16 on GPU by default) is applied through autocast, as upstream
        self.vae_dtype = s.torch_dtype(s.vae_dtype)
        self.vae = (
            vae
            if vae is not None
            else WanVAE.from_pth(
                ckpt / "Wan2.1_VAE.pth", dtype=torch.float32, device=self.device
            )
        )
        # wav2vec2 is small and runs in fp32 upstream, whatever the DiT's dtype
        self.audio = (
            audio_encoder
            if audio_encoder is not None
            else AudioEncoder(
                s.wav2vec_path(),
                device=str(self.device),
                dtype=torch.float32,
                fps=s.fps,
            )
        )
        cfg = self.dit.config
        if (cfg.audio_blocks, cfg.audio_channels) != (
            self.audio.num_layers,
            self.audio.width,
        ):
            raise EngineError(
                f"the DiT expects wav2vec2 features of {cfg.audio_blocks} layers x {cfg.audio_channels}, but wav2vec_dir "
                f"has {self.audio.num_layers} x {self.audio.width}; use chinese-wav2vec2-base."
            )
        self._dit_forward: Callable = self.dit
        self._vae_decode: Callable = self.vae.decode
        if s.compile:
            self._dit_forward = torch.compile(self.dit)
            self._vae_decode = torch.compile(self.vae.decode)
        self._silence_features: torch.Tensor | None = None
        self._silence_lock = threading.Lock()
        # every call starts on a silent buffer: encode it now, not in the first chunk of the first call
        self.encode_audio(
            np.zeros(
                round(s.audio_buffer_seconds * s.fps) * s.samples_per_frame, np.float32
            )
        )
        logger.info(
            "flashtalk: models ready on %s/%s in %.1fs",
            self.device,
            self.dtype,
            time.perf_counter() - t0,
        )

    @property
    def latent_frames(self) -> int:
        return 1 + (self.settings.frame_num - 1) // self.vae.temporal_stride

    def vae_autocast(self):
        """The VAE keeps fp32 weights and runs under autocast to ``vae_dtype`` (Wan's VAE wrapper does the same)."""
        if self.vae_dtype == torch.float32:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.vae_dtype)

    def encode_audio(self, ring: np.ndarray) -> torch.Tensor:
        """Ring buffer -> features [T_buffer, layers, width]; an all-silent buffer is encoded once and reused."""
        if not ring.any():
            with self._silence_lock:
                if self._silence_features is None or self._silence_features.shape[
                    0
                ] != int(len(ring) / self.settings.sample_rate * self.settings.fps):
                    self._silence_features = self.audio.encode(
                        ring, normalize=self.settings.loudness_norm
                    )
                return self._silence_features
        return self.audio.encode(ring, normalize=self.settings.loudness_norm)

    def open_stream(self, avatar: AvatarFeatures) -> FlashTalkStream:
        """Start one call's stream for a prepared avatar."""
        return FlashTalkStream(self, avatar)


class FlashTalkStream:
    """One call: feed 16 kHz PCM in any sizes, get RGB uint8 frames in order.

    Not thread-safe for concurrent feeding; :meth:`clear_buffer` may be called from another
    thread and takes effect between chunks.
    """

    def __init__(self, pipe: FlashTalkPipeline, avatar: AvatarFeatures) -> None:
        s = pipe.settings
        avatar.check(width=s.width, height=s.height, frame_num=s.frame_num)
        self.pipe = pipe
        self.settings = s
        dev = pipe.device
        self.spf = s.samples_per_frame
        self.chunk_frames = s.chunk_frames
        self.samples_per_chunk = self.chunk_frames * self.spf
        self.ring = np.zeros(
            round(s.audio_buffer_seconds * s.fps) * self.spf, dtype=np.float32
        )
        self.pending = np.zeros(0, dtype=np.float32)
        self.generator = torch.Generator(device=dev).manual_seed(s.seed)
        self.y = avatar.y[None].to(dev)  # [1, 20, T_lat, h, w]
        self.reference = avatar.reference.to(dev)  # [3, H, W]
        self.motion = avatar.motion[None].to(
            dev
        )  # [1, 16, 1, h, w]: 1 latent frame at first
        with torch.no_grad():
            self.context = pipe.dit.embed_context(
                [avatar.text.to(dev)], avatar.clip[None].to(dev)
            )  # once per call
        self.chunks_done = 0
        self.timer: StageTimer | None = None
        self._lock = threading.Lock()

    # -- feeding

    def push(self, audio: np.ndarray) -> list[np.ndarray]:
        """Add PCM samples; returns the frames of every chunk now complete (possibly none)."""
        with self._lock:
            self.pending = np.concatenate(
                [self.pending, np.asarray(audio, dtype=np.float32).reshape(-1)]
            )
        frames: list[np.ndarray] = []
        while True:
            with self._lock:
                if len(self.pending) < self.samples_per_chunk:
                    break
                chunk, self.pending = (
                    self.pending[: self.samples_per_chunk],
                    self.pending[self.samples_per_chunk :],
                )
            frames.extend(self.generate_chunk(chunk))
        return frames

    def flush(self) -> list[np.ndarray]:
        """Pad the leftover audio with silence to a whole chunk and render it (upstream drops it)."""
        with self._lock:
            if not len(self.pending):
                return []
            chunk = np.zeros(self.samples_per_chunk, dtype=np.float32)
            chunk[: len(self.pending)] = self.pending
            self.pending = np.zeros(0, dtype=np.float32)
        return self.generate_chunk(chunk)

    def idle(self) -> list[np.ndarray]:
        """One chunk of silent-audio generation (the face between utterances)."""
        return self.generate_chunk(np.zeros(self.samples_per_chunk, dtype=np.float32))

    def clear_buffer(self) -> None:
        """Interruption: drop pending audio and the speech in the ring buffer; keep the motion latent.

        The next chunk starts from the last emitted frames (no jump, no broken frame) and is driven
        by silence, so the mouth closes.
        """
        with self._lock:
            self.pending = np.zeros(0, dtype=np.float32)
            self.ring[:] = 0.0

    # -- one chunk

    @torch.no_grad()
    def generate_chunk(self, chunk: np.ndarray) -> list[np.ndarray]:
        """Render exactly ``chunk_frames`` frames for ``samples_per_chunk`` new samples."""
        if len(chunk) != self.samples_per_chunk:
            raise ValueError(
                f"a chunk is {self.samples_per_chunk} samples, got {len(chunk)}"
            )
        pipe, s = self.pipe, self.settings
        timer = self.timer or StageTimer(pipe.device)
        timer.start()

        # 1-2. ring buffer and audio windows for the last frame_num frames
        with self._lock:
            self.ring = np.concatenate(
                [self.ring[len(chunk) :], chunk.astype(np.float32)]
            )
            ring = self.ring.copy()
        feats = pipe.encode_audio(ring).to(pipe.device)  # [T_buf, layers, width]
        t_buf = feats.shape[0]
        audio = frame_windows(
            feats, t_buf - s.frame_num, t_buf
        )  # [1, frame_num, 5, layers, width]
        timer.stop("audio_encode")

        # 3. sampler
        t_lat = pipe.latent_frames
        h, w = s.height // pipe.vae.spatial_stride, s.width // pipe.vae.spatial_stride
        # the starting noise is drawn in the model dtype (bf16 on GPU), as upstream
        noise = torch.randn(
            (1, pipe.dit.config.out_dim, t_lat, h, w),
            generator=self.generator,
            device=self.generator.device,
            dtype=pipe.dtype,
        ).to(pipe.device)

        def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            # no autocast: the DiT keeps upstream's explicit dtype flow (bf16 weights, fp32 where upstream is)
            return pipe._dit_forward(x, t, self.y, audio, context=self.context)

        latent = sample(
            velocity, noise, self.generator, steps=s.steps, shift=s.shift, motion=self.motion,
            on_step=lambda i: timer.stop("dit_step"),
        )  # fmt: skip

        # 4. decode, colour match, motion for the next chunk
        with pipe.vae_autocast():  # fp32 weights, compute in vae_dtype (bf16 on GPU), as upstream
            video = pipe._vae_decode(latent)[0]  # [3, frame_num, H, W] in [-1, 1], fp32
        timer.stop("vae_decode")
        frames = match_colors(
            video.transpose(0, 1), self.reference, s.color_correction
        )  # [frame_num, 3, H, W]
        timer.stop("color_match")
        tail = frames[-s.motion_frames :].transpose(0, 1)[
            None
        ]  # [1, 3, motion_frames, H, W]
        with pipe.vae_autocast():
            self.motion = pipe.vae.encode(tail).float()  # [1, 16, 1 + (m-1)/4, h, w]
        timer.stop("motion_encode")
        self.chunks_done += 1

        # 5. the new frames only
        new = frames[s.motion_frames :]
        out = (
            ((new.float().clamp(-1, 1) + 1) * 127.5)
            .round()
            .to(torch.uint8)
            .permute(0, 2, 3, 1)
            .cpu()
            .numpy()
        )
        return [np.ascontiguousarray(f) for f in out]
