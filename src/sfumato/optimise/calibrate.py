"""Budget calibration on the saved file: the largest scale of the full-resolution perturbation whose quantised
result stays under the LPIPS ceiling (bisection), with the L-inf cap clipped.

The ceiling is not the budget p itself but :func:`lpips_ceiling` (p less :data:`LPIPS_SAFETY_MARGIN`), and
the saved file is accepted against the same ceiling (:mod:`sfumato.api`): a figure that sits exactly on p
on this CPU can measure 0.0501 against 0.05 on another one (other SIMD kernels, another codec build), so
the contract "LPIPS ≤ p" must hold with room to spare, not by luck.

When not even the smallest scale bisection tries fits, the result has scale 0 — the original image,
unprotected. Callers that write files must treat that as a failure, never as done
(:class:`sfumato.api.NotProtected`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sfumato.io.outputs import Quantiser

#: Safety margin of the LPIPS budget, as a share of it: calibration aims at, and a saved file is accepted
#: at, LPIPS ≤ p · (1 − 0.02) (0.049 for Glaze's p = 0.05). The same file measured on another CPU differs
#: by about 1e-5 relative (float summation order), so 2 % leaves two orders of magnitude of head-room.
LPIPS_SAFETY_MARGIN = 0.02


def lpips_ceiling(p: float) -> float:
    """The LPIPS a saved file may reach under budget ``p``: ``p · (1 − LPIPS_SAFETY_MARGIN)``."""
    return p * (1 - LPIPS_SAFETY_MARGIN)


def _apply(x_full: np.ndarray, delta_full: np.ndarray, s: float, linf: float | np.ndarray,
           quantise: Quantiser) -> np.ndarray:
    d = np.clip(delta_full * s, -linf, linf)
    return quantise(np.clip(x_full + d, 0, 1))


def calibrate(x_full: np.ndarray, delta_full: np.ndarray, *, lpips_p: float, linf: float | np.ndarray,
              quantise: Quantiser,
              lpips_fn: Callable[[np.ndarray, np.ndarray], float], max_scale: float = 2.0,
              iters: int = 8) -> tuple[np.ndarray, float, float]:
    """Largest scale s ≤ ``max_scale`` of the full-resolution perturbation whose *quantised* result has
    LPIPS ≤ p (L∞ is clipped to the cap). Returns (image, s, lpips); s = 0 (the quantised original) when
    no scale tried fits — the image is then unprotected, and file writers refuse it."""
    cand = _apply(x_full, delta_full, max_scale, linf, quantise)
    lp = lpips_fn(cand, x_full)
    if lp <= lpips_p:
        return cand, max_scale, lp
    lo, hi = 0.0, max_scale
    best = (quantise(x_full), 0.0, lpips_fn(quantise(x_full), x_full))
    for _ in range(iters):
        mid = (lo + hi) / 2
        cand = _apply(x_full, delta_full, mid, linf, quantise)
        lp = lpips_fn(cand, x_full)
        if lp <= lpips_p:
            lo, best = mid, (cand, mid, lp)
        else:
            hi = mid
    return best
