"""Keyword-only, frozen configuration objects that round-trip to JSON, and the named presets."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

Intensity = Literal["low", "default", "high"]
Quality = Literal["fast", "default", "slow"]


def require(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


class JSONConfig:
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]):  # type: ignore[no-untyped-def]
        """Inverse of :meth:`to_dict`: nested config objects are rebuilt from their dicts and JSON lists
        become tuples (``encoders`` → tuple of ``(spec, weight)`` pairs)."""
        import typing

        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(d) - names
        require(not unknown, f"unknown {cls.__name__} field(s) {sorted(unknown)}; known: {sorted(names)}")
        hints = typing.get_type_hints(cls)
        kwargs = dict(d)
        for name, value in list(kwargs.items()):
            hint = hints.get(name)
            if isinstance(value, dict) and isinstance(hint, type) and issubclass(hint, JSONConfig):
                kwargs[name] = hint.from_dict(value)
            elif name == "encoders" and isinstance(value, (list, tuple)):
                kwargs[name] = tuple((str(s), float(w)) for s, w in value)
            elif isinstance(value, list):
                kwargs[name] = tuple(value)
        return cls(**kwargs)

    @classmethod
    def from_json(cls, s: str):  # type: ignore[no-untyped-def]
        return cls.from_dict(json.loads(s))


@dataclass(frozen=True, kw_only=True)
class Budget(JSONConfig):
    """Perceptual budget of a perturbation, enforced on the *saved 8/16-bit file*.

    ``lpips``: LPIPS v0.1 ceiling (AlexNet by default; Glaze uses p = 0.05); ``linf``: cap on the absolute
    change of any channel of any pixel, in [0, 1] units (8/255 = 0.0314).
    """

    lpips: float = 0.05
    linf: float = 24 / 255
    lpips_net: Literal["alex", "squeeze"] = "alex"

    def __post_init__(self) -> None:
        require(0 < self.lpips < 1, f"budget lpips must be in (0, 1), got {self.lpips}; Glaze uses 0.05")
        require(0 < self.linf <= 1, f"budget linf must be in (0, 1] (pixel units, 8/255 = 0.031), got {self.linf}")
        require(self.lpips_net in ("alex", "squeeze"), f"lpips_net must be 'alex' or 'squeeze', got {self.lpips_net!r}")


INTENSITY_PRESETS: dict[str, Budget] = {
    "low": Budget(lpips=0.03, linf=16 / 255),
    "default": Budget(lpips=0.05, linf=24 / 255),
    "high": Budget(lpips=0.07, linf=32 / 255),
}


@dataclass(frozen=True, kw_only=True)
class Effort(JSONConfig):
    """Search effort of the optimisation.

    ``resolution``: long side (pixels) at which the encoder sees the image, as a trainer would after
    resizing; the perturbation lives at that resolution and is upsampled smoothly to the full image.
    ``coarse_fraction``: share of steps run at half resolution first (multi-scale schedule). Every preset
    sets 0: with TAEF2, a perturbation that moved the half-resolution latent 67–73 % of the way was worth
    −15 % to −2 % at full resolution (the encoder is not scale-equivariant), so those steps were wasted.
    ``early_stop``: stop once the latent has moved this share of the way to the target (0 disables).
    ``lr_schedule``: ``"constant"`` or ``"cosine"`` (from ``lr`` down to ``lr / 10`` at the last step).

    The ``default`` preset (40 steps at lr 0.016) was chosen for a 1024² artwork in about 110 s on 2 CPU
    cores: on the held-out 1024² Van Gogh of ``benchmarks/speed_vs_glaze.py`` it reached a 35 % latent
    reduction, against 30 % for 40 cosine-decayed steps (lr 0.012 or 0.02), 33 % for 40 steps at lr 0.024
    and 40 % for the former 80 steps at lr 0.008 (twice the time).
    """

    steps: int = 80
    resolution: int = 512
    lr: float = 0.008
    coarse_fraction: float = 0.0
    early_stop: float = 0.0
    calibration_steps: int = 8
    lr_schedule: str = "constant"

    def __post_init__(self) -> None:
        require(self.steps >= 1, f"steps must be >= 1, got {self.steps}")
        require(64 <= self.resolution <= 4096, f"resolution must be in [64, 4096] pixels, got {self.resolution}")
        require(self.lr > 0, f"lr must be positive, got {self.lr}")
        require(0 <= self.coarse_fraction < 1, f"coarse_fraction must be in [0, 1), got {self.coarse_fraction}")
        require(0 <= self.early_stop < 1, f"early_stop must be in [0, 1), got {self.early_stop}")
        require(self.lr_schedule in ("constant", "cosine"),
               f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")


QUALITY_PRESETS: dict[str, Effort] = {
    "fast": Effort(steps=20, resolution=512, lr=0.02, coarse_fraction=0.0),
    "default": Effort(steps=40, resolution=512, lr=0.016, coarse_fraction=0.0),
    "slow": Effort(steps=150, resolution=768, lr=0.006, coarse_fraction=0.0),
}


@dataclass(frozen=True, kw_only=True)
class Robustness(JSONConfig):
    """Robust-by-design options.

    ``eot``: a preset of :data:`sfumato.eot.EOT_PRESETS` — differentiable stand-ins of the attacks sampled
    during optimisation (expectation over transformation); ``masking``: a per-pixel L∞ budget map from the
    original's texture (:mod:`sfumato.masking`), so flat colour gets little perturbation;
    ``anti_fingerprint``: a per-image seed (from ``seed`` and the image content) that randomises the
    perturbation's starting point and colour structure, so one learned remover cannot fit every output;
    ``perturbation_scale``: the perturbation lives on a grid this share of the work resolution, upsampled
    bilinearly (1 = every pixel free; 0.5 = no energy in the top octave, which a ×0.5 resize and JPEG's
    quantisation of high frequencies would remove).
    """

    eot: str = "none"
    masking: bool = False
    anti_fingerprint: bool = True
    perturbation_scale: float = 1.0

    def __post_init__(self) -> None:
        require(isinstance(self.eot, str) and bool(self.eot), "eot must be a preset name, e.g. 'none' or 'default'")
        require(0.125 <= self.perturbation_scale <= 1,
               f"perturbation_scale must be in [0.125, 1] (share of the work resolution; 0.5 = half-resolution "
               f"grid), got {self.perturbation_scale}")


TARGET_RENDERERS = ("gatys", "latent-wct", "img2img")


@dataclass(frozen=True, kw_only=True)
class CloakConfig(JSONConfig):
    """Everything that determines a style cloak; with the image, it reproduces the result exactly.

    ``encoders``: encoder specs with weights (``("taef2", 1.0)``); ``target_style``: ``"auto"`` (a built-in
    style picked as in Glaze, between the 50th and 75th percentile of style distance), a built-in style
    name, or a folder of reference images (or a folder of such folders, one per candidate style);
    ``target_renderer``: ``"gatys"`` (neural style transfer, :mod:`sfumato.neural_style`), ``"latent-wct"`` or
    ``"img2img"`` (a diffusers pipeline given by ``target_model``, :mod:`sfumato.img2img_style`);
    ``style_strength``: how far the target's latent goes from the artwork's toward the rendering (0..1);
    ``target_tries``: candidates rendered and vetted before settling; ``target_overshoot``: aim the latent
    this many times as far as the target along the same direction (1 = at the target); ``alpha``: weight of the LPIPS-overshoot penalty (Glaze's α).
    """

    budget: Budget = field(default_factory=Budget)
    effort: Effort = field(default_factory=Effort)
    encoders: tuple[tuple[str, float], ...] = (("taef2", 1.0),)
    target_style: str = "auto"
    style_strength: float = 1.0
    target_renderer: str = "gatys"
    target_tries: int = 3
    target_overshoot: float = 1.0
    target_model: str = ""
    alpha: float = 30.0
    seed: int = 0
    robustness: Robustness = field(default_factory=Robustness)

    def __post_init__(self) -> None:
        require(len(self.encoders) >= 1, "at least one encoder is needed, e.g. encoders=(('taef2', 1.0),)")
        require(self.target_renderer in TARGET_RENDERERS,
               f"target_renderer must be one of {TARGET_RENDERERS}, got {self.target_renderer!r}")
        require(self.target_renderer != "img2img" or bool(self.target_model),
               "target_renderer 'img2img' needs target_model: a local diffusers text-to-image pipeline folder "
               "(or a Hub id already in the cache)")
        require(isinstance(self.target_tries, int) and self.target_tries >= 1,
               f"target_tries must be an int >= 1, got {self.target_tries!r}")
        require(1.0 <= self.target_overshoot <= 4.0,
               f"target_overshoot must be in [1, 4] (1 = aim exactly at the target), got {self.target_overshoot}")
        for e in self.encoders:
            require(len(e) == 2 and float(e[1]) > 0, f"each encoder is (spec, positive weight), got {e!r}")
        require(0 < self.style_strength <= 1, f"style_strength must be in (0, 1], got {self.style_strength}")
        require(self.alpha >= 0, f"alpha must be >= 0, got {self.alpha}")
        require(isinstance(self.seed, int) and self.seed >= 0, f"seed must be a non-negative int, got {self.seed!r}")

    @classmethod
    def preset(cls, *, intensity: str = "default", quality: str = "default", **kw: Any) -> CloakConfig:
        require(intensity in INTENSITY_PRESETS,
               f"unknown intensity {intensity!r}; choose one of {sorted(INTENSITY_PRESETS)}")
        require(quality in QUALITY_PRESETS, f"unknown quality {quality!r}; choose one of {sorted(QUALITY_PRESETS)}")
        return cls(budget=INTENSITY_PRESETS[intensity], effort=QUALITY_PRESETS[quality], **kw)

