"""Wan2.1 causal 3D VAE, ported here with Wan's own parameter names (``Wan2.1_VAE.pth``).

Own port rather than diffusers' ``AutoencoderKLWan`` behind a key converter: the key names
then match the official file one to one (strict loading needs no renaming table), and the
chunked causal encode/decode with its per-call feature cache is spelled out where the
streaming engine can see it.

Video in/out: [B, 3, T, H, W] in [-1, 1]. Latent: [B, z_dim, 1 + (T-1)/4, H/8, W/8],
normalised per channel as (mu - mean) / std. Encoding takes frame 0 alone, then groups of 4;
decoding goes one latent frame at a time. The feature cache (last 2 frames seen by every
causal conv) lives only inside one encode/decode call: no VAE state crosses chunks.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .attention import attention
from .checkpoint import load_pth, load_strict

CACHE_T = 2  # frames of context a causal 3x3x3 conv keeps between calls

# Fixed per-channel latent statistics of the Wan2.1 VAE (16 channels).
WAN21_LATENT_MEAN = [
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
]  # fmt: skip
WAN21_LATENT_STD = [
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
]  # fmt: skip


@dataclass
class VAEConfig:
    """Sizes of the Wan VAE; the defaults are the official Wan2.1 ones (the .pth has no config)."""

    dim: int = 96
    z_dim: int = 16
    dim_mult: list[int] = field(default_factory=lambda: [1, 2, 4, 4])
    num_res_blocks: int = 2
    attn_scales: list[float] = field(default_factory=list)
    temperal_downsample: list[bool] = field(default_factory=lambda: [False, True, True])
    latents_mean: list[float] = field(default_factory=lambda: list(WAN21_LATENT_MEAN))
    latents_std: list[float] = field(default_factory=lambda: list(WAN21_LATENT_STD))


# ---------------------------------------------------------------------------------------
# building blocks


class CausalConv3d(nn.Conv3d):
    """Conv3d padded only towards the past in time; ``cache`` replaces part of that padding."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        pt, ph, pw = self.padding
        self._pad = (pw, pw, ph, ph, 2 * pt, 0)
        self.padding = (0, 0, 0)

    def forward(
        self, x: torch.Tensor, cache: torch.Tensor | None = None
    ) -> torch.Tensor:
        pad = list(self._pad)
        if cache is not None and pad[4] > 0:
            x = torch.cat([cache.to(x), x], dim=2)
            pad[4] -= cache.shape[2]
        return super().forward(F.pad(x, pad))


class RMSNorm(nn.Module):
    """Channel RMS norm (L2-normalise over channels, times sqrt(C) and gamma)."""

    def __init__(self, dim: int, images: bool = True) -> None:
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones(dim, *((1, 1) if images else (1, 1, 1))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) * self.scale * self.gamma


class FeatCache:
    """Per-call list of cached tail frames, one slot per causal conv, visited in a fixed order."""

    REP = "rep"  # marks "first chunk seen" for the temporal upsampler (no cache yet)

    def __init__(self, n: int) -> None:
        self.slots: list = [None] * n
        self.idx = 0

    def conv(self, conv: CausalConv3d, x: torch.Tensor) -> torch.Tensor:
        """Run a causal conv with its cached past and store this input's tail for the next call."""
        prev = self.slots[self.idx]
        tail = x[:, :, -CACHE_T:].clone()
        if tail.shape[2] < CACHE_T and prev is not None:
            tail = torch.cat([prev[:, :, -1:].to(tail), tail], dim=2)
        out = conv(x, prev)
        self.slots[self.idx] = tail
        self.idx += 1
        return out


