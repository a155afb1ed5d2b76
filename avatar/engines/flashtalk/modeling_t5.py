"""umT5-XXL text encoder (encoder only), with the key names of ``models_t5_umt5-xxl-enc-bf16.pth``.

Used only at avatar preparation: the prompt's features never change during a call.
umT5 keeps one relative-position table per layer (``blocks.N.pos_embedding``); attention is
unscaled, as in T5.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ..base import EngineError
from .attention import attention
from .checkpoint import load_pth, load_strict

T5_FILE = "models_t5_umt5-xxl-enc-bf16.pth"
T5_TOKENIZER_DIR = "google/umt5-xxl"


@dataclass
class T5Config:
    """umT5-XXL encoder sizes (official defaults; the .pth has no config)."""

    vocab: int = 256384
    dim: int = 4096
    dim_attn: int = 4096
    dim_ffn: int = 10240
    num_heads: int = 64
    num_layers: int = 24
    num_buckets: int = 32
    shared_pos: bool = False
    text_len: int = 512


class T5LayerNorm(nn.Module):
    """T5's scale-only RMS norm, in fp32."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * torch.rsqrt(x.float().pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return self.weight * x.type_as(self.weight)


class T5RelativeEmbedding(nn.Module):
    """Bucketed bidirectional relative position bias -> [1, H, Lq, Lk]."""

    def __init__(self, num_buckets: int, num_heads: int, max_dist: int = 128) -> None:
        super().__init__()
        self.num_buckets = num_buckets
        self.max_dist = max_dist
        self.embedding = nn.Embedding(num_buckets, num_heads)

    def forward(self, lq: int, lk: int) -> torch.Tensor:
        device = self.embedding.weight.device
        rel = torch.arange(lk, device=device).unsqueeze(0) - torch.arange(
            lq, device=device
        ).unsqueeze(1)
        half = self.num_buckets // 2  # bidirectional: half the buckets per sign
        buckets = (rel > 0).long() * half
        rel = rel.abs()
        max_exact = half // 2
        large = (
            max_exact
            + (
                torch.log(rel.float().clamp(min=1) / max_exact)
                / math.log(self.max_dist / max_exact)
                * (half - max_exact)
            ).long()
        )
        large = large.clamp(max=half - 1)
        buckets = buckets + torch.where(rel < max_exact, rel, large)
        return self.embedding(buckets).permute(2, 0, 1).unsqueeze(0).contiguous()


class T5Attention(nn.Module):
    def __init__(self, dim: int, dim_attn: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim_attn // num_heads
        self.q = nn.Linear(dim, dim_attn, bias=False)
        self.k = nn.Linear(dim, dim_attn, bias=False)
        self.v = nn.Linear(dim, dim_attn, bias=False)
        self.o = nn.Linear(dim_attn, dim, bias=False)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, n = x.shape[:2]
        shape = (b, n, self.num_heads, self.head_dim)
        out = attention(
            self.q(x).view(shape),
            self.k(x).view(shape),
            self.v(x).view(shape),
            bias=bias,
            scale=1.0,
        )
        return self.o(out.reshape(b, n, -1))


class T5FeedForward(nn.Module):
    """Gated-GELU (tanh) feed-forward."""

    def __init__(self, dim: int, dim_ffn: int) -> None:
        super().__init__()
        self.gate = nn.Sequential(
            nn.Linear(dim, dim_ffn, bias=False), nn.GELU(approximate="tanh")
        )
        self.fc1 = nn.Linear(dim, dim_ffn, bias=False)
        self.fc2 = nn.Linear(dim_ffn, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x) * self.gate(x))


def _fp16_clamp(x: torch.Tensor) -> torch.Tensor:
    if x.dtype == torch.float16 and torch.isinf(x).any():
        limit = torch.finfo(x.dtype).max - 1000
        x = x.clamp(-limit, limit)
    return x


