"""Shared machinery of every protection: optimise a perturbation toward latent targets at the resolution
a trainer uses, then enforce the budget on the image exactly as it will be saved.

* The encoder sees the image at a trainer's resolution (long side ``Effort.resolution``), reached through
  a differentiable resize; the perturbation lives at that resolution and is upsampled smoothly to the
  full image, so any size and aspect ratio works in bounded memory (:func:`full_resolution_view`).
* Ensembles: each encoder's loss is normalised by its clean-to-target distance (:class:`LatentTargetObjective`).
* The budget holds on the *quantised* full-resolution image: the perturbation is scaled by bisection so
  that LPIPS ≤ p · (1 − :data:`~sfumato.optimise.calibrate.LPIPS_SAFETY_MARGIN`) and |δ| ≤ L∞ cap hold
  after the output codec (:func:`calibrate`).
* Greyscale images (R = G = B, as every L / LA file loads) get a grey perturbation, optimised as one
  channel (see :func:`~sfumato.optimise.loop.optimise`), so the whole budget buys protection the grey
  file can keep.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sfumato.config import Budget, Effort
from sfumato.encoders.base import Encoder
from sfumato.io.outputs import Quantiser
from sfumato.io.tensors import resize, round_to_bits, to_hwc, to_nchw, work_size
from sfumato.metrics.saved import protected_quality
from sfumato.optimise.budgets import LinfBudget, LpipsBudget
from sfumato.optimise.calibrate import calibrate, lpips_ceiling
from sfumato.optimise.loop import LoopResult, Transform, optimise
from sfumato.optimise.lpips_views import lpips_regions, saved_file_lpips, seen_view
from sfumato.optimise.objectives import full_resolution_view


@dataclass
class PerturbOutcome:
    image: np.ndarray
    scale: float
    loop: LoopResult
    latent: list[dict[str, Any]]
    achieved: dict[str, float]
    timing: dict[str, float]


def image_seed(rgb: np.ndarray, seed: int) -> int:
    """A per-image seed derived from ``seed`` and the image content (anti-fingerprint): reproducible from
    the manifest's seed and the original file, different for every image."""
    import hashlib

    h = hashlib.sha256(str(int(seed)).encode())
    h.update(np.ascontiguousarray(rgb[:: max(1, rgb.shape[0] // 512), :: max(1, rgb.shape[1] // 512)]).tobytes())
    return int(h.hexdigest()[:8], 16)


def is_grey(rgb: np.ndarray) -> bool:
    """True when an HxWx3 image has three equal channels (greyscale art, whatever its file mode)."""
    return bool(np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]))


def work_view(rgb: np.ndarray, resolution: int) -> torch.Tensor:
    """The image as a trainer sees it: long side ``resolution`` (1x3xhxw, channels-last)."""
    h, w = rgb.shape[:2]
    return resize(to_nchw(rgb), work_size(h, w, resolution)).contiguous(memory_format=torch.channels_last)


def robust_setup(x0: torch.Tensor, robustness: Any, encoders: Sequence[tuple[Encoder, float]]
                 ) -> tuple[Transform | None, torch.Tensor | None]:
    """The EOT transform and the L∞ budget map that ``robustness`` asks for (``None`` when off)."""
    transform = None
    eps_map = None
    if robustness is not None and robustness.eot != "none":
        from sfumato.optimise.eot import make_transform

        renderer = next((e for e, _ in encoders if e.has_decoder), None)
        transform = make_transform(robustness.eot, encoder=renderer)
    if robustness is not None and robustness.masking:
        from sfumato.optimise.masking import budget_map

        eps_map = budget_map(x0)
    return transform, eps_map


def perturb_toward(rgb: np.ndarray, x0: torch.Tensor, objective: Any, *, budget: Budget, effort: Effort,
                   alpha: float, seed: int, quantise: Quantiser | None = None, models_dir=None,  # noqa: ANN001
                   transform: Transform | None = None, progress: Callable[[int, int], None] | None = None,
                   update: str | None = None, eps_map: torch.Tensor | None = None,
                   init_noise: float = 0.0, radial_lpips: bool = False,
                   perturbation_scale: float = 1.0, grey: bool | None = None) -> PerturbOutcome:
    """Optimise δ at the work resolution of ``x0`` against ``objective`` under ``budget``, upsample it to
    the full image ``rgb``, calibrate it on the quantised result, and measure what was achieved.
    ``update`` overrides ``effort.update`` (``"adam"`` or signed-gradient ``"sign"``, where ``effort.lr`` is
    the step in pixel units; :func:`~sfumato.optimise.loop.optimise`).
    ``eps_map`` scales the L∞ cap per pixel (adaptive masking); ``init_noise`` starts δ from seeded
    uniform noise of that amplitude (anti-fingerprint); ``radial_lpips`` shrinks δ where a step went above
    the LPIPS ceiling (:class:`~sfumato.optimise.budgets.LpipsBudget`; used by poison and protect, whose photos
    overshoot); ``perturbation_scale`` < 1 optimises δ on a coarser grid (a low-frequency perturbation,
    see :func:`~sfumato.optimise.loop.optimise`); ``grey`` optimises a one-channel (grey) δ — by default
    when ``rgb``'s three channels are equal."""
    from sfumato.metrics.lpips import load_lpips, measure_lpips

    quantise = quantise or round_to_bits
    h, w = rgb.shape[:2]
    if grey is None:
        grey = is_grey(rgb)
    timing: dict[str, float] = {}
    t = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    param_size = None
    if perturbation_scale < 1:
        param_size = (max(8, round(x0.shape[-2] * perturbation_scale)), max(8, round(x0.shape[-1] * perturbation_scale)))
    budgets = [LpipsBudget(p=budget.lpips, alpha=alpha, net=budget.lpips_net, models_dir=models_dir,
                           view=seen_view(rgb, x0), crops=lpips_regions(h, w),
                           check=saved_file_lpips(rgb, x0, budget.lpips_net, models_dir), radial=radial_lpips),
               LinfBudget(eps=budget.linf, eps_map=eps_map)]
    # A view-sampling objective reads the full file's views itself; the others see the work view of the file.
    seen = objective if getattr(objective, "stochastic", False) else full_resolution_view(objective, x0, (h, w))
    loop = optimise(x0, seen, budgets, steps=effort.steps, lr=effort.lr,
                    generator=gen, update=update or effort.update,  # type: ignore[arg-type]
                    decay="cosine" if effort.lr_schedule == "cosine" else "none",
                    early_stop=effort.early_stop, transform=transform, callback=progress, init_noise=init_noise,
                    param_size=param_size, grey=grey)
    timing["optimise"] = time.perf_counter() - t
    t = time.perf_counter()
    delta_full = to_hwc(resize(loop.delta, (h, w)))
    linf_cap: float | np.ndarray = budget.linf
    if eps_map is not None:  # the per-pixel cap holds at full size too, also after calibration's scaling
        linf_cap = to_hwc(resize(eps_map.expand(1, 3, *eps_map.shape[-2:]).float(), (h, w))) * budget.linf
    lp = load_lpips(budget.lpips_net, models_dir=models_dir)

    def lpips_fn(a: np.ndarray, b: np.ndarray) -> float:
        return float(measure_lpips(lp, to_nchw(a).to(x0.device), to_nchw(b).to(x0.device))[0])  # tiled: bounded memory

    out, scale, _ = calibrate(rgb, delta_full, lpips_p=lpips_ceiling(budget.lpips), linf=linf_cap, quantise=quantise,
                              lpips_fn=lpips_fn, iters=effort.calibration_steps)
    timing["calibrate"] = time.perf_counter() - t
    latent = objective.distances(resize(to_nchw(out).to(x0), tuple(x0.shape[-2:])))
    achieved = protected_quality(out, rgb, lpips_net=budget.lpips_net, models_dir=models_dir, device=x0.device)
    return PerturbOutcome(out, scale, loop, latent, achieved, timing)
