"""Configuration of the mimicry lab: one frozen, JSON round-tripping :class:`LabConfig` and its preset
table :data:`LAB_PRESETS` (``tiny`` for tests, ``cpu`` for the 2-core benchmark, ``gpu`` for a bigger
model and resolution on an accelerator)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from sfumato.config import JSONConfig, require

__all__ = ["LAB_PRESETS", "LabConfig"]


@dataclass(frozen=True, kw_only=True)
class LabConfig(JSONConfig):
    """What the lab trains and how it samples.

    ``size``: the square training resolution in pixels (the encoder's latent grid is ``size / 8``).
    ``width``/``depth``: channels of the denoiser's first level and residual blocks per level.
    ``train_steps``/``batch``/``lr``: AdamW optimisation of the rectified-flow loss; ``ema``: decay of the
    weight average used for sampling. ``p_uncond``: share of training labels dropped to the null class
    (classifier-free guidance). ``guidance``/``sample_steps``/``samples_per_class``: Euler sampling.
    ``flip``: also train on the left-right mirrored images (encoded, not flipped in latent space).
    ``encoder``: the autoencoder whose latent space the generator lives in (its decoder makes the images
    the judges read).
    """

    size: int = 128
    width: int = 32
    depth: int = 1
    train_steps: int = 1500
    batch: int = 64
    lr: float = 1e-3
    ema: float = 0.998
    p_uncond: float = 0.1
    guidance: float = 3.0
    sample_steps: int = 30
    samples_per_class: int = 24
    flip: bool = True
    encoder: str = "taef2"

    def __post_init__(self) -> None:
        require(self.size >= 32 and self.size % 32 == 0, f"size must be a multiple of 32 px, got {self.size}")
        require(self.width >= 8 and self.width % 8 == 0, f"width must be a multiple of 8, got {self.width}")
        require(1 <= self.depth <= 8, f"depth must be 1..8, got {self.depth}")
        require(self.train_steps >= 1 and self.batch >= 1, "train_steps and batch must be >= 1")
        require(0 < self.lr < 1, f"lr must be in (0, 1), got {self.lr}")
        require(0 <= self.ema < 1, f"ema must be in [0, 1), got {self.ema}")
        require(0 <= self.p_uncond < 1, f"p_uncond must be in [0, 1), got {self.p_uncond}")
        require(self.guidance >= 0, f"guidance must be >= 0, got {self.guidance}")
        require(self.sample_steps >= 1 and self.samples_per_class >= 1, "sample_steps, samples_per_class >= 1")

    @classmethod
    def preset(cls, name: str = "cpu", **overrides: Any) -> LabConfig:
        """The named preset of :data:`LAB_PRESETS`, with keyword overrides."""
        require(name in LAB_PRESETS, f"unknown lab preset {name!r}; choose one of {sorted(LAB_PRESETS)}")
        return replace(LAB_PRESETS[name], **overrides)


LAB_PRESETS: dict[str, LabConfig] = {
    # mechanics only: a few seconds on a CPU (the CI test still asserts learning on a toy set)
    "tiny": LabConfig(size=32, width=16, depth=1, train_steps=300, batch=32, lr=2e-3, ema=0.95,
                      sample_steps=10, samples_per_class=8, flip=False),
    # the 2-core benchmark: 128 px images, 16x16x32 TAEF2 latents, ~0.8 M parameters, ~6-9 min per run
    "cpu": LabConfig(),
    # the 2-core concept benchmark: cats and dogs need a wider model than painters' styles (the ``cpu``
    # preset's cat samples read as dogs even to a probe trained on held-out AI views); ~3.1 M parameters
    "cpu-wide": LabConfig(width=64, train_steps=2000, samples_per_class=32),
    # an accelerator: a wider, deeper model at twice the resolution, trained longer
    "gpu": LabConfig(size=256, width=128, depth=2, train_steps=20000, batch=128, lr=5e-4, ema=0.9995),
}
