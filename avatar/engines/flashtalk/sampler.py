"""FlashTalk's distilled sampler: 4 steps, shift 5, no CFG, fresh noise at every step (DMD style)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


def base_timesteps(steps: int) -> list[float]:
    """The unshifted grid on the 0..1000 scale: 1000, 750, 500, 250 at the official 4 steps."""
    if steps == 2:
        return [1000.0, 500.0]
    if steps == 4:
        return [1000.0, 750.0, 500.0, 250.0]
    # other step counts: an even grid from 1000 down to 1, as upstream
    return [float(t) for t in np.linspace(1000, 1, steps, dtype=np.float32)]


def shifted_timesteps(steps: int = 4, shift: float = 5.0) -> list[float]:
    """Timesteps on the [0, 1] scale after the shift t' = s*t / (1 + (s-1)*t), ending with 0.

    [1, .9375, .8333, .625, 0] at 4 steps and shift 5. Computed in fp32 like upstream.
    """
    t = torch.tensor(base_timesteps(steps) + [0.0], dtype=torch.float32) / 1000.0
    return (shift * t / (1 + (shift - 1) * t)).tolist()


def sample(
    model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    noise: torch.Tensor,
    generator: torch.Generator,
    *,
    steps: int = 4,
    shift: float = 5.0,
    motion: torch.Tensor | None = None,
    on_step: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Run the re-noising sampler; returns the clean latent in fp32.

    ``model(x_t, t)`` returns the velocity with ``t`` [B] on the 0..1000 scale. ``noise`` [B, C, T, h, w]
    is the starting latent (upstream draws it in the model dtype); ``motion`` [B, C, m, h, w] (clean)
    is written into the first ``m`` latent frames before the first step and after every step.
    Each step: x0 = x_t - t*v;  x_next = (1 - t_next)*x0 + t_next*fresh_noise. Fresh fp32 noise
    is drawn at every step, the last one included (where it is multiplied by 0), so the
    generator's stream advances exactly as upstream's.
    """
    ts = torch.tensor(
        shifted_timesteps(steps, shift), dtype=torch.float32, device=noise.device
    )
    x = noise.clone()
    m = 0 if motion is None else motion.shape[2]
    if m:
        x[:, :, :m] = motion
    for i in range(steps):
        t, t_next = ts[i], ts[i + 1]
        v = model(x, (t * 1000.0).expand(x.shape[0]))
        x0 = x.float() - t * v.float()
        fresh = torch.randn(
            x0.shape, generator=generator, device=generator.device, dtype=x0.dtype
        ).to(x0.device)
        x = (1.0 - t_next) * x0 + t_next * fresh
        if m:
            x[:, :, :m] = motion
        if on_step is not None:
            on_step(i)
    return x
