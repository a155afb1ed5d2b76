"""Colour correction: match each generated frame's Lab mean/std to the reference image.

Pure torch (sRGB D65 <-> CIE Lab, same constants as scikit-image), so it runs on the GPU
next to the VAE; tests compare it with ``skimage.color``.
"""

from __future__ import annotations

import torch

_RGB2XYZ = torch.tensor(
    [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ],
    dtype=torch.float64,
)
_WHITE = torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)  # D65, 2 degrees


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """[..., 3] sRGB in [0, 1] -> Lab."""
    lin = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = lin @ _RGB2XYZ.to(rgb).T / _WHITE.to(rgb)
    f = torch.where(
        xyz > 0.008856, xyz.clamp(min=1e-12) ** (1 / 3), 7.787 * xyz + 16.0 / 116.0
    )
    fx, fy, fz = f.unbind(-1)
    return torch.stack(
        [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=-1
    )


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """Lab -> [..., 3] sRGB clipped to [0, 1]."""
    L, a, b = lab.unbind(-1)
    fy = (L + 16.0) / 116.0
    fx = fy + a / 500.0
    fz = (fy - b / 200.0).clamp(min=0)  # as skimage: negative z is clipped
    f = torch.stack([fx, fy, fz], dim=-1)
    xyz = torch.where(f > 0.2068966, f**3, (f - 16.0 / 116.0) / 7.787) * _WHITE.to(lab)
    lin = xyz @ torch.linalg.inv(_RGB2XYZ).to(lab).T
    rgb = torch.where(
        lin > 0.0031308, 1.055 * lin.clamp(min=0) ** (1 / 2.4) - 0.055, 12.92 * lin
    )
    return rgb.clamp(0.0, 1.0)


def match_colors(
    frames: torch.Tensor, reference: torch.Tensor, strength: float = 1.0
) -> torch.Tensor:
    """Per-frame Lab mean/std transfer towards ``reference``.

    frames [T, 3, H, W] in [-1, 1]; reference [3, H, W] in [-1, 1]. Returns frames in [-1, 1],
    blended ``(1 - strength) * frames + strength * corrected``; strength 0 returns the input.
    """
    if strength <= 0:
        return frames
    dtype = frames.dtype
    src = rgb_to_lab(
        ((frames.float() + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1)
    )  # [T, H, W, 3]
    ref = rgb_to_lab(
        ((reference.float() + 1) / 2).clamp(0, 1).permute(1, 2, 0)
    )  # [H, W, 3]
    ref_mean, ref_std = ref.mean(dim=(0, 1)), ref.std(dim=(0, 1), unbiased=False)
    mean = src.mean(dim=(1, 2), keepdim=True)
    std = src.std(dim=(1, 2), keepdim=True, unbiased=False).clamp(min=1e-6)
    corrected = (src - mean) / std * ref_std + ref_mean
    out = lab_to_rgb(corrected).permute(0, 3, 1, 2) * 2 - 1
    return ((1 - strength) * frames.float() + strength * out).to(dtype)