class Resample(nn.Module):
    """Spatial 2x up/down sampling, with a causal temporal 2x stage in the '3d' modes."""

    def __init__(self, dim: int, mode: str) -> None:
        super().__init__()
        self.mode = mode
        if mode in ("upsample2d", "upsample3d"):
            self.resample = nn.Sequential(
                nn.Upsample(scale_factor=(2.0, 2.0), mode="nearest-exact"),
                nn.Conv2d(dim, dim // 2, 3, padding=1),
            )
            if mode == "upsample3d":
                self.time_conv = CausalConv3d(
                    dim, dim * 2, (3, 1, 1), padding=(1, 0, 0)
                )
        elif mode in ("downsample2d", "downsample3d"):
            self.resample = nn.Sequential(
                nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=(2, 2))
            )
            if mode == "downsample3d":
                self.time_conv = CausalConv3d(
                    dim, dim, (3, 1, 1), stride=(2, 1, 1), padding=(0, 0, 0)
                )
        else:
            raise ValueError(mode)

    def forward(self, x: torch.Tensor, cache: FeatCache) -> torch.Tensor:
        b, c, t = x.shape[:3]
        if self.mode == "upsample3d":
            i = cache.idx
            prev = cache.slots[i]
            if prev is None:
                # first latent frame: no temporal upsampling (it stays one frame)
                cache.slots[i] = FeatCache.REP
            else:
                tail = x[:, :, -CACHE_T:].clone()
                if tail.shape[2] < CACHE_T:
                    before = (
                        torch.zeros_like(tail)
                        if isinstance(prev, str)
                        else prev[:, :, -1:].to(tail)
                    )
                    tail = torch.cat([before, tail], dim=2)
                x = self.time_conv(
                    x, None if isinstance(prev, str) else prev
                )  # [B, 2C, t, H, W]
                cache.slots[i] = tail
                x = x.reshape(b, 2, c, t, *x.shape[3:])
                x = torch.stack((x[:, 0], x[:, 1]), dim=3).reshape(
                    b, c, t * 2, *x.shape[4:]
                )
            cache.idx += 1
        t = x.shape[2]
        y = x.transpose(1, 2).flatten(0, 1)  # [B*t, C, H, W]
        if self.mode.startswith("upsample"):
            y = self.resample[0](y.float()).type_as(
                y
            )  # nearest upsampling in fp32, as upstream
            y = self.resample[1](y)
        else:
            y = self.resample(y)
        x = y.unflatten(0, (b, t)).transpose(1, 2)
        if self.mode == "downsample3d":
            i = cache.idx
            prev = cache.slots[i]
            if prev is None:
                cache.slots[i] = x.clone()  # frame 0 passes through alone
            else:
                tail = x[:, :, -1:].clone()
                x = self.time_conv(torch.cat([prev[:, :, -1:], x], dim=2))
                cache.slots[i] = tail
            cache.idx += 1
        return x


class ResidualBlock(nn.Module):
    """(RMSNorm, SiLU, causal 3x3x3 conv) x 2 plus a 1x1x1 shortcut when widths differ."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            RMSNorm(in_dim, images=False), nn.SiLU(), CausalConv3d(in_dim, out_dim, 3, padding=1),
            RMSNorm(out_dim, images=False), nn.SiLU(), nn.Dropout(0.0), CausalConv3d(out_dim, out_dim, 3, padding=1),
        )  # fmt: skip
        self.shortcut = (
            CausalConv3d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()
        )

    def forward(self, x: torch.Tensor, cache: FeatCache) -> torch.Tensor:
        h = self.shortcut(x)
        for layer in self.residual:
            x = cache.conv(layer, x) if isinstance(layer, CausalConv3d) else layer(x)
        return x + h


class AttentionBlock(nn.Module):
    """Single-head spatial self-attention per frame."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = RMSNorm(dim)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor, cache: FeatCache | None = None) -> torch.Tensor:
        identity = x
        b, c, t, h, w = x.shape
        y = self.norm(x.transpose(1, 2).flatten(0, 1))  # [B*t, C, H, W]
        q, k, v = (
            self.to_qkv(y).flatten(2).transpose(1, 2).unsqueeze(2).chunk(3, dim=-1)
        )  # [B*t, HW, 1, C]
        y = attention(q, k, v).squeeze(2).transpose(1, 2).reshape(b * t, c, h, w)
        y = self.proj(y)
        return y.unflatten(0, (b, t)).transpose(1, 2) + identity


def _run(layer: nn.Module, x: torch.Tensor, cache: FeatCache) -> torch.Tensor:
    if isinstance(layer, CausalConv3d):
        return cache.conv(layer, x)
    if isinstance(layer, (ResidualBlock, Resample, AttentionBlock)):
        return layer(x, cache)
    return layer(x)


