"""Random-noise control for ``benchmarks/meter.py`` (issue 22): i.i.d. noise at the same budget as the cloaks.

``noise-same-budget`` adds to each image seeded i.i.d. Gaussian noise, clipped per pixel and channel to the
L-inf cap (24/255), and rounds the result to the 8-bit grid the PNG stores. Its standard deviation is found
by bisection so that the *saved* file sits at the LPIPS-alex budget (the largest sigma whose quantised image
has LPIPS-alex <= 0.05; if even the cap-saturating sigma stays under 0.05 the noise is L-inf-bound instead).
Every quality figure is taken on the quantised image with :func:`sfumato.metrics.saved.protected_quality`,
the same function the meter uses for every method. The noise has no direction and no target: the latent
measure reads it against ``sfumato-default``'s target so that its ``toward`` is comparable (expected ~0).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

LPIPS_MAX, LINF_MAX = 0.05, 24 / 255
LINF_LEVELS = 24  # the L-inf cap in 8-bit levels (24/255)
SIGMA_HI = 4 * LINF_LEVELS  # sigma (in 8-bit levels) at which nearly every sample saturates the cap


def noise_seed(key: str, seed: int) -> int:
    """A stable 64-bit seed from the image key and the run seed (independent of Python's hash salt)."""
    return int.from_bytes(hashlib.sha256(f"{key}|{seed}".encode()).digest()[:8], "little")


def noisy(rgb: np.ndarray, z: np.ndarray, sigma: float) -> np.ndarray:
    """``rgb`` plus ``sigma * z`` 8-bit levels, clipped to +-LINF_LEVELS and to [0, 255], rounded to the grid."""
    base = np.round(np.asarray(rgb, dtype=np.float64) * 255)
    n = np.clip(sigma * z, -LINF_LEVELS, LINF_LEVELS)
    return (np.clip(np.round(base + n), 0, 255) / 255).astype(np.float32)


def noise_same_budget(rgb: np.ndarray, key: str, *, seed: int, iters: int = 20,
                      lpips_max: float = LPIPS_MAX) -> tuple[np.ndarray, dict[str, Any]]:
    """The noise control for one image: the quantised noisy image and its parameters and saved quality."""
    from sfumato.metrics.saved import protected_quality

    z = np.random.default_rng(noise_seed(key, seed)).standard_normal(rgb.shape)

    def quality(sigma: float) -> dict[str, float]:
        return protected_quality(noisy(rgb, z, sigma), rgb, lpips_net="alex")

    q_hi = quality(SIGMA_HI)
    if q_hi["lpips_alex"] <= lpips_max:  # L-inf-bound: the cap binds before LPIPS does
        lo, q_lo, bound = float(SIGMA_HI), q_hi, "linf"
    else:
        lo, hi, q_lo, bound = 0.0, float(SIGMA_HI), quality(0.0), "lpips"
        for _ in range(iters):
            mid = (lo + hi) / 2
            q = quality(mid)
            if q["lpips_alex"] <= lpips_max:
                lo, q_lo = mid, q
            else:
                hi = mid
    img = noisy(rgb, z, lo)
    params = {"noise": "gaussian, clipped to +-24/255, 8-bit rounded", "sigma_levels": round(lo, 4),
              "sigma": round(lo / 255, 6), "bound": bound, "bisection_iters": iters if bound == "lpips" else 0,
              "achieved": {k: round(float(v), 5) for k, v in q_lo.items()}}
    return img, params
