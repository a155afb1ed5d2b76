"""Sequence parallelism for the DiT over N ranks (``torch.distributed``), Ulysses style.

Every rank holds the full DiT weights and 1/N of the visual tokens of a chunk (the token
sequence is padded to a multiple of N; padded tokens are masked out as keys and dropped at
the end). Per block:

- **self-attention**: q/k/v of the local tokens for all heads are exchanged with one
  all-to-all so that each rank holds *all* tokens for H/N heads, attends, and a second
  all-to-all brings the result back to the local tokens for all heads (DeepSpeed-Ulysses).
  When N does not divide the head count (40 heads: N = 3, 6, 7 ...), keys and values are
  all-gathered instead and each rank attends its own queries over all keys (more traffic,
  same numbers).
- **text/image cross-attention**: local queries against the full context (the context is
  the same on every rank; no communication), as upstream.
- **audio cross-attention**: each local token attends to the 32 audio tokens of its own
  latent frame; a shard may start or end inside a frame, so the local tokens are split into
  per-frame runs (upstream does the same with a block-diagonal mask).
- modulation, norms, FFN and the head are per token: local.

At the end the head outputs are all-gathered, so every rank has the full velocity and the
sampler's state stays identical on all ranks. The math is the single-device math: only the
place where each token's numbers are computed changes.

The same code runs on CUDA (NCCL) and on CPU (gloo, used by the tests).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from .attention import attention


class SequenceParallel:
    """The DiT's view of a process group: rank, size and the collectives it needs."""

    def __init__(self, group: dist.ProcessGroup | None = None) -> None:
        self.group = group
        self.world = dist.get_world_size(group)
        self.rank = dist.get_rank(group)

    # -- token sharding

    def padded_len(self, total: int) -> int:
        return -(-total // self.world) * self.world

    def bounds(self, total: int) -> tuple[int, int]:
        """(start, stop) of this rank's slice of the padded sequence (stop may pass ``total``)."""
        per = self.padded_len(total) // self.world
        return self.rank * per, (self.rank + 1) * per

    def shard(self, x: torch.Tensor, total: int, dim: int = 1) -> torch.Tensor:
        """This rank's slice of ``x`` along ``dim`` (zero-padded to a multiple of the world size)."""
        pad = self.padded_len(total) - total
        if pad:
            shape = list(x.shape)
            shape[dim] = pad
            x = torch.cat([x, x.new_zeros(shape)], dim=dim)
        start, stop = self.bounds(total)
        return x.narrow(dim, start, stop - start).contiguous()

    def gather(self, x: torch.Tensor, total: int, dim: int = 1) -> torch.Tensor:
        """All ranks' slices concatenated along ``dim``, padding dropped: the inverse of :meth:`shard`."""
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(self.world)]
        dist.all_gather(parts, x, group=self.group)
        return torch.cat(parts, dim=dim).narrow(dim, 0, total)

    def broadcast(self, x: torch.Tensor, src: int = 0) -> torch.Tensor:
        dist.broadcast(x, src=src, group=self.group)
        return x

    # -- self-attention

    def _all_to_all(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()  # first: empty_like would copy a permuted tensor's strides
        out = torch.empty_like(x)
        dist.all_to_all_single(out, x, group=self.group)
        return out

    def self_attention(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, total: int
    ) -> torch.Tensor:
        """Attention of the local queries over the keys of all ranks.

        ``q, k, v`` [B, Ls, H, D] hold this rank's tokens; ``total`` is the real (unpadded)
        token count. Returns [B, Ls, H, D] for the local tokens.
        """
        n = self.world
        b, ls, heads, d = q.shape
        padded = ls * n
        bias = None
        if padded != total:  # padded keys take no part
            bias = torch.zeros(1, 1, 1, padded, device=q.device, dtype=torch.float32)
            bias[..., total:] = float("-inf")
        if heads % n == 0:
            hn = heads // n
            # [B, Ls, 3, N, H/N, D] -> [N, 3, B, Ls, H/N, D]: chunk j goes to rank j
            qkv = torch.stack([q, k, v], dim=2).view(b, ls, 3, n, hn, d)
            got = self._all_to_all(qkv.permute(3, 2, 0, 1, 4, 5))
            # got[i] = rank i's tokens for my heads -> [3, B, N*Ls, H/N, D] in global token order
            full = got.permute(1, 2, 0, 3, 4, 5).reshape(3, b, padded, hn, d)
            out = attention(full[0], full[1], full[2], bias=bias)  # [B, L, H/N, D]
            # back: [N, B, Ls, H/N, D], chunk i = rank i's tokens
            back = self._all_to_all(out.view(b, n, ls, hn, d).permute(1, 0, 2, 3, 4))
            # back[i] = my tokens for rank i's heads -> [B, Ls, H, D]
            return back.permute(1, 2, 0, 3, 4).reshape(b, ls, heads, d)
        # heads do not split evenly: gather keys and values, attend local queries
        kv = self.gather(torch.stack([k, v], dim=0), padded, dim=2)  # [2, B, L, H, D]
        return attention(q, kv[0], kv[1], bias=bias)


@dataclass
class TokenLayout:
    """Where a rank's tokens sit in the chunk: the DiT blocks get this instead of the bare grid.

    ``start`` is the global index of the first local token, ``local`` the number of local
    tokens (padding included), ``total`` the real token count of the chunk; ``cos``/``sin``
    are the RoPE rotations of the local tokens.
    """

    grid: tuple[int, int, int]
    cos: torch.Tensor
    sin: torch.Tensor
    start: int
    local: int
    total: int
    sp: SequenceParallel | None = None

    @property
    def tokens_per_frame(self) -> int:
        return self.grid[1] * self.grid[2]

    def frame_runs(self) -> list[tuple[int, int, int]]:
        """(frame, local start, local stop) for each latent frame the real local tokens touch."""
        s = self.tokens_per_frame
        lo, hi = self.start, min(self.start + self.local, self.total)
        runs = []
        pos = lo
        while pos < hi:
            f = pos // s
            end = min((f + 1) * s, hi)
            runs.append((f, pos - self.start, end - self.start))
            pos = end
        return runs
