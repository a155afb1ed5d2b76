"""FlashTalk's DiT: Wan2.1 image-to-video transformer with per-block audio cross-attention.

Parameter names follow the official checkpoint exactly, so the released ``config.json`` +
``diffusion_pytorch_model.safetensors.index.json`` + shards load strictly. Every size comes
from :class:`DiTConfig`, so a tiny config runs every code path of the 14B model.

Shapes in comments: B batch, L visual tokens, C dim, H heads, D head_dim,
T latent frames, h/w latent height/width, N_t latent frames, S tokens per latent frame.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..base import EngineError
from .attention import attention
from .checkpoint import (
    load_sharded_safetensors,
    load_strict,
    read_json,
    save_sharded_safetensors,
)
from .parallel import SequenceParallel, TokenLayout

logger = logging.getLogger("avatar.engines.flashtalk")


@dataclass
class DiTConfig:
    """Sizes of the DiT. Field names match the official ``config.json``.

    The official file carries the first block of fields. The second block is absent from it
    (the reference code hard-codes them); they default to the official values here and are
    written to ``config.json`` only so that tiny test models can shrink them.
    """

    # --- in the official config.json
    model_type: str = "i2v"
    text_len: int = 512
    in_dim: int = 36
    dim: int = 5120
    ffn_dim: int = 13824
    freq_dim: int = 256
    out_dim: int = 16
    num_heads: int = 40
    num_layers: int = 40
    eps: float = 1e-6
    audio_window: int = 5
    intermediate_dim: int = 512
    output_dim: int = 768
    context_tokens: int = 32
    vae_scale: int = 4
    norm_input_visual: bool = True
    norm_output_audio: bool = True
    # --- not in the official config.json: official defaults
    text_dim: int = 4096
    patch_size: tuple[int, int, int] = (1, 2, 2)
    qk_norm: bool = True
    cross_attn_norm: bool = True
    window_size: tuple[int, int] = (-1, -1)
    clip_dim: int = 1280
    clip_tokens: int = 257
    audio_blocks: int = 12  # wav2vec2 layers used (hidden_states[1:])
    audio_channels: int = 768  # wav2vec2 width

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @classmethod
    def from_dict(cls, raw: dict) -> DiTConfig:
        """Build from a ``config.json`` dict; diffusers' ``_``-fields are dropped, unknown keys logged."""
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in raw.items() if k in names}
        unknown = sorted(k for k in raw if k not in names and not k.startswith("_"))
        if unknown:
            logger.info("DiT config.json: ignoring fields %s", unknown)
        for key in ("patch_size", "window_size"):
            if key in known:
                known[key] = tuple(known[key])
        cfg = cls(**known)
        if cfg.model_type != "i2v":
            raise EngineError(
                f"DiT config model_type is {cfg.model_type!r}; FlashTalk needs 'i2v'."
            )
        if cfg.dim % cfg.num_heads or cfg.head_dim % 2:
            raise EngineError(
                f"DiT config: dim {cfg.dim} must split into {cfg.num_heads} even-sized heads."
            )
        if cfg.window_size != (-1, -1):
            raise EngineError(
                "DiT config: windowed attention (window_size) is not supported; use (-1, -1)."
            )
        return cfg

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["patch_size"] = list(self.patch_size)
        d["window_size"] = list(self.window_size)
        return {"_class_name": "WanModel", **d}


# ---------------------------------------------------------------------------------------
# small pieces


