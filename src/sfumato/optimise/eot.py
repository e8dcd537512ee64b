"""Expectation over transformation (EOT): a seeded mixture of the attacks' differentiable stand-ins.

Athalye, Engstrom, Ilyas, Kwok, "Synthesizing Robust Adversarial Examples", ICML 2018: to make a
perturbation survive a family of transformations T, optimise the expected objective
``E_{t ~ T}[ f(t(x + δ)) ]``, estimated by sampling one t per step and back-propagating through it.
The transforms are the rows of the attack table (:mod:`sfumato.attacks.table`) that have a
differentiable stand-in (:data:`TRANSFORMS`: ``jpeg``, ``resize``, ``crop``, ``noise``, ``blur``,
``tae``), named as ``sfumato check`` names their families; each is drawn with the family's one
parameter sampler (:mod:`sfumato.attacks.sampling`) from a ``torch.Generator`` and applied with its
stand-in (:mod:`sfumato.attacks.differentiable`, :mod:`sfumato.attacks.diff_jpeg`). The same generator
state gives the same params, and the same params give the same output (replayable).
:func:`make_transform` returns the ``transform(x, generator) -> x`` callable that
:func:`sfumato.optimise.loop.optimise` applies to ``x0 + δ`` before the objective at every step.

:class:`EOTConfig` says which transforms are drawn with which weights and parameter ranges (a field
``<transform>_<range>`` is the keyword ``<range>`` of that transform's sampler). One transform is
applied per call (the objective takes a single image, not a batch): with probability ``p_identity``
none, otherwise transform k with probability proportional to its weight. ``samples_per_step`` is
recorded for callers that average the objective over several draws per step; the callable itself always
applies exactly one draw. The ``tae`` transform is expensive: give it a small weight.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch

from sfumato.attacks.diff_jpeg import diff_jpeg
from sfumato.attacks.params import RESIZE_MODES, ROUNDING, SUBSAMPLING, JpegParams
from sfumato.attacks.sampling import TorchDraws
from sfumato.attacks.table import FAMILIES, stand_in_names
from sfumato.config import JSONConfig, require

if TYPE_CHECKING:  # pragma: no cover
    from sfumato.encoders.base import Encoder

__all__ = [
    "EOTConfig",
    "EOT_PRESETS",
    "EOT",
    "TRANSFORMS",
    "make_transform",
    "sampler_ranges",
    # re-exported for scripts/validate_diff_jpeg.py; they live in sfumato.attacks
    "JpegParams",
    "diff_jpeg",
]

TRANSFORMS: tuple[str, ...] = stand_in_names()
"""EOT's transforms: the attack table's families with a differentiable stand-in, in table order."""


# ------------------------------------------------------------------------------------------------ config
def _range(v: Any, name: str, lo: float, hi: float) -> None:
    require(isinstance(v, tuple) and len(v) == 2, f"{name} must be a (low, high) pair, got {v!r}")
    require(lo <= v[0] <= v[1] <= hi, f"{name} must satisfy {lo} <= low <= high <= {hi}, got {v!r}")


@dataclass(frozen=True, kw_only=True)
class EOTConfig(JSONConfig):
    """Which transforms EOT draws, how often, and their parameter ranges (uniform within each range).

    Per call: no transform with probability ``p_identity``; otherwise transform k with probability
    ``(1 - p_identity) * w_k / sum(w)`` where ``w_k`` is its ``<name>_weight`` (0 disables it).
    ``jpeg_quality``: inclusive integer range; ``resize_scale``/``crop_fraction``: per-side factors;
    ``noise_sigma``/``blur_sigma``: [0, 1] pixel units / pixels. ``tae`` needs ``make_transform(...,
    encoder=)`` with a decoder. ``samples_per_step`` is for callers that average several draws per step.
    """

    p_identity: float = 0.2
    samples_per_step: int = 1
    jpeg_weight: float = 1.0
    jpeg_quality: tuple[int, int] = (60, 95)
    jpeg_subsampling: tuple[str, ...] = ("4:2:0", "4:4:4")
    jpeg_rounding: Literal["ste", "cubic"] = "ste"
    resize_weight: float = 1.0
    resize_scale: tuple[float, float] = (0.5, 0.9)
    resize_modes: tuple[str, ...] = RESIZE_MODES
    crop_weight: float = 1.0
    crop_fraction: tuple[float, float] = (0.9, 1.0)
    noise_weight: float = 1.0
    noise_sigma: tuple[float, float] = (0.005, 0.03)
    blur_weight: float = 1.0
    blur_sigma: tuple[float, float] = (0.5, 1.5)
    tae_weight: float = 0.0

    def __post_init__(self) -> None:
        require(0 <= self.p_identity <= 1, f"p_identity must be in [0, 1], got {self.p_identity}")
        require(isinstance(self.samples_per_step, int) and self.samples_per_step >= 1,
               f"samples_per_step must be an int >= 1, got {self.samples_per_step!r}")
        for name in TRANSFORMS:
            wt = getattr(self, f"{name}_weight")
            require(isinstance(wt, (int, float)) and wt >= 0 and math.isfinite(wt),
                   f"{name}_weight must be a finite number >= 0 (0 disables {name}), got {wt!r}")
        require(self.p_identity == 1 or sum(self.weights().values()) > 0,
               "every transform weight is 0: give one a positive weight, or set p_identity=1 (no EOT)")
        _range(self.jpeg_quality, "jpeg_quality", 1, 100)
        require(all(isinstance(q, int) for q in self.jpeg_quality), f"jpeg_quality must be ints, got {self.jpeg_quality!r}")
        require(len(self.jpeg_subsampling) >= 1 and set(self.jpeg_subsampling) <= set(SUBSAMPLING),
               f"jpeg_subsampling must be a non-empty subset of {SUBSAMPLING}, got {self.jpeg_subsampling!r}")
        require(self.jpeg_rounding in ROUNDING, f"jpeg_rounding must be one of {ROUNDING}, got {self.jpeg_rounding!r}")
        _range(self.resize_scale, "resize_scale", 1e-3, 1)
        require(len(self.resize_modes) >= 1 and set(self.resize_modes) <= set(RESIZE_MODES),
               f"resize_modes must be a non-empty subset of {RESIZE_MODES}, got {self.resize_modes!r}")
        _range(self.crop_fraction, "crop_fraction", 1e-3, 1)
        _range(self.noise_sigma, "noise_sigma", 0, 1)
        _range(self.blur_sigma, "blur_sigma", 1e-3, 50)

    def weights(self) -> dict[str, float]:
        """Positive weights by transform name (the transforms that can be drawn)."""
        return {n: float(getattr(self, f"{n}_weight")) for n in TRANSFORMS if getattr(self, f"{n}_weight") > 0}


_NONE = dict.fromkeys((f"{n}_weight" for n in TRANSFORMS), 0.0)
EOT_PRESETS: dict[str, EOTConfig] = {
    "none": EOTConfig(p_identity=1.0, **_NONE),
    "light": EOTConfig(p_identity=0.5, jpeg_quality=(75, 95), resize_scale=(0.75, 0.95), crop_fraction=(0.95, 1.0),
                       noise_sigma=(0.002, 0.01), blur_sigma=(0.3, 0.8)),
    "default": EOTConfig(),
    "strong": EOTConfig(p_identity=0.1, jpeg_weight=2.0, jpeg_quality=(50, 95), resize_scale=(0.4, 0.9),
                        noise_sigma=(0.01, 0.05), blur_sigma=(0.5, 2.0), tae_weight=0.5),
}
"""``none``: no transform. ``light``: mild web handling. ``default``: the attack suite's common range
(JPEG 60-95, resize 0.5-0.9, crop 90-100 %, noise σ ≤ 0.03, blur σ ≤ 1.5). ``strong``: wider ranges,
JPEG twice as likely, plus the TAE round trip (needs ``encoder=``)."""


def sampler_ranges(config: EOTConfig, name: str) -> dict[str, Any]:
    """The keyword arguments of transform ``name``'s sampler: the config's ``<name>_<range>`` fields."""
    prefix = f"{name}_"
    return {f.name[len(prefix):]: getattr(config, f.name) for f in dataclasses.fields(config)
            if f.name.startswith(prefix) and f.name != f"{name}_weight"}


class EOT:
    """The ``transform(x, generator) -> x`` callable of :func:`sfumato.optimise.loop.optimise`.

    ``sample(generator)`` draws ``(name, params)`` (``("identity", None)`` for no transform);
    ``apply(x, name, params)`` applies it; calling the object does both and remembers the draw in
    :attr:`last` (for logs and replay).
    """

    def __init__(self, config: EOTConfig, *, encoder: Encoder | None = None) -> None:
        self.config = config
        self.encoder = encoder
        self.last: tuple[str, Any] | None = None
        w = config.weights()
        self._names = tuple(w)
        self._ranges = {n: sampler_ranges(config, n) for n in self._names}
        total = sum(w.values())
        self._cum: list[float] = []
        acc = 0.0
        for n in self._names:
            acc += w[n] / total
            self._cum.append(acc)

    def sample(self, generator: torch.Generator) -> tuple[str, Any]:
        draw = TorchDraws(generator)
        if self.config.p_identity >= 1 or draw.unit() < self.config.p_identity:
            return "identity", None
        u = draw.unit()
        name = next((n for n, c in zip(self._names, self._cum, strict=True) if u < c), self._names[-1])
        sample = FAMILIES[name].sample
        assert sample is not None
        return name, sample(draw, **self._ranges[name])

    def apply(self, x: torch.Tensor, name: str, params: Any) -> torch.Tensor:
        if not (isinstance(x, torch.Tensor) and x.ndim == 4 and x.shape[1] == 3 and x.is_floating_point()):
            got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"EOT transforms take a float RGB batch (N, 3, H, W) in [0, 1], got {got}")
        if name == "identity":
            return x
        if name not in TRANSFORMS:
            raise ValueError(f"unknown EOT transform {name!r}; known: {('identity', *TRANSFORMS)}")
        family = FAMILIES[name]
        fn = family.differentiable
        assert fn is not None
        if family.needs_autoencoder:
            return fn(x, params, encoder=self.encoder)
        return fn(x, params)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        name, params = self.sample(generator)
        self.last = (name, params)
        return self.apply(x, name, params)


def make_transform(config: EOTConfig | str = "default", *, encoder: Encoder | None = None) -> EOT:
    """Build the EOT transform for :func:`sfumato.optimize.optimise` from a config or a preset name
    (:data:`EOT_PRESETS`). ``encoder``: a decoder-equipped encoder, required when ``tae_weight > 0``."""
    if isinstance(config, str):
        require(config in EOT_PRESETS, f"unknown EOT preset {config!r}; choose one of {sorted(EOT_PRESETS)}")
        config = EOT_PRESETS[config]
    require(isinstance(config, EOTConfig), f"config must be an EOTConfig or a preset name, got {type(config).__name__}")
    if config.tae_weight > 0 and config.p_identity < 1:
        require(encoder is not None and encoder.has_decoder,
               "this EOT config draws the tae round trip: pass encoder= an encoder with a decoder "
               "(e.g. load_encoder('taef2')), or set tae_weight=0")
    return EOT(config, encoder=encoder)
