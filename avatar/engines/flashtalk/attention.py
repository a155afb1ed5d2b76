"""The one attention function every FlashTalk network calls.

All attention in the DiT, the CLIP tower and the VAE goes through :func:`attention`, so a
later sequence-parallel (Ulysses) implementation replaces exactly one function.

Layout: ``q, k, v`` are ``[B, L, H, D]`` (batch, tokens, heads, head_dim), as in Wan.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

try:  # flash-attention is optional; only used on CUDA with half precision
    from flash_attn import flash_attn_func as _flash_attn_func  # type: ignore[import-not-found]
except Exception:  # noqa: BLE001 - any import problem just means "not available"
    _flash_attn_func = None

# "auto" (flash-attn when usable, else SDPA), "sdpa" or "flash"; set by the engine.
BACKEND = "auto"


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    scale: float | None = None,
) -> torch.Tensor:
    """Full (non-causal) attention. ``q`` [B, Lq, H, D], ``k``/``v`` [B, Lk, H, D] -> [B, Lq, H, D].

    ``scale`` defaults to ``1/sqrt(D)``; umT5 passes ``1.0`` (T5 attention is unscaled) and
    goes through :func:`attention_with_bias` instead, since it needs a position bias.
    """
    use_flash = (
        _flash_attn_func is not None
        and BACKEND in ("auto", "flash")
        and q.is_cuda
        and q.dtype in (torch.float16, torch.bfloat16)
    )
    if use_flash:
        return _flash_attn_func(q, k, v, softmax_scale=scale)
    # SDPA wants [B, H, L, D]
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), scale=scale
    )
    return out.transpose(1, 2)


def attention_with_bias(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, *, scale: float
) -> torch.Tensor:
    """Attention with an additive bias ``[B or 1, H, Lq, Lk]`` (umT5's relative positions and padding mask).

    Softmax runs in fp32 as in the reference T5; layout as :func:`attention`.
    """
    scores = torch.einsum("binc,bjnc->bnij", q, k) * scale + bias
    probs = F.softmax(scores.float(), dim=-1).type_as(q)
    return torch.einsum("bnij,bjnc->binc", probs, v)