class WanRMSNorm(nn.Module):
    """RMSNorm over the last dim, computed in fp32 (weights keep the model dtype)."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (
            xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        ).type_as(x) * self.weight


class WanLayerNorm(nn.LayerNorm):
    """LayerNorm computed in fp32, weights included (parameter-free unless ``elementwise_affine``)."""

    def __init__(
        self, dim: int, eps: float = 1e-6, elementwise_affine: bool = False
    ) -> None:
        super().__init__(dim, eps=eps, elementwise_affine=elementwise_affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = None if self.weight is None else self.weight.float()
        b = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps).type_as(x)


def run_fp32(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run a Linear (or a Sequential of Linear/activations) in fp32 whatever the weights' dtype and autocast."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.float()
        for m in module if isinstance(module, nn.Sequential) else [module]:
            if isinstance(m, nn.Linear):
                x = F.linear(
                    x, m.weight.float(), None if m.bias is None else m.bias.float()
                )
            else:
                x = m(x)
        return x


def sinusoidal_embedding(dim: int, t: torch.Tensor) -> torch.Tensor:
    """[B] raw timesteps (0..1000) -> [B, dim] as cos|sin, computed in fp64 like the reference."""
    half = dim // 2
    pos = t.to(torch.float64)
    freqs = torch.pow(
        10000.0, -torch.arange(half, dtype=torch.float64, device=t.device) / half
    )
    arg = torch.outer(pos, freqs)
    return torch.cat([torch.cos(arg), torch.sin(arg)], dim=1)


def rope_frequencies(
    head_dim: int, max_len: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """Angles for 3D RoPE: head_dim/2 complex channels split t|h|w (44|42|42 real dims at 128).

    Returns (angles [max_len, head_dim/2] fp64, split sizes in complex channels).
    """
    d = head_dim
    parts = [d - 4 * (d // 6), 2 * (d // 6), 2 * (d // 6)]  # real dims per axis
    angles = []
    for p in parts:
        inv = 1.0 / torch.pow(10000.0, torch.arange(0, p, 2, dtype=torch.float64) / p)
        angles.append(torch.outer(torch.arange(max_len, dtype=torch.float64), inv))
    return torch.cat(angles, dim=1), [p // 2 for p in parts]


class RoPE3D(nn.Module):
    """Rotary positions over (frame, row, column); positions restart at 0 every call."""

    def __init__(self, head_dim: int) -> None:
        super().__init__()
        # a plain attribute, not a buffer: the checkpoint carries no RoPE tables, and
        # model.to(bf16) must not round the fp64 angles
        self.angles, self.split = rope_frequencies(head_dim)
        self._cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def cos_sin(
        self, grid: tuple[int, int, int], device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        key = (grid, str(device))
        if key not in self._cache:
            f, h, w = grid
            at, ah, aw = self.angles.split(self.split, dim=1)
            ang = torch.cat(
                [
                    at[:f].view(f, 1, 1, -1).expand(f, h, w, -1),
                    ah[:h].view(1, h, 1, -1).expand(f, h, w, -1),
                    aw[:w].view(1, 1, w, -1).expand(f, h, w, -1),
                ],
                dim=-1,
            ).reshape(f * h * w, 1, -1)  # [L, 1, D/2]
            self._cache[key] = (
                ang.cos().float().to(device),
                ang.sin().float().to(device),
            )
        return self._cache[key]

    def forward(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        return self.rotate(x, *self.cos_sin(grid, x.device))

    @staticmethod
    def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        # x [B, L, H, D], cos/sin [L, 1, D/2]; adjacent channel pairs are (real, imag)
        b, n, heads, d = x.shape
        xf = x.float().reshape(b, n, heads, d // 2, 2)
        re, im = xf[..., 0], xf[..., 1]
        out = torch.stack([re * cos - im * sin, re * sin + im * cos], dim=-1)
        return out.flatten(3).type_as(x)


# ---------------------------------------------------------------------------------------
# attention modules


class WanSelfAttention(nn.Module):
    """Self-attention over all visual tokens with q/k RMSNorm over the full dim and 3D RoPE."""

    def __init__(
        self, dim: int, num_heads: int, qk_norm: bool = True, eps: float = 1e-6
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.norm_q = WanRMSNorm(dim, eps) if qk_norm else nn.Identity()
        self.norm_k = WanRMSNorm(dim, eps) if qk_norm else nn.Identity()

    def forward(self, x: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
        b, n, _ = x.shape
        shape = (b, n, self.num_heads, self.head_dim)
        q = self.norm_q(self.q(x)).view(shape)  # [B, L, H, D] (L: this rank's tokens)
        k = self.norm_k(self.k(x)).view(shape)
        v = self.v(x).view(shape)
        q = RoPE3D.rotate(q, layout.cos, layout.sin)
        k = RoPE3D.rotate(k, layout.cos, layout.sin)
        if layout.sp is None:
            out = attention(q, k, v)
        else:  # Ulysses all-to-all over heads (see parallel.py)
            out = layout.sp.self_attention(q, k, v, layout.total)
        return self.o(out.flatten(2))


class WanI2VCrossAttention(nn.Module):
    """Cross-attention to the text tokens plus a separate k_img/v_img branch over CLIP tokens."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        clip_tokens: int,
        qk_norm: bool = True,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.clip_tokens = clip_tokens
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.k_img = nn.Linear(dim, dim)
        self.v_img = nn.Linear(dim, dim)
        self.norm_q = WanRMSNorm(dim, eps) if qk_norm else nn.Identity()
        self.norm_k = WanRMSNorm(dim, eps) if qk_norm else nn.Identity()
        self.norm_k_img = WanRMSNorm(dim, eps) if qk_norm else nn.Identity()

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        # x [B, L, C]; context [B, clip_tokens + text_len, C]: image tokens first
        b = x.shape[0]
        heads = (b, -1, self.num_heads, self.head_dim)
        ctx_img, ctx_txt = (
            context[:, : self.clip_tokens],
            context[:, self.clip_tokens :],
        )
        q = self.norm_q(self.q(x)).view(heads)
        k = self.norm_k(self.k(ctx_txt)).view(heads)
        v = self.v(ctx_txt).view(heads)
        k_img = self.norm_k_img(self.k_img(ctx_img)).view(heads)
        v_img = self.v_img(ctx_img).view(heads)
        out = attention(q, k, v) + attention(
            q, k_img, v_img
        )  # padded text takes part, as upstream
        return self.o(out.flatten(2))


