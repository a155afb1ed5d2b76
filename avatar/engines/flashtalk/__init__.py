"""FlashTalk engine: SoulX-FlashTalk-14B (Wan2.1-I2V DiT + audio cross-attention) as a streaming avatar.

Loads the official checkpoint unchanged, runs on CPU (fp32, tiny test models) and on CUDA
(bf16, SDPA or flash-attention, optional ``torch.compile``). The avatar worker reaches it
through :func:`create_engine` and :func:`prepare` (see :mod:`avatar.engines`).

Settings (keyword arguments; strings are converted, an unknown name is refused with the list of known ones):

- ``checkpoint_dir`` (required): folder with ``config.json``, the DiT index + shards,
  ``Wan2.1_VAE.pth``, and for preparation the umT5 and CLIP ``.pth`` files and tokenizers.
- ``wav2vec_dir`` (default: ``<checkpoint_dir>/chinese-wav2vec2-base`` or its sibling folder):
  chinese-wav2vec2-base in transformers format.
- ``device`` (``auto``): ``cuda`` when a GPU is visible, else ``cpu``.
- ``dtype`` (``auto``): the DiT's dtype, bf16 on CUDA, fp32 on CPU; ``float32``/``bfloat16`` to force.
- ``vae_dtype`` (``auto``): the VAE's compute dtype (fp32 weights under autocast): bf16 on CUDA, as
  upstream, fp32 on CPU.
- ``width`` 448, ``height`` 768: output size (multiples of 16; the avatar must be prepared at it).
- ``fps`` 25, ``sample_rate`` 16000.
- ``frame_num`` 33 (1 + 4k): frames per generated window; ``motion_frames`` 5 (1 + 4k): frames
  carried over as motion. ``chunk_frames = frame_num - motion_frames`` (28) new frames per chunk.
- ``steps`` 4, ``shift`` 5.0: the distilled sampler.
- ``seed`` 42: per-call noise generator seed (same seed + same audio = same video).
- ``compile`` False: ``torch.compile`` the DiT forward and the VAE decode.
- ``sequence_parallel`` 1: ranks, one process per GPU (this process is rank 0 and starts the
  others, see :mod:`.launch`); the DiT's tokens are split over them (:mod:`.parallel`).
- ``overlap_output`` True: finish each chunk's emitted frames off the critical path.
- ``fp8`` False: FP8 linears in the DiT blocks (torchao, sm_89+ GPUs), skipped with a warning elsewhere.
- ``threads`` 0: torch intra-op threads (process-wide); 0 keeps torch's default. Tiny CPU models run best at 1.
- ``attention`` ``auto``: flash-attention when installed on CUDA, else PyTorch SDPA; ``sdpa``/``flash``.
- ``color_correction`` 1.0: Lab colour-matching strength towards the reference (0 = off).
- ``audio_buffer_seconds`` 8.0: audio context the encoder sees; ``loudness_norm`` True (-23 LUFS).
- ``default_avatar`` None: prepared avatar folder used when a call names none.
- ``prompt``: preparation only, the umT5 prompt (official default).
"""

from __future__ import annotations

from typing import Any

from .settings import DEFAULT_PROMPT, FlashTalkSettings


def create_engine(**settings: Any):
    """Build the FlashTalk engine (loads the DiT, the VAE and wav2vec2)."""
    from .engine import create_engine as _create

    return _create(**settings)


def prepare(image, out_dir, **settings: Any) -> dict[str, Any]:
    """Once-per-avatar preparation of ``image`` (RGB uint8) into ``out_dir``; returns metadata."""
    from .preparation import prepare as _prepare

    return _prepare(image, out_dir, **settings)


__all__ = ["DEFAULT_PROMPT", "FlashTalkSettings", "create_engine", "prepare"]
