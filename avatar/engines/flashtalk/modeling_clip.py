"""CLIP ViT-H/14 visual tower (open-clip XLM-RoBERTa-large variant), official key names.

``models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth`` holds the whole CLIP model
(``visual.*``, ``textual.*``, ``log_scale``). FlashTalk needs only the image tokens after
block 31 of 32, so only ``visual.*`` is built and checked strictly; the text tower's keys
are skipped unread. Used only at avatar preparation.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .attention import attention
from .checkpoint import load_pth, load_strict

CLIP_FILE = "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class CLIPVisionConfig:
    """ViT-H/14 sizes (official defaults; the .pth has no config)."""

    image_size: int = 224
    patch_size: int = 14
    dim: int = 1280
    mlp_ratio: int = 4
    out_dim: int = 1024
    num_heads: int = 16
    num_layers: int = 32
    norm_eps: float = 1e-5


class LayerNorm(nn.LayerNorm):
    """LayerNorm in fp32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type_as(x)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.to_qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, c = x.shape
        q, k, v = (
            self.to_qkv(x).view(b, s, 3, self.num_heads, c // self.num_heads).unbind(2)
        )
        return self.proj(attention(q, k, v).reshape(b, s, c))


class AttentionBlock(nn.Module):
    """Pre-norm transformer block with an exact-GELU MLP."""

    def __init__(self, cfg: CLIPVisionConfig) -> None:
        super().__init__()
        d = cfg.dim
        self.norm1 = LayerNorm(d, eps=cfg.norm_eps)
        self.attn = SelfAttention(d, cfg.num_heads)
        self.norm2 = LayerNorm(d, eps=cfg.norm_eps)
        self.mlp = nn.Sequential(
            nn.Linear(d, d * cfg.mlp_ratio),
            nn.GELU(),
            nn.Linear(d * cfg.mlp_ratio, d),
            nn.Dropout(0.0),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """Images [B, 3, 224, 224] -> tokens [B, 1 + patches, dim] after the second-to-last block."""

    def __init__(self, cfg: CLIPVisionConfig) -> None:
        super().__init__()
        self.config = cfg
        n = (cfg.image_size // cfg.patch_size) ** 2
        self.patch_embedding = nn.Conv2d(
            3, cfg.dim, cfg.patch_size, stride=cfg.patch_size, bias=False
        )
        self.cls_embedding = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.pos_embedding = nn.Parameter(torch.zeros(1, n + 1, cfg.dim))
        self.pre_norm = LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.transformer = nn.Sequential(
            *[AttentionBlock(cfg) for _ in range(cfg.num_layers)]
        )
        self.post_norm = LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.head = nn.Parameter(torch.zeros(cfg.dim, cfg.out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        x = (
            self.patch_embedding(x.to(self.patch_embedding.weight.dtype))
            .flatten(2)
            .transpose(1, 2)
        )
        x = (
            torch.cat([self.cls_embedding.expand(b, -1, -1), x], dim=1)
            + self.pos_embedding
        )
        x = self.pre_norm(x)
        return self.transformer[:-1](
            x
        )  # FlashTalk uses the features after block 31 of 32


class CLIPVisual(nn.Module):
    """Holder so the state-dict keys read ``visual.*`` like the official file."""

    def __init__(self, cfg: CLIPVisionConfig | None = None) -> None:
        super().__init__()
        self.visual = VisionTransformer(cfg or CLIPVisionConfig())

    @classmethod
    def from_pth(
        cls,
        path: str | Path,
        *,
        dtype: torch.dtype = torch.float32,
        device: str = "cpu",
    ) -> CLIPVisual:
        """Load ``visual.*`` of the official CLIP .pth strictly; ``textual.*`` and ``log_scale`` are skipped."""
        path = Path(path)
        side = path.with_name("clip_config.json")
        cfg = (
            CLIPVisionConfig(**json.loads(side.read_text()))
            if side.is_file()
            else CLIPVisionConfig()
        )
        with torch.device("meta"):
            model = cls(cfg)
        load_strict(
            model,
            load_pth(path),
            what=f"CLIP {path}",
            ignore_prefixes=("textual.", "log_scale"),
            assign=True,
        )
        return model.to(device=device, dtype=dtype).eval()

    def save_pth(
        self, path: str | Path, extra: dict[str, torch.Tensor] | None = None
    ) -> None:
        """Write ``visual.*`` (+ ``extra`` keys such as ``log_scale``), and ``clip_config.json`` for tiny sizes."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.contiguous() for k, v in self.state_dict().items()}
        state.update(extra or {})
        torch.save(state, str(path))
        if asdict(self.visual.config) != asdict(CLIPVisionConfig()):
            path.with_name("clip_config.json").write_text(
                json.dumps(asdict(self.visual.config), indent=2)
            )

    @torch.no_grad()
    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [-1, 1] -> [B, 1 + patches, dim] fp32 (squashed bicubic to 224, no crop)."""
        size = self.visual.config.image_size
        x = F.interpolate(
            image.float(), size=(size, size), mode="bicubic", align_corners=False
        )
        x = x.mul(0.5).add(0.5)
        mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
        return self.visual((x - mean) / std).float()
