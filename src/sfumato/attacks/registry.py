"""The named attacks ``sfumato check`` runs (:data:`ATTACKS`), its suites, and running one on an image.

Each :class:`AttackSpec` is a named, fixed configuration of an attack family of the table
(:mod:`sfumato.attacks.table`; its ``kind`` is the family's name), applied with the family's real
operation. The names (``jpeg-q75-420``, ``resize-x0.5-lanczos``, ``crop-90``, ...) are described in
:mod:`sfumato.attacks.real`.

Suites (:data:`SUITES`): ``"default"`` is a representative, fast subset (one of each family, IMPRESS
with a small budget); ``"all"`` is every registered attack except ``impress-fast`` (superseded by
``impress``) and ``impress-paper`` (hours on a CPU; ask for it by name).

:func:`sample_attack` draws a random attack with random parameters from a ``numpy.random.Generator`` with
the family's one sampler (:mod:`sfumato.attacks.sampling`, the same that EOT uses); the same generator
state gives the same attack and seed (replayable).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from sfumato.attacks.params import SUBSAMPLING
from sfumato.attacks.real import Upscaler, center_crop
from sfumato.attacks.sampling import NumpyDraws
from sfumato.attacks.table import FAMILIES, describe_jpeg

if TYPE_CHECKING:  # pragma: no cover
    from sfumato.encoders.base import Encoder

__all__ = [
    "ATTACKS",
    "SAMPLE_RANGES",
    "SUITES",
    "AttackSpec",
    "align_reference",
    "apply_attack",
    "get_attack",
    "resolve_attacks",
    "sample_attack",
]


@dataclass(frozen=True, kw_only=True)
class AttackSpec:
    """A named, parameterised attack. ``kind`` selects the function, ``params`` its keyword arguments.

    ``random``: the function takes a ``seed``; ``needs_autoencoder``: it takes an ``autoencoder`` (TAEF2).
    """

    name: str
    kind: str
    params: tuple[tuple[str, Any], ...] = ()
    description: str = ""
    random: bool = False
    needs_autoencoder: bool = False
    geometric: bool = False

    def __post_init__(self) -> None:
        if self.kind not in FAMILIES:
            raise ValueError(f"unknown attack kind {self.kind!r}; choose one of {sorted(FAMILIES)}")

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.params)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "params": self.kwargs, "description": self.description,
                "random": self.random, "needs_autoencoder": self.needs_autoencoder}


def _spec(name: str, kind: str, description: str, **params: Any) -> AttackSpec:
    fam = FAMILIES[kind]
    return AttackSpec(name=name, kind=kind, params=tuple(params.items()), description=description,
                      random=fam.random, needs_autoencoder=fam.needs_autoencoder, geometric=fam.geometric)


def _build_registry() -> dict[str, AttackSpec]:
    reg: list[AttackSpec] = []
    for q in (95, 85, 75, 60):
        for ss in SUBSAMPLING:
            reg.append(_spec(f"jpeg-q{q}-{ss.replace(':', '')}", "jpeg", describe_jpeg(q, ss),
                             quality=q, subsampling=ss))
    for scale in (0.5, 0.75):
        for method in ("bicubic", "lanczos"):
            reg.append(_spec(f"resize-x{scale}-{method}", "resize",
                             f"downscale x{scale} per side and back, Pillow {method}", scale=scale, method=method))
    reg.append(_spec("crop-90", "crop", "central 90 % of each side, resized back (Pillow Lanczos)",
                     fraction=0.9, method="lanczos"))
    for s in (0.02, 0.05):
        reg.append(_spec(f"noise-{s}", "noise", f"Gaussian noise, sigma {s} (seeded)", sigma=s))
    for r in (1, 2):
        reg.append(_spec(f"blur-r{r}", "blur", f"Gaussian blur, sigma {r} px (Pillow GaussianBlur)", radius=float(r)))
    reg.append(_spec("median-3", "median", "3x3 median filter (Pillow MedianFilter)", size=3))
    reg.append(_spec("noisy-upscale", "noisy_upscale",
                     "noisy upscaling (Hönig et al. 2025): noise sigma 0.1, then the given upscaler, or the "
                     "classical stand-in (box downscale x0.5, Lanczos upscale)", sigma=0.1, factor=0.5))
    reg.append(_spec("tae-roundtrip", "tae", "TAEF2 encode-decode at the working size (long side 512)",
                     resolution=512))
    reg.append(_spec("impress-fast", "impress",
                     "IMPRESS purification (Cao et al. 2023), 20 Adam steps at 256 px, no starting noise",
                     steps=20, resolution=256, init_noise=0.0))
    reg.append(_spec("impress", "impress", "IMPRESS purification (Cao et al. 2023), 200 Adam steps at 512 px",
                     steps=200, resolution=512))
    reg.append(_spec("impress-paper", "impress",
                     "IMPRESS purification with the paper's 3000 Adam steps at 512 px (slow on a CPU)",
                     steps=3000, resolution=512))
    return {a.name: a for a in reg}


ATTACKS: dict[str, AttackSpec] = _build_registry()
"""Every registered attack by name."""

SUITES: dict[str, tuple[str, ...]] = {
    "default": ("jpeg-q85-420", "jpeg-q60-420", "resize-x0.5-lanczos", "crop-90", "noise-0.05", "blur-r1",
                "median-3", "noisy-upscale", "tae-roundtrip", "impress-fast"),
    "all": tuple(n for n in ATTACKS if n not in ("impress-fast", "impress-paper")),
}


def get_attack(name: str | AttackSpec) -> AttackSpec:
    """The registered attack ``name`` (an :class:`AttackSpec` is returned unchanged)."""
    if isinstance(name, AttackSpec):
        return name
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; known: {', '.join(ATTACKS)}")
    return ATTACKS[name]


def resolve_attacks(attacks: str | Sequence[str | AttackSpec]) -> list[AttackSpec]:
    """``"default"``, ``"all"``, a comma-separated string of names, or a list of names/specs."""
    if isinstance(attacks, str):
        if attacks in SUITES:
            return [ATTACKS[n] for n in SUITES[attacks]]
        attacks = [a.strip() for a in attacks.split(",") if a.strip()]
    out = [get_attack(a) for a in attacks]
    if not out:
        raise ValueError("no attacks given; use 'default', 'all' or a list of attack names")
    names = [a.name for a in out]
    if len(set(names)) != len(names):
        raise ValueError(f"attack names must be unique, got {names}")
    return out


def apply_attack(attack: str | AttackSpec, rgb: np.ndarray, *, seed: int = 0, autoencoder: Encoder | None = None,
                 upscaler: Upscaler | None = None, models_dir: Any = None) -> np.ndarray:
    """Run one attack on ``rgb``. Random attacks use ``seed``; TAE/IMPRESS use ``autoencoder`` (TAEF2 is
    loaded from ``models_dir`` when not given); ``upscaler`` is passed to ``noisy-upscale``."""
    spec = get_attack(attack)
    kw = spec.kwargs
    if spec.random:
        kw["seed"] = int(seed)
    if spec.needs_autoencoder:
        if autoencoder is None:
            from sfumato.encoders import load_encoder

            autoencoder = load_encoder("taef2", models_dir=models_dir)
        kw["autoencoder"] = autoencoder
        if spec.kind == "impress":
            kw["models_dir"] = models_dir
    if spec.kind == "noisy_upscale" and upscaler is not None:
        kw["upscaler"] = upscaler
    return FAMILIES[spec.kind].real(rgb, **kw)


def align_reference(attack: str | AttackSpec, rgb: np.ndarray) -> np.ndarray:
    """The geometric part of ``attack`` applied to a reference image (original, target), so that an attacked
    image is compared with references of the same framing. Identity for non-geometric attacks."""
    spec = get_attack(attack)
    if spec.kind == "crop":
        return center_crop(rgb, **spec.kwargs)
    return rgb


# ---------------------------------------------------------------------------------------- random sampling
SAMPLE_RANGES: dict[str, dict[str, Any]] = {
    "jpeg": {"quality": (50, 95), "subsampling": SUBSAMPLING},
    "resize": {"scale": (0.4, 0.9), "modes": ("bicubic", "lanczos"), "digits": 3},
    "crop": {"fraction": (0.8, 0.95), "centred": True, "digits": 3},
    "noise": {"sigma": (0.01, 0.06), "digits": 4},
    "blur": {"sigma": (0.5, 2.0), "digits": 3},
    "median": {"sizes": (3, 5)},
    "noisy_upscale": {"sigma": (0.05, 0.1), "digits": 4},
}
"""The keyword arguments :func:`sample_attack` gives each family's sampler (:mod:`sfumato.attacks.sampling`):
uniform ranges, choices, and the digits a drawn value is rounded to (it names the attack)."""


def sample_attack(rng: np.random.Generator, *, kinds: Sequence[str] | None = None) -> tuple[AttackSpec, int]:
    """A random attack with random parameters (:data:`SAMPLE_RANGES`) and a seed for it, drawn from ``rng``.

    Replayable: the same generator state gives the same ``(spec, seed)``; apply it with
    ``apply_attack(spec, rgb, seed=seed)``. ``kinds`` restricts the families (default: all classical ones).
    """
    draw = NumpyDraws(rng)
    kinds = list(kinds) if kinds is not None else list(SAMPLE_RANGES)
    unknown = [k for k in kinds if k not in SAMPLE_RANGES]
    if unknown or not kinds:
        raise ValueError(f"sample_attack: kinds must be a non-empty subset of {sorted(SAMPLE_RANGES)}, got {kinds}")
    fam = FAMILIES[draw.choice(kinds)]
    assert fam.sample is not None and fam.label is not None
    params = fam.sample(draw, **SAMPLE_RANGES[fam.name])
    name, description = fam.label(params)
    spec = _spec(name, fam.name, description, **fam.real_kwargs(params))
    return spec, int(params.seed) if fam.random else draw.seed()