class T5Block(nn.Module):
    def __init__(self, cfg: T5Config) -> None:
        super().__init__()
        self.norm1 = T5LayerNorm(cfg.dim)
        self.attn = T5Attention(cfg.dim, cfg.dim_attn, cfg.num_heads)
        self.norm2 = T5LayerNorm(cfg.dim)
        self.ffn = T5FeedForward(cfg.dim, cfg.dim_ffn)
        self.pos_embedding = (
            None
            if cfg.shared_pos
            else T5RelativeEmbedding(cfg.num_buckets, cfg.num_heads)
        )

    def forward(
        self, x: torch.Tensor, mask_bias: torch.Tensor, pos_bias: torch.Tensor | None
    ) -> torch.Tensor:
        e = (
            pos_bias
            if self.pos_embedding is None
            else self.pos_embedding(x.shape[1], x.shape[1])
        )
        x = _fp16_clamp(x + self.attn(self.norm1(x), e.to(x.dtype) + mask_bias))
        return _fp16_clamp(x + self.ffn(self.norm2(x)))


class UMT5Encoder(nn.Module):
    """Token ids [B, L] (+ mask) -> features [B, L, dim]."""

    def __init__(self, cfg: T5Config | None = None) -> None:
        super().__init__()
        self.config = cfg = cfg or T5Config()
        self.token_embedding = nn.Embedding(cfg.vocab, cfg.dim)
        self.pos_embedding = (
            T5RelativeEmbedding(cfg.num_buckets, cfg.num_heads)
            if cfg.shared_pos
            else None
        )
        self.blocks = nn.ModuleList([T5Block(cfg) for _ in range(cfg.num_layers)])
        self.norm = T5LayerNorm(cfg.dim)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.token_embedding(ids)
        n = ids.shape[1]
        mask_bias = torch.zeros(mask.shape[0], 1, 1, n, device=x.device, dtype=x.dtype)
        mask_bias = mask_bias.masked_fill(
            mask.view(mask.shape[0], 1, 1, n) == 0, torch.finfo(x.dtype).min
        )
        pos = self.pos_embedding(n, n) if self.pos_embedding is not None else None
        for block in self.blocks:
            x = block(x, mask_bias, pos)
        return self.norm(x)

    @classmethod
    def from_pth(
        cls,
        path: str | Path,
        *,
        dtype: torch.dtype = torch.float32,
        device: str = "cpu",
    ) -> UMT5Encoder:
        """Load the official encoder .pth strictly (a ``t5_config.json`` beside it overrides sizes)."""
        path = Path(path)
        side = path.with_name("t5_config.json")
        cfg = T5Config(**json.loads(side.read_text())) if side.is_file() else T5Config()
        with torch.device("meta"):
            model = cls(cfg)
        load_strict(model, load_pth(path), what=f"umT5 encoder {path}", assign=True)
        return model.to(device=device, dtype=dtype).eval()

    def save_pth(self, path: str | Path) -> None:
        """Write the state dict (and ``t5_config.json`` for non-official sizes)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({k: v.contiguous() for k, v in self.state_dict().items()}, str(path))
        if asdict(self.config) != asdict(T5Config()):
            path.with_name("t5_config.json").write_text(
                json.dumps(asdict(self.config), indent=2)
            )


class TextEncoder:
    """Prompt -> umT5 features trimmed to the real token count ([L_real, dim])."""

    def __init__(
        self,
        checkpoint_dir: str | Path,
        *,
        dtype: torch.dtype = torch.float32,
        device: str = "cpu",
    ) -> None:
        from transformers import AutoTokenizer

        checkpoint_dir = Path(checkpoint_dir)
        tok_dir = checkpoint_dir / T5_TOKENIZER_DIR
        if not tok_dir.is_dir():
            raise EngineError(
                f"umT5 tokenizer folder {tok_dir} is missing; copy google/umt5-xxl there."
            )
        self.tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
        self.model = UMT5Encoder.from_pth(
            checkpoint_dir / T5_FILE, dtype=dtype, device=device
        )
        self.device = device

    @torch.no_grad()
    def __call__(self, prompt: str) -> torch.Tensor:
        text = re.sub(
            r"\s+", " ", prompt
        ).strip()  # Wan cleans whitespace before tokenising
        enc = self.tokenizer(
            [text], padding="max_length", truncation=True, max_length=self.model.config.text_len,
            add_special_tokens=True, return_attention_mask=True, return_tensors="pt",
        )  # fmt: skip
        ids = enc["input_ids"].to(self.device)
        mask = enc["attention_mask"].to(self.device)
        out = self.model(ids, mask)
        return out[0, : int(mask.sum())].float().cpu()