class Encoder3d(nn.Module):
    """Video -> 2*z_dim channels (mu | log_var) at stride (4, 8, 8)."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        dims = [cfg.dim * u for u in [1] + cfg.dim_mult]
        scale = 1.0
        self.conv1 = CausalConv3d(3, dims[0], 3, padding=1)
        layers: list[nn.Module] = []
        for i, (in_dim, out_dim) in enumerate(pairwise(dims)):
            for _ in range(cfg.num_res_blocks):
                layers.append(ResidualBlock(in_dim, out_dim))
                if scale in cfg.attn_scales:
                    layers.append(AttentionBlock(out_dim))
                in_dim = out_dim
            if i != len(cfg.dim_mult) - 1:
                layers.append(
                    Resample(
                        out_dim,
                        "downsample3d"
                        if cfg.temperal_downsample[i]
                        else "downsample2d",
                    )
                )
                scale /= 2.0
        self.downsamples = nn.Sequential(*layers)
        self.middle = nn.Sequential(
            ResidualBlock(out_dim, out_dim),
            AttentionBlock(out_dim),
            ResidualBlock(out_dim, out_dim),
        )
        self.head = nn.Sequential(
            RMSNorm(out_dim, images=False),
            nn.SiLU(),
            CausalConv3d(out_dim, cfg.z_dim * 2, 3, padding=1),
        )

    def forward(self, x: torch.Tensor, cache: FeatCache) -> torch.Tensor:
        x = cache.conv(self.conv1, x)
        for seq in (self.downsamples, self.middle, self.head):
            for layer in seq:
                x = _run(layer, x, cache)
        return x


class Decoder3d(nn.Module):
    """z_dim channels -> video, upsampling (4, 8, 8); the first latent frame gives one frame."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        dims = [cfg.dim * u for u in [cfg.dim_mult[-1]] + cfg.dim_mult[::-1]]
        scale = 1.0 / 2 ** (len(cfg.dim_mult) - 2)
        temperal_upsample = cfg.temperal_downsample[::-1]
        self.conv1 = CausalConv3d(cfg.z_dim, dims[0], 3, padding=1)
        self.middle = nn.Sequential(
            ResidualBlock(dims[0], dims[0]),
            AttentionBlock(dims[0]),
            ResidualBlock(dims[0], dims[0]),
        )
        layers: list[nn.Module] = []
        for i, (in_dim, out_dim) in enumerate(pairwise(dims)):
            if i > 0:
                in_dim = in_dim // 2  # the previous Resample halved the width
            for _ in range(cfg.num_res_blocks + 1):
                layers.append(ResidualBlock(in_dim, out_dim))
                if scale in cfg.attn_scales:
                    layers.append(AttentionBlock(out_dim))
                in_dim = out_dim
            if i != len(cfg.dim_mult) - 1:
                layers.append(
                    Resample(
                        out_dim, "upsample3d" if temperal_upsample[i] else "upsample2d"
                    )
                )
                scale *= 2.0
        self.upsamples = nn.Sequential(*layers)
        self.head = nn.Sequential(
            RMSNorm(out_dim, images=False),
            nn.SiLU(),
            CausalConv3d(out_dim, 3, 3, padding=1),
        )

    def forward(self, x: torch.Tensor, cache: FeatCache) -> torch.Tensor:
        x = cache.conv(self.conv1, x)
        for seq in (self.middle, self.upsamples, self.head):
            for layer in seq:
                x = _run(layer, x, cache)
        return x


def _count_causal(m: nn.Module) -> int:
    return sum(isinstance(x, CausalConv3d) for x in m.modules())


