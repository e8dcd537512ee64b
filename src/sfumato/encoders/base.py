"""The encoder adapter interface shared by every latent-space model Sfumato targets."""

from __future__ import annotations

import torch
from torch import nn


class Encoder(nn.Module):
    """A frozen, differentiable image encoder (and optional decoder) of a generative model.

    Public convention: images are float RGB in [0, 1], NCHW; ``encode`` returns the model's raw latent
    and ``decode`` (when :attr:`has_decoder`) maps a latent back to an image in [0, 1] — the *AI view*.
    Device and dtype follow the inputs: move the module with ``.to()`` as with any ``nn.Module``.

    Attributes:
        id: short stable identifier (``"taef2"``, ``"diffusers:stabilityai/sd-vae-ft-mse"`` ...).
        weights_sha256: SHA-256 of each weight file, by file name (for manifests).
        latent_channels: channels of the latent.
        downscale: spatial reduction factor (8 for SD/FLUX VAEs, 32 for Sana's DC-AE).
    """

    id: str = "encoder"
    latent_channels: int = 0
    downscale: int = 8

    def __init__(self) -> None:
        super().__init__()
        self.weights_sha256: dict[str, str] = {}

    @property
    def has_decoder(self) -> bool:
        return False

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"encoder {self.id!r} has no decoder; the AI view is unavailable")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)

    def freeze(self) -> Encoder:
        """Put the module in eval mode with gradients off for every parameter (done at load)."""
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self

    def train(self, mode: bool = True) -> Encoder:
        # Encoders are inference-only: refuse to switch to training mode silently.
        return super().train(False)

    def describe(self) -> dict:
        """JSON-ready description for manifests."""
        return {"id": self.id, "weights_sha256": dict(self.weights_sha256)}
