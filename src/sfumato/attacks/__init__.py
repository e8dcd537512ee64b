"""Attacks on protected images for verification: real image operations (:mod:`sfumato.attacks.real`) and
IMPRESS purification (:mod:`sfumato.attacks.impress`). ``sfumato check`` (:mod:`sfumato.verify`) runs them.
"""

from __future__ import annotations

from sfumato.attacks.real import (
    ATTACKS,
    SUITES,
    USABLE_LPIPS,
    USABLE_PSNR_DB,
    AttackSpec,
    BestOfN,
    align_reference,
    apply_attack,
    best_of_n,
    center_crop,
    gaussian_blur,
    gaussian_noise,
    get_attack,
    is_usable,
    jpeg,
    median_filter,
    noisy_upscale,
    resize_roundtrip,
    resolve_attacks,
    sample_attack,
    tae_roundtrip,
)

__all__ = [
    "ATTACKS",
    "SUITES",
    "USABLE_LPIPS",
    "USABLE_PSNR_DB",
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
