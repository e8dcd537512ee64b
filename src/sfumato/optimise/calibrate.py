"""Budget calibration on the saved file: the largest scale of the full-resolution perturbation whose quantised result stays under the LPIPS ceiling (bisection), with the L-inf cap clipped."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sfumato.io.outputs import Quantiser


def _apply(x_full: np.ndarray, delta_full: np.ndarray, s: float, linf: float | np.ndarray,
           quantise: Quantiser) -> np.ndarray:
    d = np.clip(delta_full * s, -linf, linf)
    return quantise(np.clip(x_full + d, 0, 1))


def calibrate(x_full: np.ndarray, delta_full: np.ndarray, *, lpips_p: float, linf: float | np.ndarray,
              quantise: Quantiser,
              lpips_fn: Callable[[np.ndarray, np.ndarray], float], max_scale: float = 2.0,
              iters: int = 8) -> tuple[np.ndarray, float, float]:
    """Largest scale s ≤ ``max_scale`` of the full-resolution perturbation whose *quantised* result has
    LPIPS ≤ p (L∞ is clipped to the cap). Returns (image, s, lpips)."""
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
