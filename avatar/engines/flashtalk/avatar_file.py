"""The per-avatar file: everything FlashTalk needs about one avatar, computed once.

``<avatar_dir>/flashtalk_avatar.safetensors`` holds:

- ``text``      [L, 4096]  umT5 features of the prompt, trimmed to the real token count
- ``clip``      [257, 1280] CLIP ViT-H/14 tokens after block 31
- ``y``         [20, T_lat, h, w] conditioning latent (4 mask channels + VAE latent)
- ``motion``    [16, 1, h, w] first motion latent = VAE.encode(reference)
- ``reference`` [3, H, W] reference frame in [-1, 1] (colour matching target)

and, as string metadata, width, height, frame_num, fps and the prompt, so a live engine can
check the file was made for its settings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..base import EngineError

AVATAR_FILE = "flashtalk_avatar.safetensors"


@dataclass
class AvatarFeatures:
    """The tensors of one prepared avatar (CPU, fp32) and the settings they were made for."""

    text: torch.Tensor
    clip: torch.Tensor
    y: torch.Tensor
    motion: torch.Tensor
    reference: torch.Tensor
    width: int
    height: int
    frame_num: int
    fps: int
    prompt: str

    def check(self, *, width: int, height: int, frame_num: int) -> None:
        """Raise :class:`EngineError` if the file was prepared for another resolution or chunk length."""
        if (self.width, self.height, self.frame_num) != (width, height, frame_num):
            raise EngineError(
                f"this avatar was prepared for {self.width}x{self.height}, frame_num {self.frame_num}, but the engine "
                f"runs {width}x{height}, frame_num {frame_num}; prepare the avatar again with the engine's settings."
            )


def save_avatar(features: AvatarFeatures, out_dir: str | Path) -> Path:
    """Write ``flashtalk_avatar.safetensors`` into ``out_dir``; returns its path."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {
        k: getattr(features, k).detach().float().contiguous().cpu()
        for k in ("text", "clip", "y", "motion", "reference")
    }
    meta = {
        "format": "flashtalk-avatar-1",
        "width": str(features.width),
        "height": str(features.height),
        "frame_num": str(features.frame_num),
        "fps": str(features.fps),
        "prompt": json.dumps(features.prompt),
    }
    path = out_dir / AVATAR_FILE
    save_file(tensors, str(path), metadata=meta)
    return path


def load_avatar(avatar_dir: str | Path) -> AvatarFeatures:
    """Read a prepared avatar folder (or the file itself)."""
    from safetensors import safe_open

    path = Path(avatar_dir)
    if path.is_dir():
        path = path / AVATAR_FILE
    if not path.is_file():
        raise EngineError(
            f"{path} is missing; prepare the avatar with python -m avatar.engines.flashtalk.prepare."
        )
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != "flashtalk-avatar-1":
            raise EngineError(
                f"{path} is not a FlashTalk avatar file; prepare the avatar again."
            )
        t = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is not a dict
    return AvatarFeatures(
        text=t["text"], clip=t["clip"], y=t["y"], motion=t["motion"], reference=t["reference"],
        width=int(meta["width"]), height=int(meta["height"]), frame_num=int(meta["frame_num"]),
        fps=int(meta["fps"]), prompt=json.loads(meta["prompt"]),
    )  # fmt: skip
