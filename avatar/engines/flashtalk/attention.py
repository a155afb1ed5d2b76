"""The one attention function every FlashTalk network calls.

All attention in the DiT, the VAE, CLIP and umT5 goes through :func:`attention`, so a
later sequence-parallel (Ulysses) implementation replaces exactly one function.

Layout: ``q, k, v`` are ``[B, L, H, D]`` (batch, tokens, heads, head_dim), as in Wan.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# flash-attention is optional and CUDA-only: FlashAttention-3 (Hopper) first, then 2
_flash_attn_func = None
try:
    from flash_attn_interface import flash_attn_func as _flash_attn_func  # type: ignore[import-not-found]
except Exception:  # noqa: BLE001 - any import problem just means "not available"
    try:
        from flash_attn import flash_attn_func as _flash_attn_func  # type: ignore[import-not-found]
    except Exception:  # noqa: BLE001
        _flash_attn_func = None

# "auto" (flash-attn when usable, else SDPA), "sdpa" or "flash"; set by the engine.
BACKEND = "auto"


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    scale: float | None = None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Full (non-causal) attention. ``q`` [B, Lq, H, D], ``k``/``v`` [B, Lk, H, D] -> [B, Lq, H, D].

    ``scale`` defaults to ``1/sqrt(D)``. ``bias`` is an additive ``[B or 1, H or 1, Lq, Lk]`` term
    (umT5's relative positions and padding mask, with ``scale=1``: T5 attention is unscaled);
    only the DiT/VAE/CLIP calls, which pass no bias, can take the flash-attention path.
    """
    use_flash = (
        bias is None
        and _flash_attn_func is not None
        and BACKEND in ("auto", "flash")
        and q.is_cuda
        and q.dtype in (torch.float16, torch.bfloat16)
    )
    if use_flash:
        out = _flash_attn_func(q, k, v, softmax_scale=scale)
        return (
            out[0] if isinstance(out, tuple) else out
        )  # some FA3 builds also return the LSE
    # SDPA wants [B, H, L, D]
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2),
        k.transpose(1, 2),
        v.transpose(1, 2),
        attn_mask=None if bias is None else bias.to(q.dtype),
        scale=scale,
    )
    return out.transpose(1, 2)
