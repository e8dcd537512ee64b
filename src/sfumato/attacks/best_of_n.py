"""Best-of-N over attacks: per image, the strongest attack that leaves the image worth training on.

An attacked image is *usable* (:func:`is_usable`) when it stays close to the protected image (PSNR) or
to the clean original (LPIPS, AlexNet); :func:`best_of_n` picks, among the usable attacks, the one that
leaves the least protection.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["USABLE_LPIPS", "USABLE_PSNR_DB", "BestOfN", "best_of_n", "is_usable"]

USABLE_PSNR_DB = 25.0
"""An attacked image is *usable* when its PSNR against the protected image is at least this (dB)..."""
USABLE_LPIPS = 0.3
"""... or when its LPIPS (AlexNet) distance to the clean original is at most this."""


def is_usable(psnr_vs_protected: float | None, lpips_vs_original: float | None = None, *,
              min_psnr: float = USABLE_PSNR_DB, max_lpips: float = USABLE_LPIPS) -> bool:
    """Is an attacked image still worth training on? PSNR vs the protected image >= ``min_psnr`` dB, or
    LPIPS vs the clean original <= ``max_lpips`` (either suffices; missing measures count as failing)."""
    ok_psnr = psnr_vs_protected is not None and psnr_vs_protected >= min_psnr
    ok_lpips = lpips_vs_original is not None and lpips_vs_original <= max_lpips
    return bool(ok_psnr or ok_lpips)


@dataclass(frozen=True)
class BestOfN:
    """The attack that removed the most protection among the usable ones."""

    name: str
    retained: float
    n_usable: int
    n_total: int
    considered: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "retained": self.retained, "n_usable": self.n_usable, "n_total": self.n_total,
                "considered": list(self.considered)}


def best_of_n(outcomes: Sequence[Mapping[str, Any]]) -> BestOfN | None:
    """Per image, the usable attack with the lowest ``retained`` protection (the strongest usable attack).

    Each outcome is a mapping with ``name``, ``retained`` (share of protection left, ``None`` when not
    measured) and ``usable`` (bool). Returns ``None`` when no usable attack has a measurement. Ties keep
    the first in order.
    """
    usable = [o for o in outcomes if o.get("usable") and o.get("retained") is not None
              and math.isfinite(float(o["retained"]))]
    if not usable:
        return None
    best = min(usable, key=lambda o: float(o["retained"]))
    return BestOfN(name=str(best["name"]), retained=float(best["retained"]), n_usable=len(usable),
                   n_total=len(outcomes), considered=tuple(str(o["name"]) for o in usable))