class AudioCrossAttention(nn.Module):
    """Each latent frame's visual tokens attend to that frame's audio tokens (single speaker).

    No q/k norm and no RoPE: the official single-speaker path uses neither.
    """

    def __init__(self, dim: int, audio_dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q_linear = nn.Linear(dim, dim)
        self.kv_linear = nn.Linear(audio_dim, dim * 2)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self, x: torch.Tensor, audio: torch.Tensor, layout: TokenLayout
    ) -> torch.Tensor:
        # x [B, L, C] (this rank's tokens); audio [B, N_t, M, audio_dim]
        b, n, c = x.shape
        n_t, m = audio.shape[1], audio.shape[2]
        kv = self.kv_linear(audio).view(b, n_t, m, 2, self.num_heads, self.head_dim)
        if layout.sp is None and n == layout.total:
            s = n // n_t
            xq = x.reshape(b * n_t, s, c)  # regroup per latent frame
            q = self.q_linear(xq).view(b * n_t, s, self.num_heads, self.head_dim)
            kv = kv.flatten(0, 1)
            out = attention(q, kv[:, :, 0], kv[:, :, 1])  # [B*N_t, S, H, D]
            return self.proj(out.reshape(b * n_t, s, c)).reshape(b, n, c)
        # a shard may start or end inside a latent frame: one attention per run of tokens of
        # the same frame (padding tokens, past the real sequence, get zeros)
        q = self.q_linear(x).view(b, n, self.num_heads, self.head_dim)
        out = q.new_zeros(b, n, self.num_heads, self.head_dim)
        for f, lo, hi in layout.frame_runs():
            out[:, lo:hi] = attention(q[:, lo:hi], kv[:, f, :, 0], kv[:, f, :, 1])
        return self.proj(out.flatten(2))


# ---------------------------------------------------------------------------------------
# block, head, projections


