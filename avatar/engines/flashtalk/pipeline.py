"""The streaming loop: models loaded once (:class:`FlashTalkPipeline`), one :class:`FlashTalkStream` per call.

Per chunk (official numbers: frame_num 33, motion_frames 5, 28 new frames = 1.12 s of audio):

1. the 8 s audio ring buffer takes the chunk's 17,920 new samples;
2. the whole buffer is loudness-normalised and encoded; the last 33 frames get their +-2 windows
   (the newest frames clamp: no look-ahead);
3. fresh noise [16, 9, h, w]; the motion latent overwrites the first latent frame(s); 4 sampler steps;
4. VAE decode -> 33 frames; Lab colour match to the reference; motion = VAE.encode(last 5 frames);
5. frames 5..32 are emitted: 28 frames aligned 1:1 with the 28 new audio frames.

The critical path of a chunk (what the next chunk waits for) ends with the motion latent: it
needs the whole decode (the causal decoder's last frames depend on all earlier ones) and the
colour match of the last 5 frames only. The colour match of the other emitted frames, the
uint8 conversion and the copy to host memory run off it, on a side thread (and CUDA stream),
while the next chunk's DiT runs (``overlap_output``).

With sequence parallelism (``sp``, see :mod:`.parallel`) every rank runs the sampler on 1/N
of the tokens; rank 0 alone encodes the audio and runs the VAE, and broadcasts the audio
windows and the motion latent, so the ranks never diverge.

State carried between chunks: the motion latent and the noise generator only. The first chunk
is aligned too (the ring buffer starts silent, so its first 5 frames stand for silence), so
video never leads audio.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
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
from .parallel import SequenceParallel
from .sampler import sample
from .settings import FlashTalkSettings

logger = logging.getLogger("avatar.engines.flashtalk")

# critical path of a chunk, in order; "finish" (colour match of the other emitted frames, uint8,
# host copy) runs off it when overlap_output is on
CRITICAL_STAGES = ("audio_encode", "dit_step", "vae_decode", "color_tail", "motion_encode")
STAGES = CRITICAL_STAGES + ("finish",)


class StageTimer:
    """Wall time per stage (synchronising the current CUDA stream so GPU work is counted where it
    happens; work on the output side stream is not waited for)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.times: dict[str, list[float]] = {}
        self._t = 0.0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()

    def record(self, stage: str, seconds: float) -> None:
        """A stage timed elsewhere (the output thread)."""
        self.times.setdefault(stage, []).append(seconds)

    def critical(self) -> float:
        """Sum of the critical-path stages recorded so far."""
        return sum(sum(self.times.get(k, [])) for k in CRITICAL_STAGES)

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
        sp: SequenceParallel | None = None,
    ) -> None:
        self.settings = s = settings
        self.device = s.torch_device()
        self.dtype = s.torch_dtype()
        # sequence parallelism: None, or this rank's view of the group (rank 0 leads)
        self.sp = sp if sp is not None and sp.world > 1 else None
        self.leader = self.sp is None or self.sp.rank == 0
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
        if vae is None and not self.leader:
            # follower ranks never run the VAE (rank 0 decodes); only its strides are needed
            with torch.device("meta"):
                vae = WanVAE(WanVAE.config_for(ckpt / "Wan2.1_VAE.pth"))
        self.vae = (
            vae
            if vae is not None
            else WanVAE.from_pth(
                ckpt / "Wan2.1_VAE.pth", dtype=torch.float32, device=self.device
            )
        )
        # wav2vec2 is small and runs in fp32 upstream, whatever the DiT's dtype; only the leader
        # rank encodes audio (the others get the windows by broadcast)
        self.audio = (
            audio_encoder
            if audio_encoder is not None or not self.leader
            else AudioEncoder(
                s.wav2vec_path(),
                device=str(self.device),
                dtype=torch.float32,
                fps=s.fps,
            )
        )
        cfg = self.dit.config
        if self.audio is not None and (cfg.audio_blocks, cfg.audio_channels) != (
            self.audio.num_layers,
            self.audio.width,
        ):
            raise EngineError(
                f"the DiT expects wav2vec2 features of {cfg.audio_blocks} layers x {cfg.audio_channels}, but wav2vec_dir "
                f"has {self.audio.num_layers} x {self.audio.width}; use chinese-wav2vec2-base."
            )
        self.fp8 = False
        if s.fp8:
            why = self.enable_fp8()
            if why:
                logger.warning("flashtalk: fp8 is off: %s", why)
        self._dit_forward: Callable = self.dit
        self._vae_decode: Callable = self.vae.decode
        if s.compile:
            self._dit_forward = torch.compile(self.dit)
            self._vae_decode = torch.compile(self.vae.decode)
        self._silence_features: torch.Tensor | None = None
        self._silence_lock = threading.Lock()
        # the output thread (colour match, uint8, host copy of the emitted frames) and its CUDA stream
        self._output_pool: ThreadPoolExecutor | None = None
        self._output_stream = (
            torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        )
        # every call starts on a silent buffer: encode it now, not in the first chunk of the first call
        if self.audio is not None:
            self.encode_audio(
                np.zeros(
                    round(s.audio_buffer_seconds * s.fps) * s.samples_per_frame,
                    np.float32,
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

    def enable_fp8(self) -> str | None:
        """FP8 for the DiT blocks' linear layers; returns why not, or None when it is on."""
        from .fp8 import quantize_dit_fp8

        why = quantize_dit_fp8(self.dit)
        self.fp8 = why is None
        return why

    def dit_forward(self, x, t, y, audio, context):
        """One DiT call (sharded over the ranks when sequence parallel)."""
        if self.sp is None:
            return self._dit_forward(x, t, y, audio, context=context)
        return self._dit_forward(x, t, y, audio, context=context, sp=self.sp)

    def output_pool(self) -> ThreadPoolExecutor:
        if self._output_pool is None:
            self._output_pool = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="flashtalk-output"
            )
        return self._output_pool

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
        futures: list[Future] = []
        while True:
            with self._lock:
                if len(self.pending) < self.samples_per_chunk:
                    break
                chunk, self.pending = (
                    self.pending[: self.samples_per_chunk],
                    self.pending[self.samples_per_chunk :],
                )
            # each chunk's frames are finished off the critical path while the next one renders
            futures.append(self.submit(chunk))
        return [f for fut in futures for f in fut.result()]

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

    def generate_chunk(self, chunk: np.ndarray) -> list[np.ndarray]:
        """Render exactly ``chunk_frames`` frames for ``samples_per_chunk`` new samples (none on a
        follower rank)."""
        return self.submit(chunk).result()

    def submit(self, chunk: np.ndarray, *, raw: bool = False) -> Future:
        """Run the chunk's critical path now; the returned future gives its frames.

        When this returns, the motion latent for the next chunk is ready, so the next chunk can
        be submitted while this one's frames are finished on the output thread. The future's
        result is a list of ``chunk_frames`` RGB uint8 arrays, or with ``raw`` one fp32 tensor
        [chunk_frames, 3, H, W] in [-1, 1] on the CPU (what the equality tests compare).
        Follower ranks get an empty list.
        """
        timer = self.timer
        finish = self._render(chunk)
        if finish is None:
            done: Future = Future()
            done.set_result([])
            return done

        def job():
            t0 = time.perf_counter()
            out = finish(raw)
            if timer is not None:
                timer.record("finish", time.perf_counter() - t0)
            return out

        if self.pipe.settings.overlap_output:
            return self.pipe.output_pool().submit(job)
        done = Future()
        done.set_result(job())
        return done

    @torch.no_grad()
    def _render(self, chunk: np.ndarray) -> Callable[[bool], object] | None:
        """The critical path; returns the closure that finishes the emitted frames (None on followers)."""
        if len(chunk) != self.samples_per_chunk:
            raise ValueError(
                f"a chunk is {self.samples_per_chunk} samples, got {len(chunk)}"
            )
        pipe, s = self.pipe, self.settings
        sp = pipe.sp
        cfg = pipe.dit.config
        timer = self.timer or StageTimer(pipe.device)
        timer.start()

        # 1-2. ring buffer and audio windows for the last frame_num frames (the leader encodes,
        # the other ranks receive the windows)
        if pipe.leader:
            with self._lock:
                self.ring = np.concatenate(
                    [self.ring[len(chunk) :], chunk.astype(np.float32)]
                )
                ring = self.ring.copy()
            feats = pipe.encode_audio(ring).to(pipe.device)  # [T_buf, layers, width]
            t_buf = feats.shape[0]
            audio = frame_windows(
                feats, t_buf - s.frame_num, t_buf
            ).contiguous()  # [1, frame_num, 5, layers, width]
        else:
            audio = torch.empty(
                (1, s.frame_num, cfg.audio_window, cfg.audio_blocks, cfg.audio_channels),
                device=pipe.device, dtype=torch.float32,
            )  # fmt: skip
        if sp is not None:
            sp.broadcast(audio)
        timer.stop("audio_encode")

        # 3. sampler (every rank; the noise generators are seeded alike and advance alike)
        t_lat = pipe.latent_frames
        h, w = s.height // pipe.vae.spatial_stride, s.width // pipe.vae.spatial_stride
        # the starting noise is drawn in the model dtype (bf16 on GPU), as upstream
        noise = torch.randn(
            (1, cfg.out_dim, t_lat, h, w),
            generator=self.generator,
            device=self.generator.device,
            dtype=pipe.dtype,
        ).to(pipe.device)

        def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            # no autocast: the DiT keeps upstream's explicit dtype flow (bf16 weights, fp32 where upstream is)
            return pipe.dit_forward(x, t, self.y, audio, self.context)

        latent = sample(
            velocity, noise, self.generator, steps=s.steps, shift=s.shift, motion=self.motion,
            on_step=lambda i: timer.stop("dit_step"),
        )  # fmt: skip

        # 4. decode, colour match of the motion tail, motion for the next chunk (leader only)
        m_lat = 1 + (s.motion_frames - 1) // pipe.vae.temporal_stride
        if not pipe.leader:
            motion = torch.empty(
                (1, cfg.out_dim, m_lat, h, w), device=pipe.device, dtype=torch.float32
            )
            self.motion = sp.broadcast(motion)
            timer.stop("motion_encode")
            self.chunks_done += 1
            return None
        with pipe.vae_autocast():  # fp32 weights, compute in vae_dtype (bf16 on GPU), as upstream
            video = pipe._vae_decode(latent)[0]  # [3, frame_num, H, W] in [-1, 1], fp32
        timer.stop("vae_decode")
        frames = video.transpose(0, 1)  # [frame_num, 3, H, W]
        tail = match_colors(
            frames[-s.motion_frames :], self.reference, s.color_correction
        )  # colour is matched per frame: the tail alone gives the same numbers
        timer.stop("color_tail")
        with pipe.vae_autocast():
            motion = pipe.vae.encode(tail.transpose(0, 1)[None]).float()  # [1, 16, m_lat, h, w]
        if sp is not None:
            sp.broadcast(motion)
        self.motion = motion
        timer.stop("motion_encode")
        self.chunks_done += 1

        # 5. the new frames only: frames motion_frames..frame_num-1, whose tail is already matched
        keep = s.frame_num - 2 * s.motion_frames  # emitted frames not in the tail
        reference, strength = self.reference, s.color_correction
        side = pipe._output_stream
        ready = torch.cuda.Event() if side is not None else None
        if ready is not None:
            ready.record()

        def finish(raw: bool):
            with torch.no_grad(), (
                torch.cuda.stream(side) if side is not None else nullcontext()
            ):
                if ready is not None:
                    side.wait_event(ready)
                head = frames[s.motion_frames : s.motion_frames + max(keep, 0)]
                new = torch.cat([match_colors(head, reference, strength), tail])[
                    -self.chunk_frames :
                ]
                if raw:
                    out = new.float().cpu()
                else:
                    out = (
                        ((new.float().clamp(-1, 1) + 1) * 127.5)
                        .round()
                        .to(torch.uint8)
                        .permute(0, 2, 3, 1)
                        .cpu()
                    )
                if side is not None:
                    side.synchronize()
            return out if raw else [np.ascontiguousarray(f) for f in out.numpy()]

        return finish


def build_pipeline(
    *, sp: SequenceParallel | None, device: str, settings: dict
) -> FlashTalkPipeline:
    """A follower rank's pipeline from the engine's settings (see :mod:`.launch`)."""
    s = FlashTalkSettings.from_kwargs(**{**settings, "device": device})
    return FlashTalkPipeline(s, sp=sp)
