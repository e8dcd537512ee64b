"""A small class-conditional U-Net that predicts the rectified-flow velocity of a latent.

The architecture is the usual diffusion U-Net reduced to its core (Ho et al., "Denoising Diffusion
Probabilistic Models", NeurIPS 2020; Dhariwal & Nichol, "Diffusion Models Beat GANs on Image Synthesis",
NeurIPS 2021): residual blocks with GroupNorm and SiLU, the noise level and the class injected as a
per-channel scale and shift (adaptive GroupNorm), three resolutions, no attention (the latents are
16x16 for 128 px images; three levels already see the whole grid). The class table has one extra row,
the *null* class, for classifier-free guidance (Ho & Salimans, 2022). Latents are standardised per
channel with statistics stored in the model, so samples come back in the encoder's own units.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["LatentDenoiser"]


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, c // 4) or 1, c)


def time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of ``t`` in [0, 1] (``(B,)`` -> ``(B, dim)``)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=t.dtype) / half)
    a = 1000.0 * t[:, None] * freqs[None]
    return torch.cat([a.sin(), a.cos()], dim=1)


class _ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb: int) -> None:
        super().__init__()
        self.n1, self.c1 = _norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.film = nn.Linear(emb, 2 * c_out)
        self.n2, self.c2 = _norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.c2.weight)
        nn.init.zeros_(self.c2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        h = self.c1(nn.functional.silu(self.n1(x)))
        scale, shift = self.film(e)[:, :, None, None].chunk(2, dim=1)
        h = self.n2(h) * (1 + scale) + shift
        return self.skip(x) + self.c2(nn.functional.silu(h))


class LatentDenoiser(nn.Module):
    """``forward(z_t, t, label) -> v``: the velocity of standardised latents ``z_t`` (``(B, C, H, W)``, H
    and W multiples of 4) at time ``t`` (``(B,)`` in [0, 1]) for class ``label`` (``(B,)`` long, in
    ``0..n_classes``; ``n_classes`` itself is the null class)."""

    def __init__(self, *, latent_channels: int, n_classes: int, width: int = 64, depth: int = 2) -> None:
        super().__init__()
        self.n_classes = n_classes
        self.config = {"latent_channels": latent_channels, "n_classes": n_classes, "width": width, "depth": depth}
        emb = 4 * width
        self.width = width
        self.t_mlp = nn.Sequential(nn.Linear(width, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.classes = nn.Embedding(n_classes + 1, emb)
        chans = [width, 2 * width, 2 * width]
        self.inp = nn.Conv2d(latent_channels, width, 3, padding=1)
        self.down = nn.ModuleList()
        self.pool = nn.ModuleList()
        c = width
        skips = []
        for i, ch in enumerate(chans):
            level = nn.ModuleList()
            for _ in range(depth):
                level.append(_ResBlock(c, ch, emb))
                c = ch
                skips.append(c)
            self.down.append(level)
            self.pool.append(nn.Conv2d(c, c, 3, stride=2, padding=1) if i < len(chans) - 1 else nn.Identity())
        self.mid = nn.ModuleList([_ResBlock(c, c, emb), _ResBlock(c, c, emb)])
        self.up = nn.ModuleList()
        self.unpool = nn.ModuleList()
        for i, ch in reversed(list(enumerate(chans))):
            level = nn.ModuleList()
            for _ in range(depth):
                level.append(_ResBlock(c + skips.pop(), ch, emb))
                c = ch
            self.up.append(level)
            self.unpool.append(nn.Upsample(scale_factor=2, mode="nearest") if i > 0 else nn.Identity())
        self.out_norm, self.out = _norm(c), nn.Conv2d(c, latent_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.register_buffer("mean", torch.zeros(1, latent_channels, 1, 1))
        self.register_buffer("std", torch.ones(1, latent_channels, 1, 1))

    def set_statistics(self, latents: torch.Tensor) -> None:
        """Store the per-channel mean and standard deviation of the training latents."""
        self.mean.copy_(latents.mean(dim=(0, 2, 3), keepdim=True))
        self.std.copy_(latents.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-4))

    def standardise(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.mean) / self.std

    def unstandardise(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.std + self.mean

    def forward(self, z: torch.Tensor, t: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        e = self.t_mlp(time_embedding(t, self.width)) + self.classes(label)
        e = nn.functional.silu(e)
        h = self.inp(z)
        skips = []
        for level, pool in zip(self.down, self.pool, strict=True):
            for block in level:
                h = block(h, e)
                skips.append(h)
            h = pool(h)
        for block in self.mid:
            h = block(h, e)
        for level, unpool in zip(self.up, self.unpool, strict=True):
            for block in level:
                h = block(torch.cat([h, skips.pop()], dim=1), e)
            h = unpool(h)
        return self.out(nn.functional.silu(self.out_norm(h)))