class WanAttentionBlock(nn.Module):
    """One DiT block: modulated self-attn, text/image cross-attn, audio cross-attn, modulated FFN."""

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        dim = cfg.dim
        self.norm1 = WanLayerNorm(dim, cfg.eps)
        self.self_attn = WanSelfAttention(dim, cfg.num_heads, cfg.qk_norm, cfg.eps)
        self.norm3 = (
            WanLayerNorm(dim, cfg.eps, elementwise_affine=True)
            if cfg.cross_attn_norm
            else nn.Identity()
        )
        self.cross_attn = WanI2VCrossAttention(
            dim, cfg.num_heads, cfg.clip_tokens, cfg.qk_norm, cfg.eps
        )
        self.norm2 = WanLayerNorm(dim, cfg.eps)
        self.ffn = nn.Sequential(
            nn.Linear(dim, cfg.ffn_dim),
            nn.GELU(approximate="tanh"),
            nn.Linear(cfg.ffn_dim, dim),
        )
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)
        self.norm_x = WanLayerNorm(
            dim, cfg.eps, elementwise_affine=cfg.norm_input_visual
        )
        self.audio_cross_attn = AudioCrossAttention(dim, cfg.output_dim, cfg.num_heads)

    def forward(
        self,
        x: torch.Tensor,
        e: torch.Tensor,
        context: torch.Tensor,
        audio: torch.Tensor,
        layout: TokenLayout,
    ) -> torch.Tensor:
        # x [B, L, C] in the model dtype; e [B, 6, C] fp32. As upstream: modulation and the gated
        # residual adds are computed in fp32, then the stream goes back to the model dtype.
        dtype = x.dtype
        shift1, scale1, gate1, shift2, scale2, gate2 = (
            self.modulation.float() + e
        ).chunk(6, dim=1)
        y = self.self_attn(
            (self.norm1(x).float() * (1 + scale1) + shift1).to(dtype), layout
        )
        x = (x.float() + y.float() * gate1).to(dtype)
        x = x + self.cross_attn(self.norm3(x), context)
        x = x + self.audio_cross_attn(self.norm_x(x), audio, layout)  # ungated
        y = self.ffn((self.norm2(x).float() * (1 + scale2) + shift2).to(dtype))
        return (x.float() + y.float() * gate2).to(dtype)


class Head(nn.Module):
    """Final modulated LayerNorm + Linear to patch pixels of the output latent."""

    def __init__(
        self, dim: int, out_dim: int, patch_size: tuple[int, int, int], eps: float
    ) -> None:
        super().__init__()
        self.norm = WanLayerNorm(dim, eps)
        self.head = nn.Linear(dim, out_dim * math.prod(patch_size))
        self.modulation = nn.Parameter(torch.randn(1, 2, dim) / dim**0.5)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        # e [B, C] fp32; the whole head runs in fp32, as upstream
        shift, scale = (self.modulation.float() + e.unsqueeze(1)).chunk(2, dim=1)
        return run_fp32(self.head, self.norm(x).float() * (1 + scale) + shift)


