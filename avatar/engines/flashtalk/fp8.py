"""Optional FP8 for the DiT's linear layers (torchao), where the GPU has FP8 tensor cores.

Only the linears inside the 40 blocks are converted (attention projections, FFN, audio
cross-attention: about 99 % of the DiT's matmul FLOPs); the embeddings, the timestep path and
the head keep their dtype (upstream runs them in fp32). Weights are stored in float8_e4m3 with
per-row scales and activations are quantised per token at run time (torchao's dynamic
activation + weight FP8), so the matmuls run on FP8 tensor cores: Hopper (H100/H800/H20) and
Ada (sm_89) and later. Upstream has no FP8; a third-party FP8 port reports 3.37 s -> 2.17 s
per chunk on 8xH20. Frames change (it is a lossy format): ``bench --fp8`` prints the frame
difference against the bf16 run.
"""

from __future__ import annotations

import torch
from torch import nn


def fp8_unavailable(model: nn.Module) -> str | None:
    """Why FP8 cannot be used for ``model`` here, or None."""
    try:
        import torchao  # noqa: F401
    except ImportError:
        return "torchao is not installed (pip install torchao)"
    p = next(model.parameters())
    if p.device.type != "cuda":
        return f"FP8 matmuls need a CUDA GPU, the DiT is on {p.device.type}"
    major, minor = torch.cuda.get_device_capability(p.device)
    if (major, minor) < (8, 9):
        return f"the GPU (sm_{major}{minor}) has no FP8 tensor cores (needs sm_89 or newer)"
    return None


def _config():
    """torchao's FP8 config under its current or its older name."""
    import torchao.quantization as q

    for name in ("Float8DynamicActivationFloat8WeightConfig",):
        if hasattr(q, name):
            kwargs = {}
            if hasattr(q, "PerRow"):
                kwargs["granularity"] = q.PerRow()
            return getattr(q, name)(**kwargs)
    if hasattr(q, "float8_dynamic_activation_float8_weight"):
        return q.float8_dynamic_activation_float8_weight()
    raise RuntimeError("this torchao has no FP8 dynamic activation/weight config")


def quantize_dit_fp8(model: nn.Module) -> str | None:
    """Convert the blocks' linears in place; returns why it was not done, or None when done."""
    why = fp8_unavailable(model)
    if why:
        return why
    from torchao.quantization import quantize_

    def in_blocks(module: nn.Module, fqn: str) -> bool:
        return isinstance(module, nn.Linear) and fqn.startswith("blocks.")

    try:
        quantize_(model, _config(), filter_fn=in_blocks)
    except Exception as exc:  # noqa: BLE001 - report, keep bf16
        return f"torchao failed: {exc}"
    return None
