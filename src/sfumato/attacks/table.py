"""The attack table: one row per attack family, shared by ``sfumato check`` and EOT.

Each :class:`AttackFamily` names a family (the name ``sfumato check``'s registry calls its *kind* and
EOT calls its *transform*) and holds, in kornia's pattern of a pure function plus a sampler with
replayable parameters:

* ``real`` — the real operation (:mod:`sfumato.attacks.real`, :mod:`sfumato.attacks.impress`): numpy
  float ``HxWx3`` in [0, 1] → same, 8-bit; :meth:`AttackFamily.apply_real` runs it on a params dataclass;
* ``differentiable`` — its differentiable stand-in (:mod:`sfumato.attacks.differentiable`,
  :mod:`sfumato.attacks.diff_jpeg`): torch ``NCHW`` → same, where one exists;
* ``params`` and ``sample`` — the family's :mod:`sfumato.attacks.params` dataclass and its one sampler
  (:mod:`sfumato.attacks.sampling`), consumed by both.

Torch is imported only when a stand-in or IMPRESS is first used, so ``import sfumato.attacks`` stays light.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sfumato.attacks import params, real, sampling

__all__ = ["FAMILIES", "AttackFamily", "describe_jpeg", "stand_in_names"]


def describe_jpeg(quality: int, subsampling: str) -> str:
    """The description of a real JPEG attack."""
    return f"JPEG quality {quality}, {subsampling} chroma (Pillow/libjpeg)"


@dataclass(frozen=True, kw_only=True)
class AttackFamily:
    """One attack family: its real operation, its differentiable stand-in, its params and sampler.

    ``real_kwargs(params)`` gives the real operation's keyword arguments (without the seed, which
    :meth:`apply_real` adds for ``random`` families from ``params.seed``); ``label(params)`` names and
    describes a sampled real attack; ``has_stand_in``: :attr:`differentiable` exists.
    """

    name: str
    params: type
    real: Callable[..., np.ndarray]
    real_kwargs: Callable[[Any], dict[str, Any]]
    sample: Callable[..., Any] | None = None
    label: Callable[[Any], tuple[str, str]] | None = None
    has_stand_in: bool = False
    random: bool = False
    needs_autoencoder: bool = False
    geometric: bool = False

    @property
    def differentiable(self) -> Callable[..., Any] | None:
        """The stand-in ``fn(x, params) -> x`` (torch NCHW; ``encoder=`` too when it needs an autoencoder)."""
        return _stand_ins()[self.name] if self.has_stand_in else None

    def apply_real(self, rgb: np.ndarray, params: Any, **context: Any) -> np.ndarray:
        """Run the real operation with ``params`` (``context``: ``autoencoder=``, ``upscaler=``, ...)."""
        if not isinstance(params, self.params):
            raise TypeError(f"the {self.name} attack takes {self.params.__name__}, got {type(params).__name__}")
        kw = self.real_kwargs(params)
        if self.random:
            kw["seed"] = int(params.seed)
        return self.real(rgb, **kw, **context)


def _stand_ins() -> dict[str, Callable[..., Any]]:
    from sfumato.attacks.diff_jpeg import diff_jpeg
    from sfumato.attacks.differentiable import (
        gaussian_blur,
        gaussian_noise,
        random_crop,
        resize_roundtrip,
        tae_roundtrip,
    )

    return {"jpeg": diff_jpeg, "resize": resize_roundtrip, "crop": random_crop, "noise": gaussian_noise,
            "blur": gaussian_blur, "tae": tae_roundtrip}


def _impress(rgb: np.ndarray, **kw: Any) -> np.ndarray:
    from sfumato.attacks.impress import impress_purify  # torch-heavy: imported on first use

    return impress_purify(rgb, **kw)


def _crop_kwargs(p: params.CropParams) -> dict[str, Any]:
    if (p.top, p.left) != (0.5, 0.5):
        raise ValueError(f"the real crop is centred (top = left = 0.5), got top={p.top}, left={p.left}")
    return {"fraction": p.fraction, "method": "lanczos"}


_TABLE = (
    AttackFamily(
        name="jpeg", params=params.JpegParams, real=real.jpeg, sample=sampling.sample_jpeg, has_stand_in=True,
        real_kwargs=lambda p: {"quality": p.quality, "subsampling": p.subsampling},
        label=lambda p: (f"jpeg-q{p.quality}-{p.subsampling.replace(':', '')}",
                         describe_jpeg(p.quality, p.subsampling))),
    AttackFamily(
        name="resize", params=params.ResizeParams, real=real.resize_roundtrip, sample=sampling.sample_resize,
        has_stand_in=True, real_kwargs=lambda p: {"scale": p.scale, "method": p.mode},
        label=lambda p: (f"resize-x{p.scale}-{p.mode}",
                         f"downscale x{p.scale} per side and back, Pillow {p.mode}")),
    AttackFamily(
        name="crop", params=params.CropParams, real=real.center_crop, sample=sampling.sample_crop,
        has_stand_in=True, geometric=True, real_kwargs=_crop_kwargs,
        label=lambda p: (f"crop-{p.fraction}",
                         f"central {p.fraction:.1%} of each side, resized back (Pillow Lanczos)")),
    AttackFamily(
        name="noise", params=params.NoiseParams, real=real.gaussian_noise, sample=sampling.sample_noise,
        has_stand_in=True, random=True, real_kwargs=lambda p: {"sigma": p.sigma},
        label=lambda p: (f"noise-{p.sigma}", f"Gaussian noise, sigma {p.sigma} (seeded)")),
    AttackFamily(
        name="blur", params=params.BlurParams, real=real.gaussian_blur, sample=sampling.sample_blur,
        has_stand_in=True, real_kwargs=lambda p: {"radius": p.sigma},
        label=lambda p: (f"blur-r{p.sigma}", f"Gaussian blur, sigma {p.sigma} px (Pillow GaussianBlur)")),
    AttackFamily(
        name="median", params=params.MedianParams, real=real.median_filter, sample=sampling.sample_median,
        real_kwargs=lambda p: {"size": p.size},
        label=lambda p: (f"median-{p.size}", f"{p.size}x{p.size} median filter (Pillow MedianFilter)")),
    AttackFamily(
        name="noisy_upscale", params=params.NoisyUpscaleParams, real=real.noisy_upscale,
        sample=sampling.sample_noisy_upscale, random=True,
        real_kwargs=lambda p: {"sigma": p.sigma, "factor": p.factor},
        label=lambda p: (f"noisy-upscale-{p.sigma}", f"noisy upscaling, noise sigma {p.sigma}, classical stand-in")),
    AttackFamily(
        name="tae", params=params.TaeParams, real=real.tae_roundtrip, sample=sampling.sample_tae,
        has_stand_in=True, needs_autoencoder=True, real_kwargs=lambda p: {}),
    AttackFamily(
        name="impress", params=params.ImpressParams, real=_impress, random=True, needs_autoencoder=True,
        real_kwargs=lambda p: {"steps": p.steps, "resolution": p.resolution, "init_noise": p.init_noise}),
)

FAMILIES: dict[str, AttackFamily] = {f.name: f for f in _TABLE}
"""Every attack family by name, in table order (EOT's transforms are the ones with a stand-in, in this order)."""


def stand_in_names() -> tuple[str, ...]:
    """The families with a differentiable stand-in, in table order: EOT's transform names."""
    return tuple(f.name for f in _TABLE if f.has_stand_in)
