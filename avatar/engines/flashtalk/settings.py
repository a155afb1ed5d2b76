"""FlashTalk engine settings: one pydantic model, filled from the keyword settings the worker passes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import ClassVar

import torch
from pydantic import model_validator

from ..base import EngineError, EngineSettings

logger = logging.getLogger("avatar.engines.flashtalk")

DEFAULT_PROMPT = "A person is talking. Only the foreground characters are moving, the background remains static."


class FlashTalkSettings(EngineSettings):
    """Every setting of the FlashTalk engine; see the package docstring for what each means."""

    engine: ClassVar[str] = "flashtalk"

    checkpoint_dir: str | None = None
    wav2vec_dir: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    vae_dtype: str = "auto"
    width: int = 448
    height: int = 768
    fps: int = 25
    sample_rate: int = 16000
    frame_num: int = 33
    motion_frames: int = 5
    steps: int = 4
    shift: float = 5.0
    seed: int = 42
    compile: bool = False
    sequence_parallel: int = 1  # ranks (one process per GPU); 1 = one device
    overlap_output: bool = True  # finish emitted frames on a side thread/stream
    fp8: bool = False  # FP8 weights+activations for the DiT blocks' linears (torchao, GPU sm89+)
    threads: int = 0  # torch intra-op threads; 0 leaves torch's default
    attention: str = "auto"
    color_correction: float = 1.0
    audio_buffer_seconds: float = 8.0
    loudness_norm: bool = True
    default_avatar: str | None = None
    prompt: str = DEFAULT_PROMPT

    @model_validator(mode="after")
    def _check(self) -> FlashTalkSettings:
        """Raise :class:`EngineError` with one sentence for an impossible combination."""
        if self.frame_num < 5 or (self.frame_num - 1) % 4:
            raise EngineError(
                f"frame_num must be 1 + 4k (official 33), got {self.frame_num}."
            )
        if (
            self.motion_frames < 1
            or (self.motion_frames - 1) % 4
            or self.motion_frames >= self.frame_num
        ):
            raise EngineError(
                f"motion_frames must be 1 + 4k and below frame_num (official 5), got {self.motion_frames}."
            )
        if self.width % 16 or self.height % 16:
            raise EngineError(
                f"width and height must be multiples of 16 (official 448x768), got {self.width}x{self.height}."
            )
        if self.sample_rate % self.fps:
            raise EngineError(
                f"sample_rate {self.sample_rate} must be a multiple of fps {self.fps}."
            )
        if self.audio_buffer_seconds * self.fps < self.frame_num:
            raise EngineError(
                "audio_buffer_seconds must hold at least frame_num video frames of audio."
            )
        if self.steps < 1:
            raise EngineError("steps must be at least 1 (official 4).")
        if self.fps != 25:
            logger.warning(
                "flashtalk: the model was trained at 25 fps; fps=%s changes the audio-to-frame mapping",
                self.fps,
            )
        if self.sequence_parallel < 1:
            raise EngineError("sequence_parallel must be 1 (off) or the number of GPUs to use.")
        if self.attention not in ("auto", "sdpa", "flash"):
            raise EngineError("attention must be auto, sdpa or flash.")
        return self

    @property
    def chunk_frames(self) -> int:
        return self.frame_num - self.motion_frames

    @property
    def samples_per_frame(self) -> int:
        return self.sample_rate // self.fps

    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        dev = torch.device(self.device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise EngineError(
                "device is cuda but no CUDA GPU is visible; set device=cpu (tiny models only)."
            )
        return dev

    def torch_dtype(self, name: str | None = None) -> torch.dtype:
        """The DiT's dtype (``dtype``), or that of another setting's value such as ``vae_dtype``."""
        value = self.dtype if name is None else name
        if value == "auto":
            return (
                torch.bfloat16 if self.torch_device().type == "cuda" else torch.float32
            )
        table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
                 "float16": torch.float16, "fp16": torch.float16}  # fmt: skip
        if value not in table:
            raise EngineError(
                f"dtype must be auto, float32 or bfloat16, got {value!r}."
            )
        return table[value]

    def require_checkpoint(self) -> Path:
        if not self.checkpoint_dir:
            raise EngineError(
                "flashtalk needs checkpoint_dir: the folder holding SoulX-FlashTalk-14B's config.json."
            )
        path = Path(self.checkpoint_dir)
        if not path.is_dir():
            raise EngineError(
                f"flashtalk checkpoint_dir {path} does not exist; download SoulX-FlashTalk-14B there."
            )
        return path

    def wav2vec_path(self) -> Path:
        if self.wav2vec_dir:
            return Path(self.wav2vec_dir)
        ckpt = self.require_checkpoint()
        for cand in (
            ckpt / "chinese-wav2vec2-base",
            ckpt.parent / "chinese-wav2vec2-base",
        ):
            if cand.is_dir():
                return cand
        raise EngineError(
            "flashtalk needs wav2vec_dir: the chinese-wav2vec2-base folder (transformers format)."
        )
