"""Per-avatar preparation: umT5 text features, CLIP image features, y and the first motion latent.

(The CLI lives in :mod:`avatar.engines.flashtalk.prepare`; library code imports this module,
so that the package's ``prepare`` function is never shadowed by a submodule of that name.)

Run once when an avatar is created (needs umT5-XXL, CLIP and the VAE: about 13 GB of weights
at full size, so a GPU is advised but CPU works, slowly). The live engine never loads umT5 or CLIP.

    python -m avatar.engines.flashtalk.prepare --checkpoint DIR --image face.png --out AVATAR_DIR \
        [--width 448 --height 768 --frame-num 33 --device cuda --prompt "..."]
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..base import PreparationError
from .avatar_file import AVATAR_FILE, AvatarFeatures, save_avatar
from .settings import FlashTalkSettings

logger = logging.getLogger("avatar.engines.flashtalk")


def cover_geometry(w0: int, h0: int, width: int, height: int) -> tuple[int, int, int, int]:
    """Upstream's resize-to-cover and centre crop: (resized width, resized height, left, top).

    The scale is the larger of the two ratios; the scaled size is rounded *up* (``ceil``, so a
    float product such as 796.44 gives 797); the crop offset is ``round((resized - target) / 2)``
    with Python's round (half to even), as torchvision's ``center_crop`` which upstream calls.
    """
    scale = max(width / w0, height / h0)
    rw, rh = math.ceil(scale * w0), math.ceil(scale * h0)
    return rw, rh, int(round((rw - width) / 2.0)), int(round((rh - height) / 2.0))


def reference_frame(image: np.ndarray, width: int, height: int) -> torch.Tensor:
    """RGB uint8 [H0, W0, 3] -> [3, height, width] in [-1, 1], preprocessed as upstream.

    Bilinear resize (PIL) to cover the target with the size rounded up, then a rounded centre
    crop (:func:`cover_geometry`), then ``(x / 255 - 0.5) * 2``. The model was trained on this
    preprocessing, so it is kept bit for bit rather than "improved" (bicubic, floor).
    """
    from PIL import Image

    if (
        not isinstance(image, np.ndarray)
        or image.ndim != 3
        or image.shape[2] != 3
        or image.dtype != np.uint8
    ):
        raise PreparationError(
            "the avatar image must be an RGB picture (height x width x 3, 8-bit)."
        )
    h0, w0 = image.shape[:2]
    if min(h0, w0) < 16:
        raise PreparationError(
            f"the avatar image is too small ({w0}x{h0}); use a photo of at least 256 pixels."
        )
    rw, rh, left, top = cover_geometry(w0, h0, width, height)
    resized = np.asarray(Image.fromarray(image).resize((rw, rh), Image.BILINEAR))
    crop = resized[top : top + height, left : left + width]
    x = torch.from_numpy(crop.copy()).permute(2, 0, 1).float()
    return (x / 255.0 - 0.5) * 2.0


def conditioning_latent(vae, reference: torch.Tensor, frame_num: int) -> torch.Tensor:
    """y [20, T_lat, h, w]: 4 mask channels (1 on latent frame 0) + VAE.encode(reference + zero frames)."""
    c, hh, ww = reference.shape
    video = torch.cat(
        [reference[:, None], reference.new_zeros(c, frame_num - 1, hh, ww)], dim=1
    )
    lat = vae.encode(video[None])[0]  # [16, T_lat, h, w]
    mask = torch.zeros(4, *lat.shape[1:], device=lat.device)
    mask[:, 0] = (
        1.0  # the 4 pixel frames folded into latent frame 0 are all the reference
    )
    return torch.cat([mask, lat], dim=0)


@torch.no_grad()
def prepare_features(image: np.ndarray, settings: FlashTalkSettings) -> AvatarFeatures:
    """Compute the per-avatar tensors with umT5, CLIP and the VAE from ``settings.checkpoint_dir``."""
    from .modeling_clip import CLIP_FILE, CLIPVisual
    from .modeling_t5 import TextEncoder
    from .modeling_vae import WanVAE

    ckpt = settings.require_checkpoint()
    device, dtype = str(settings.torch_device()), settings.torch_dtype()
    ref = reference_frame(image, settings.width, settings.height)
    autocast = torch.autocast(
        device_type=torch.device(device).type,
        dtype=dtype,
        enabled=dtype != torch.float32,
    )

    text_encoder = TextEncoder(ckpt, dtype=dtype, device=device)
    with autocast:
        text = text_encoder(settings.prompt)
    del text_encoder  # umT5-XXL is 11 GB: free it before CLIP and the VAE

    clip = CLIPVisual.from_pth(ckpt / CLIP_FILE, dtype=dtype, device=device)
    with autocast:
        clip_fea = clip.encode_image(ref[None].to(device))[0].cpu()
    del clip

    # fp32 VAE weights, compute in vae_dtype through autocast (bf16 on GPU), as the live engine
    vae = WanVAE.from_pth(ckpt / "Wan2.1_VAE.pth", dtype=torch.float32, device=device)
    vae_dtype = settings.torch_dtype(settings.vae_dtype)
    r = ref.to(device)
    with torch.autocast(
        device_type=torch.device(device).type,
        dtype=vae_dtype,
        enabled=vae_dtype != torch.float32,
    ):
        y = conditioning_latent(vae, r, settings.frame_num).cpu()
        motion = vae.encode(r[None, :, None])[0].cpu()  # [16, 1, h, w]
    return AvatarFeatures(
        text=text, clip=clip_fea, y=y, motion=motion, reference=ref, width=settings.width, height=settings.height,
        frame_num=settings.frame_num, fps=settings.fps, prompt=settings.prompt,
    )  # fmt: skip


def prepare(image: np.ndarray, out_dir: Path, **settings: Any) -> dict[str, Any]:
    """Engine-registry hook: prepare ``image`` (RGB uint8) into ``out_dir``; returns metadata to store."""
    s = FlashTalkSettings.from_kwargs(**settings)
    feats = prepare_features(image, s)
    path = save_avatar(feats, out_dir)
    return {
        "engine": "flashtalk",
        "file": AVATAR_FILE,
        "width": s.width,
        "height": s.height,
        "frame_num": s.frame_num,
        "fps": s.fps,
        "prompt": s.prompt,
        "bytes": path.stat().st_size,
    }


def main(argv: list[str] | None = None) -> None:
    """CLI body of ``python -m avatar.engines.flashtalk.prepare --checkpoint DIR --image PATH --out DIR``."""

    p = argparse.ArgumentParser(
        description="Prepare an avatar image for the FlashTalk engine."
    )
    p.add_argument(
        "--checkpoint", required=True, help="folder with the official FlashTalk files"
    )
    p.add_argument(
        "--image", required=True, help="reference image (any format PIL reads)"
    )
    p.add_argument(
        "--out",
        required=True,
        help="avatar folder to write flashtalk_avatar.safetensors into",
    )
    p.add_argument("--width", type=int, default=448)
    p.add_argument("--height", type=int, default=768)
    p.add_argument("--frame-num", type=int, default=33)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--prompt", default=None)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    from ...images import ImageError, decode_image, rgb_array

    try:
        img, _ = decode_image(Path(a.image).read_bytes(), max_bytes=64 << 20, min_side=64, what="avatar image")
    except (OSError, ImageError) as exc:
        p.error(str(exc))
    image = rgb_array(img)
    meta = prepare(
        image, Path(a.out), checkpoint_dir=a.checkpoint, width=a.width, height=a.height, frame_num=a.frame_num,
        device=a.device, dtype=a.dtype, prompt=a.prompt,
    )  # fmt: skip
    print(meta)