class WanVAE(nn.Module):
    """The Wan2.1 VAE with the official key names (encoder.*, conv1, conv2, decoder.*)."""

    def __init__(self, cfg: VAEConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = cfg or VAEConfig()
        self.encoder = Encoder3d(cfg)
        self.conv1 = CausalConv3d(cfg.z_dim * 2, cfg.z_dim * 2, 1)
        self.conv2 = CausalConv3d(cfg.z_dim, cfg.z_dim, 1)
        self.decoder = Decoder3d(cfg)
        self._n_enc = _count_causal(self.encoder)
        self._n_dec = _count_causal(self.decoder)

    @property
    def temporal_stride(self) -> int:
        return 2 ** sum(self.config.temperal_downsample)

    @property
    def spatial_stride(self) -> int:
        return 2 ** (len(self.config.dim_mult) - 1)

    def _scale(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, 1/std) per channel, as upstream keeps them: in the compute dtype (bf16 under
        autocast), with the reciprocal taken in that dtype."""
        dev = like.device.type
        dtype = (
            torch.get_autocast_dtype(dev)
            if torch.is_autocast_enabled(dev)
            else torch.float32
        )
        shape = (1, -1, 1, 1, 1)
        mean = torch.tensor(
            self.config.latents_mean, device=like.device, dtype=dtype
        ).view(shape)
        inv_std = 1.0 / torch.tensor(
            self.config.latents_std, device=like.device, dtype=dtype
        ).view(shape)
        return mean, inv_std

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """[B, 3, T, H, W] in [-1, 1] -> normalised mu [B, z, 1+(T-1)/4, H/8, W/8] (fp32).

        Frame 0 alone, then groups of ``temporal_stride`` frames, through one feature cache.
        """
        st = self.temporal_stride
        if (video.shape[2] - 1) % st:
            raise ValueError(f"VAE.encode needs 1 + {st}k frames, got {video.shape[2]}")
        cache = FeatCache(self._n_enc)
        video = video.to(self.conv1.weight.dtype)
        outs = []
        for i in range(1 + (video.shape[2] - 1) // st):
            cache.idx = 0
            part = (
                video[:, :, :1]
                if i == 0
                else video[:, :, 1 + st * (i - 1) : 1 + st * i]
            )
            outs.append(self.encoder(part, cache))
        mu = self.conv1(torch.cat(outs, dim=2)).chunk(2, dim=1)[
            0
        ]  # the mean; log_var unused
        mean, inv_std = self._scale(mu)
        return ((mu - mean) * inv_std).float()

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latent [B, z, N, h, w] -> video [B, 3, 1+4(N-1), 8h, 8w] clamped to [-1, 1] (fp32).

        One latent frame at a time through one feature cache (the first gives one frame, the others four).
        """
        mean, inv_std = self._scale(z)
        z = z.to(mean.dtype) / inv_std + mean
        x = self.conv2(z.to(self.conv2.weight.dtype))
        cache = FeatCache(self._n_dec)
        outs = []
        for i in range(x.shape[2]):
            cache.idx = 0
            outs.append(self.decoder(x[:, :, i : i + 1], cache))
        return torch.cat(outs, dim=2).float().clamp_(-1, 1)

    # -- official .pth layout

    @classmethod
    def from_pth(
        cls,
        path: str | Path,
        cfg: VAEConfig | None = None,
        *,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> WanVAE:
        """Load ``Wan2.1_VAE.pth`` strictly. A ``vae_config.json`` beside it (tiny test models) overrides sizes."""
        path = Path(path)
        cfg = cfg or cls.config_for(path)
        with torch.device("meta"):
            model = cls(cfg)
        load_strict(model, load_pth(path), what=f"VAE {path}", assign=True)
        return model.to(device=device, dtype=dtype).eval()

    @staticmethod
    def config_for(path: str | Path) -> VAEConfig:
        """The sizes for ``path``: its ``vae_config.json`` (tiny test models) or the official ones."""
        side = Path(path).with_name("vae_config.json")
        return VAEConfig(**json.loads(side.read_text())) if side.is_file() else VAEConfig()

    def save_pth(self, path: str | Path, *, write_config: bool = True) -> None:
        """Write the state dict as Wan does (plain ``torch.save``); tiny sizes go to ``vae_config.json``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({k: v.contiguous() for k, v in self.state_dict().items()}, str(path))
        if write_config and asdict(self.config) != asdict(VAEConfig()):
            path.with_name("vae_config.json").write_text(
                json.dumps(asdict(self.config), indent=2)
            )
