"""One parameter sampler per attack family, shared by ``sfumato check``'s random attacks and by EOT.

Each sampler ``sample_<family>(draw, **ranges) -> params`` draws a :mod:`sfumato.attacks.params`
dataclass from a source of random numbers ``draw`` (a :class:`Draws`): the same source state gives the
same params (replayable), and the params alone replay the attack. The two sources wrap the generators
the two callers hold, each drawing exactly as it always has:

* :class:`NumpyDraws` — a ``numpy.random.Generator`` (:func:`sfumato.attacks.registry.sample_attack`);
* :class:`TorchDraws` — a ``torch.Generator`` (the EOT mixture, :mod:`sfumato.optimise.eot`): every draw
  is one float64 uniform on the generator's device.

``digits`` rounds continuous draws (the real attacks name a draw by its rounded value).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, TypeVar

import numpy as np

from sfumato.attacks.params import (
    RESIZE_MODES,
    SUBSAMPLING,
    BlurParams,
    CropParams,
    JpegParams,
    MedianParams,
    NoiseParams,
    NoisyUpscaleParams,
    ResizeParams,
    TaeParams,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "Draws",
    "NumpyDraws",
    "TorchDraws",
    "sample_blur",
    "sample_crop",
    "sample_jpeg",
    "sample_median",
    "sample_noise",
    "sample_noisy_upscale",
    "sample_resize",
    "sample_tae",
]

T = TypeVar("T")


class Draws(Protocol):
    """A source of random numbers for the samplers."""

    def unit(self) -> float:
        """A uniform float in [0, 1)."""

    def uniform(self, lo: float, hi: float) -> float:
        """A uniform float in [lo, hi)."""

    def integer(self, lo: int, hi: int) -> int:
        """A uniform integer in [lo, hi] (both inclusive)."""

    def choice(self, options: Sequence[T]) -> T:
        """One of ``options``, uniformly."""

    def seed(self) -> int:
        """A seed for a random operation, in [0, 2**31)."""


class NumpyDraws:
    """:class:`Draws` from a ``numpy.random.Generator``."""

    def __init__(self, rng: np.random.Generator) -> None:
        if not isinstance(rng, np.random.Generator):
            raise TypeError("sample_attack needs a numpy Generator, e.g. np.random.default_rng(0)")
        self.rng = rng

    def unit(self) -> float:
        return float(self.rng.random())

    def uniform(self, lo: float, hi: float) -> float:
        return float(self.rng.uniform(lo, hi))

    def integer(self, lo: int, hi: int) -> int:
        return int(self.rng.integers(lo, hi + 1))

    def choice(self, options: Sequence[T]) -> T:
        return options[int(self.rng.integers(len(options)))]

    def seed(self) -> int:
        return int(self.rng.integers(0, 2**31 - 1))


class TorchDraws:
    """:class:`Draws` from a ``torch.Generator``: each draw is one float64 uniform ``u`` on its device."""

    def __init__(self, generator: torch.Generator) -> None:
        import torch

        self._torch = torch
        self.generator = generator

    def unit(self) -> float:
        g = self.generator
        return float(self._torch.rand((), generator=g, device=g.device, dtype=self._torch.float64))

    def uniform(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * self.unit()

    def integer(self, lo: int, hi: int) -> int:
        return int(lo + min(hi - lo, int(self.unit() * (hi - lo + 1))))

    def choice(self, options: Sequence[T]) -> T:
        return options[min(len(options) - 1, int(self.unit() * len(options)))]

    def seed(self) -> int:
        return int(self.unit() * 2**31)


def _continuous(draw: Draws, bounds: tuple[float, float], digits: int | None) -> float:
    v = draw.uniform(*bounds)
    return v if digits is None else round(v, digits)


def sample_jpeg(draw: Draws, *, quality: tuple[int, int] = (60, 95), subsampling: Sequence[str] = SUBSAMPLING,
                rounding: str = "ste") -> JpegParams:
    """Quality uniform in the inclusive range, then a subsampling."""
    return JpegParams(quality=draw.integer(*quality), subsampling=draw.choice(subsampling), rounding=rounding)


def sample_resize(draw: Draws, *, scale: tuple[float, float] = (0.5, 0.9), modes: Sequence[str] = RESIZE_MODES,
                  digits: int | None = None) -> ResizeParams:
    """Scale uniform in the range, then a filter."""
    return ResizeParams(scale=_continuous(draw, scale, digits), mode=draw.choice(modes))


def sample_crop(draw: Draws, *, fraction: tuple[float, float] = (0.9, 1.0), centred: bool = False,
                digits: int | None = None) -> CropParams:
    """Fraction uniform in the range, then (unless ``centred``) the window's position, uniform."""
    f = _continuous(draw, fraction, digits)
    if centred:
        return CropParams(fraction=f)
    return CropParams(fraction=f, top=draw.unit(), left=draw.unit())


def sample_noise(draw: Draws, *, sigma: tuple[float, float] = (0.005, 0.03), digits: int | None = None) -> NoiseParams:
    """Standard deviation uniform in the range, then the noise seed."""
    s = _continuous(draw, sigma, digits)
    return NoiseParams(sigma=s, seed=draw.seed())


def sample_blur(draw: Draws, *, sigma: tuple[float, float] = (0.5, 1.5), digits: int | None = None) -> BlurParams:
    """Standard deviation (pixels) uniform in the range."""
    return BlurParams(sigma=_continuous(draw, sigma, digits))


def sample_median(draw: Draws, *, sizes: Sequence[int] = (3, 5)) -> MedianParams:
    """One of the window sizes."""
    return MedianParams(size=int(draw.choice(sizes)))


def sample_noisy_upscale(draw: Draws, *, sigma: tuple[float, float] = (0.05, 0.1), factor: float = 0.5,
                         digits: int | None = None) -> NoisyUpscaleParams:
    """Noise standard deviation uniform in the range, then the noise seed."""
    s = _continuous(draw, sigma, digits)
    return NoisyUpscaleParams(sigma=s, seed=draw.seed(), factor=factor)


def sample_tae(draw: Draws) -> TaeParams:
    """Nothing to draw."""
    return TaeParams()
