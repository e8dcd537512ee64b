"""Tiny AutoEncoders (TAE) — distilled stand-ins for the latent spaces of current text-to-image models.

TAEF2 approximates the FLUX.2 VAE (32 latent channels, 8x down) and has a decoder, which gives the
*AI view*; TAESana approximates Sana's DC-AE (32 channels, 32x down), encoder only. Architecture facts
follow the published TAESD family (Ollin Boer Bohan, github.com/madebyollin/taesd, MIT); this is an
independent re-implementation that loads the published state dicts.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from sfumato import models
from sfumato.encoders.base import Encoder


def _conv(a: int, b: int, *, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(a, b, 3, stride=stride, padding=1, bias=bias)


class _Block(nn.Module):
    def __init__(self, c: int, *, mid_norm: bool = False) -> None:
        super().__init__()
        self.conv = nn.Sequential(_conv(c, c), nn.ReLU(), _conv(c, c), nn.ReLU(), _conv(c, c))
        self.pool = (
            nn.Sequential(
                nn.Conv2d(c, 4 * c, 1, bias=False), nn.GroupNorm(4, 4 * c), nn.ReLU(),
                nn.Conv2d(4 * c, c, 1, bias=False),
            )
            if mid_norm
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return F.relu(self.conv(x) + x)


class _Clamp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


def tae_encoder(*, latent_channels: int = 32, mid_norm: bool = True) -> nn.Sequential:
    """TAESD-style 8x encoder; ``mid_norm`` adds TAEF2's group-norm pooling in the last three blocks."""
    layers: list[nn.Module] = [_conv(3, 64), _Block(64)]
    for stage in range(3):
        layers.append(_conv(64, 64, stride=2, bias=False))
        layers += [_Block(64, mid_norm=mid_norm and stage == 2) for _ in range(3)]
    layers.append(_conv(64, latent_channels))
    return nn.Sequential(*layers)


def tae_decoder(*, latent_channels: int = 32, mid_norm: bool = True) -> nn.Sequential:
    """TAESD-style 8x decoder; ``mid_norm`` adds TAEF2's group-norm pooling in the first three blocks."""
    layers: list[nn.Module] = [_Clamp(), _conv(latent_channels, 64), nn.ReLU()]
    for stage in range(3):
        layers += [_Block(64, mid_norm=mid_norm and stage == 0) for _ in range(3)]
        layers += [nn.Upsample(scale_factor=2), _conv(64, 64, bias=False)]
    layers += [_Block(64), _conv(64, 3)]
    return nn.Sequential(*layers)


def taesana_encoder(*, latent_channels: int = 32) -> nn.Sequential:
    """TAESana 32x encoder (no mid-block norm)."""
    layers: list[nn.Module] = [_conv(3, 32, stride=2), nn.ReLU(), _conv(32, 64, stride=2), nn.ReLU(), _Block(64)]
    for _ in range(3):
        layers.append(_conv(64, 64, stride=2, bias=False))
        layers += [_Block(64) for _ in range(3)]
    layers.append(_conv(64, latent_channels))
    return nn.Sequential(*layers)


class TAEEncoder(Encoder):
    """A TAE encoder (+ optional decoder) as an :class:`Encoder`. Build with :func:`load_tae`."""

    def __init__(self, id: str, encoder: nn.Module, decoder: nn.Module | None, *, downscale: int,
                 latent_channels: int = 32) -> None:
        super().__init__()
        self.id = id
        self.encoder = encoder
        self.decoder = decoder
        self.downscale = downscale
        self.latent_channels = latent_channels

    @property
    def has_decoder(self) -> bool:
        return self.decoder is not None

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(dtype=next(self.encoder.parameters()).dtype)
        h, w = x.shape[-2:]
        d = self.downscale
        ph, pw = (-h) % d, (-w) % d
        if ph or pw:  # replicate-pad to a multiple of the downscale factor
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if self.decoder is None:
            return super().decode(z)
        z = z.to(dtype=next(self.decoder.parameters()).dtype)
        return self.decoder(z).clamp(0, 1)


_SPECS = {
    "taef2": ("taef2/taef2_encoder.pth", "taef2/taef2_decoder.pth", 8),
    "taesana": ("taesana/taesana_encoder.pth", None, 32),
}


def load_tae(name: str = "taef2", *, models_dir: str | os.PathLike[str] | None = None,
             with_decoder: bool = True) -> TAEEncoder:
    """Load a real TAE from weight files resolved by :func:`sfumato.models.resolve` (float32, frozen)."""
    if name not in _SPECS:
        raise ValueError(f"unknown TAE {name!r}; choose one of {sorted(_SPECS)}")
    enc_name, dec_name, down = _SPECS[name]
    enc = taesana_encoder() if name == "taesana" else tae_encoder()
    sd, sha = models.load_registered(enc_name, path=models_dir)
    enc.load_state_dict({k: v.float() for k, v in sd.items()})
    shas = {enc_name: sha}
    dec = None
    if with_decoder and dec_name is not None:
        dec = tae_decoder()
        sd, sha = models.load_registered(dec_name, path=models_dir)
        dec.load_state_dict({k: v.float() for k, v in sd.items()})
        shas[dec_name] = sha
    out = TAEEncoder(name, enc, dec, downscale=down)
    out.weights_sha256 = shas
    return out.float().to(memory_format=torch.channels_last).freeze()


def tiny_random_tae(*, seed: int = 0, with_decoder: bool = True) -> TAEEncoder:
    """A randomly initialised TAEF2-shaped model for fast mechanical tests (no weights needed)."""
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG untouched
        torch.manual_seed(seed)
        out = TAEEncoder("tae-random", tae_encoder(), tae_decoder() if with_decoder else None, downscale=8)
    out.weights_sha256 = {"random": f"seed-{seed}"}
    return out.freeze()