class MLPProj(nn.Module):
    """CLIP image tokens [B, 257, 1280] -> [B, 257, dim]."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(
            WanLayerNorm(in_dim, 1e-5, True),
            nn.Linear(in_dim, in_dim),
            nn.GELU(),
            nn.Linear(in_dim, out_dim),
            WanLayerNorm(
                out_dim, 1e-5, True
            ),  # torch.nn.LayerNorm upstream (eps 1e-5), fp32 here
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class AudioProjModel(nn.Module):
    """Per-video-frame wav2vec windows -> ``context_tokens`` audio tokens per latent frame."""

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        per_entry = cfg.audio_blocks * cfg.audio_channels
        self.context_tokens = cfg.context_tokens
        self.output_dim = cfg.output_dim
        self.proj1 = nn.Linear(cfg.audio_window * per_entry, cfg.intermediate_dim)
        self.proj1_vf = nn.Linear(
            (cfg.audio_window + cfg.vae_scale - 1) * per_entry, cfg.intermediate_dim
        )
        self.proj2 = nn.Linear(cfg.intermediate_dim, cfg.intermediate_dim)
        self.proj3 = nn.Linear(
            cfg.intermediate_dim, cfg.context_tokens * cfg.output_dim
        )
        self.norm = (
            WanLayerNorm(cfg.output_dim, 1e-5, True)
            if cfg.norm_output_audio
            else nn.Identity()
        )

    def forward(self, first: torch.Tensor, later: torch.Tensor) -> torch.Tensor:
        # first [B, 1, W, blocks, ch]; later [B, N_t-1, W+vae_scale-1, blocks, ch]
        b = first.shape[0]
        h_first = torch.relu(self.proj1(first.flatten(2)))  # [B, 1, I]
        h_later = torch.relu(self.proj1_vf(later.flatten(2)))  # [B, N_t-1, I]
        h = torch.relu(self.proj2(torch.cat([h_first, h_later], dim=1)))  # [B, N_t, I]
        tokens = self.proj3(h).view(b, h.shape[1], self.context_tokens, self.output_dim)
        return self.norm(tokens)  # [B, N_t, M, output_dim]


def group_audio_windows(
    audio: torch.Tensor, vae_scale: int, audio_window: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split per-video-frame windows into the first latent frame's and the later frames' inputs.

    audio [B, 1 + vae_scale*(N_t-1), W, blocks, ch] -> first [B, 1, W, ...] and
    later [B, N_t-1, W + vae_scale - 1, ...]. A later latent frame covers ``vae_scale`` video
    frames and takes window entries 0..mid of its first frame, the centre entry of each
    middle frame, and entries mid..W-1 of its last frame (8 entries at W=5, vae_scale=4).
    """
    mid = audio_window // 2
    first = audio[:, :1]
    b, f = audio.shape[:2]
    later = audio[:, 1:].reshape(b, (f - 1) // vae_scale, vae_scale, *audio.shape[2:])
    first_of = later[:, :, 0, : mid + 1]  # entries 0..mid of the first video frame
    middle = later[:, :, 1:-1, mid : mid + 1].flatten(
        2, 3
    )  # centre entry of each middle frame
    last_of = later[:, :, -1, mid:]  # entries mid..W-1 of the last video frame
    return first, torch.cat([first_of, middle, last_of], dim=2)


# ---------------------------------------------------------------------------------------
# the model


class FlashTalkDiT(nn.Module):
    """Wan2.1 I2V DiT + audio conditioning, with the official parameter names."""

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        self.config = cfg
        dim = cfg.dim
        self.patch_embedding = nn.Conv3d(
            cfg.in_dim, dim, kernel_size=cfg.patch_size, stride=cfg.patch_size
        )
        self.text_embedding = nn.Sequential(
            nn.Linear(cfg.text_dim, dim),
            nn.GELU(approximate="tanh"),
            nn.Linear(dim, dim),
        )
        self.time_embedding = nn.Sequential(
            nn.Linear(cfg.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim)
        )
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, dim * 6))
        self.blocks = nn.ModuleList(
            [WanAttentionBlock(cfg) for _ in range(cfg.num_layers)]
        )
        self.head = Head(dim, cfg.out_dim, cfg.patch_size, cfg.eps)
        self.img_emb = MLPProj(cfg.clip_dim, dim)
        self.audio_proj = AudioProjModel(cfg)
        self.rope = RoPE3D(cfg.head_dim)

    # -- loading / saving in the official layout

    @classmethod
    def from_pretrained(
        cls,
        folder: str | Path,
        *,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> FlashTalkDiT:
        """Build from ``folder/config.json`` and load the sharded safetensors strictly."""
        folder = Path(folder)
        cfg = DiTConfig.from_dict(read_json(folder / "config.json"))
        # built on the meta device so the 14B model never exists twice in memory
        with torch.device("meta"):
            model = cls(cfg)
        # shards go straight to the target device: no 38 GB detour through host memory on a GPU box
        state = load_sharded_safetensors(folder, device=device)
        load_strict(model, state, what=f"DiT in {folder}", assign=True)
        model.rope = RoPE3D(cfg.head_dim)
        return model.to(device=device, dtype=dtype).eval()

    def save_pretrained(
        self, folder: str | Path, *, max_shard_bytes: int = 10 * 2**30
    ) -> None:
        """Write ``config.json`` + index + shards, as the official release does."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(self.config.to_dict(), indent=2))
        state = {k: v for k, v in self.state_dict().items()}
        save_sharded_safetensors(state, folder, max_shard_bytes=max_shard_bytes)

    # -- forward

    def embed_context(
        self, text: torch.Tensor | list[torch.Tensor], clip_fea: torch.Tensor
    ) -> torch.Tensor:
        """Text [L_i, text_dim] per sample (zero-padded to text_len) + CLIP [B, 257, 1280] -> [B, 257+text_len, C].

        Depends only on the avatar, so the pipeline computes it once per session.
        """
        cfg = self.config
        if isinstance(text, torch.Tensor) and text.dim() == 3:
            text = list(text)
        padded = torch.stack(
            [
                F.pad(
                    u[: cfg.text_len],
                    (0, 0, 0, cfg.text_len - min(len(u), cfg.text_len)),
                )
                for u in text
            ]
        )
        ctx_txt = self.text_embedding(
            padded.to(self.patch_embedding.weight.dtype)
        )  # [B, text_len, C]
        ctx_img = self.img_emb(clip_fea.to(ctx_txt.dtype))  # [B, 257, C]
        return torch.cat([ctx_img, ctx_txt], dim=1)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        y: torch.Tensor,
        audio: torch.Tensor,
        *,
        context: torch.Tensor | None = None,
        text: torch.Tensor | list[torch.Tensor] | None = None,
        clip_fea: torch.Tensor | None = None,
        sp: SequenceParallel | None = None,
    ) -> torch.Tensor:
        """Predict the flow velocity.

        x [B, 16, T, h, w] noisy latent; t [B] on the 0..1000 scale; y [B, 20, T, h, w];
        audio [B, 1 + vae_scale*(T-1), W, blocks, ch] per-video-frame windows;
        either ``context`` from :meth:`embed_context` or ``text`` + ``clip_fea``.
        Returns [B, 16, T, h, w] in fp32.

        With ``sp`` (a :class:`~.parallel.SequenceParallel` over N ranks, every rank calling
        with the same inputs), each rank runs the blocks on 1/N of the tokens and every rank
        returns the full result.
        """
        cfg = self.config
        if context is None:
            if text is None or clip_fea is None:
                raise ValueError("pass context, or text and clip_fea")
            context = self.embed_context(text, clip_fea)
        b = x.shape[0]
        xin = torch.cat([x, y], dim=1).to(
            self.patch_embedding.weight.dtype
        )  # [B, 36, T, h, w]
        tokens = self.patch_embedding(xin)  # [B, C, T, h/2, w/2]
        grid = tuple(tokens.shape[2:])
        tokens = tokens.flatten(2).transpose(1, 2)  # [B, L, C]
        total = tokens.shape[1]
        cos, sin = self.rope.cos_sin(grid, tokens.device)  # [L, 1, D/2]
        if sp is None:
            layout = TokenLayout(grid, cos, sin, 0, total, total)
        else:
            tokens = sp.shard(tokens, total)  # [B, L/N, C]
            start, _ = sp.bounds(total)
            layout = TokenLayout(
                grid, sp.shard(cos, total, dim=0), sp.shard(sin, total, dim=0),
                start, tokens.shape[1], total, sp,
            )  # fmt: skip

        # the timestep path runs in fp32 even with bf16 weights, as upstream (autocast to fp32 there)
        e = run_fp32(
            self.time_embedding, sinusoidal_embedding(cfg.freq_dim, t).float()
        )  # [B, C]
        e0 = run_fp32(self.time_projection, e).unflatten(1, (6, cfg.dim))  # [B, 6, C]

        first, later = group_audio_windows(audio, cfg.vae_scale, cfg.audio_window)
        audio_tokens = self.audio_proj(
            first.to(tokens.dtype), later.to(tokens.dtype)
        )  # [B, N_t, M, 768]

        h = tokens  # [B, L, C] in the model dtype (bf16 on GPU), as upstream
        for block in self.blocks:
            h = block(h, e0, context, audio_tokens, layout)
        out = self.head(h, e)  # [B, L, prod(patch)*16]
        if sp is not None:
            out = sp.gather(out, total)  # every rank gets the whole sequence back
        return self.unpatchify(out.float(), grid, b)

    def unpatchify(
        self, x: torch.Tensor, grid: tuple[int, int, int], b: int
    ) -> torch.Tensor:
        """[B, L, p_t*p_h*p_w*c] -> [B, c, T, h, w]."""
        pt, ph, pw = self.config.patch_size
        f, gh, gw = grid
        c = self.config.out_dim
        x = x.view(b, f, gh, gw, pt, ph, pw, c)
        x = torch.einsum("bfhwpqrc->bcfphqwr", x)
        return x.reshape(b, c, f * pt, gh * ph, gw * pw)
