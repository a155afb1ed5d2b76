"""FlashTalk's distilled sampler: 4 steps, shift 5, no CFG, fresh noise at every step (DMD style)."""

from __future__ import annotations

from collections.abc import Callable

import torch

BASE_TIMESTEPS = (1000.0, 750.0, 500.0, 250.0)


def shifted_timesteps(steps: int = 4, shift: float = 5.0) -> list[float]:
    """Timesteps on the [0, 1] scale after the shift, ending with 0: [1, .9375, .8333, .625, 0] at 4 steps.

    At the official 4 steps the base grid is 1000, 750, 500, 250; other step counts space the grid
    evenly from 1000 the same way (1000 * (1 - i/steps)).
    """
    base = [1.0 - i / steps for i in range(steps)]
    return [shift * t / (1.0 + (shift - 1.0) * t) for t in base] + [0.0]


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
    """Run the re-noising sampler.

    ``model(x_t, t)`` returns the velocity with ``t`` [B] on the 0..1000 scale. ``noise`` [B, C, T, h, w]
    is the starting latent; ``motion`` [B, C, m, h, w] (clean) is written into the first ``m``
    latent frames before the first step and after every step. Each step:
    x0 = x_t - t*v;  x_next = (1 - t_next)*x0 + t_next*fresh_noise.
    """
    ts = shifted_timesteps(steps, shift)
    x = noise.clone()
    m = 0 if motion is None else motion.shape[2]
    if m:
        x[:, :, :m] = motion
    for i in range(steps):
        t, t_next = ts[i], ts[i + 1]
        v = model(x, torch.full((x.shape[0],), t * 1000.0, device=x.device))
        x0 = x - t * v
        if t_next > 0:
            fresh = torch.randn(
                x.shape,
                generator=generator,
                device=generator.device,
                dtype=torch.float32,
            ).to(x.device)
            x = (1.0 - t_next) * x0 + t_next * fresh
        else:
            x = x0
        if m:
            x[:, :, :m] = motion
        if on_step is not None:
            on_step(i)
    return x
