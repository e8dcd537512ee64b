"""Attacks on protected images: the attack table (:mod:`sfumato.attacks.table`: per family, the real
operation, the differentiable stand-in and one parameter sampler), the real image operations
(:mod:`sfumato.attacks.real`), IMPRESS purification (:mod:`sfumato.attacks.impress`), the named attacks
and suites of ``sfumato check`` (:mod:`sfumato.attacks.registry`, run by :mod:`sfumato.verification.check`)
and best-of-N (:mod:`sfumato.attacks.best_of_n`). EOT (:mod:`sfumato.optimise.eot`) draws the stand-ins.
"""

from __future__ import annotations

from sfumato.attacks.best_of_n import USABLE_LPIPS, USABLE_PSNR_DB, BestOfN, best_of_n, is_usable
from sfumato.attacks.real import (
    center_crop,
    gaussian_blur,
    gaussian_noise,
    jpeg,
    median_filter,
    noisy_upscale,
    resize_roundtrip,
    tae_roundtrip,
)
from sfumato.attacks.registry import (
    ATTACKS,
    SUITES,
    AttackSpec,
    align_reference,
    apply_attack,
    get_attack,
    resolve_attacks,
    sample_attack,
)
from sfumato.attacks.table import FAMILIES, AttackFamily

__all__ = [
    "ATTACKS",
    "FAMILIES",
    "SUITES",
    "USABLE_LPIPS",
    "USABLE_PSNR_DB",
    "AttackFamily",
    "AttackSpec",
    "BestOfN",
    "align_reference",
    "apply_attack",
    "best_of_n",
    "center_crop",
    "gaussian_blur",
    "gaussian_noise",
    "get_attack",
    "impress_purify",
    "is_usable",
    "jpeg",
    "median_filter",
    "noisy_upscale",
    "resize_roundtrip",
    "resolve_attacks",
    "sample_attack",
    "tae_roundtrip",
]


def __getattr__(name: str):  # noqa: ANN202
    if name == "impress_purify":  # torch-heavy: imported on first use
        from sfumato.attacks.impress import impress_purify

        return impress_purify
    raise AttributeError(f"module 'sfumato.attacks' has no attribute {name!r}")
