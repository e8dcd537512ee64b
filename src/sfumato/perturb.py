"""Shared machinery of every protection: optimise a perturbation toward latent targets at the resolution
a trainer uses, then enforce the budget on the image exactly as it will be saved.

* The encoder sees the image at a trainer's resolution (long side ``Effort.resolution``), reached through
  a differentiable resize; the perturbation lives at that resolution and is upsampled smoothly to the
  full image, so any size and aspect ratio works in bounded memory (:func:`full_resolution_view`).
* Ensembles: each encoder's loss is normalised by its clean-to-target distance (:class:`LatentTargetObjective`).
* The budget holds on the *quantised* full-resolution image: the perturbation is scaled by bisection so
  that LPIPS ≤ p and |δ| ≤ L∞ cap hold after the output codec (:func:`calibrate`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .budgets import LinfBudget, LpipsBudget
from .config import Budget, Effort
from .encoders.base import Encoder
from .optimize import LoopResult, Transform, optimise

Quantiser = Callable[[np.ndarray], np.ndarray]


def work_size(h: int, w: int, resolution: int) -> tuple[int, int]:
    """Size at which the encoder sees an image: long side ``resolution`` (never upscaled)."""
    s = min(1.0, resolution / max(h, w))
    return max(8, round(h * s)), max(8, round(w * s))


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Differentiable resize (antialiased bilinear when shrinking)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)


def to_nchw(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None]


def to_hwc(x: torch.Tensor) -> np.ndarray:
    return x[0].permute(1, 2, 0).detach().cpu().numpy().astype(np.float32)


def round_to_bits(rgb: np.ndarray, bit_depth: int = 8) -> np.ndarray:
    m = float((1 << bit_depth) - 1)
    return (np.round(np.clip(rgb, 0, 1) * m) / m).astype(np.float32)


@dataclass
class EncoderTarget:
    encoder: Encoder
    weight: float
    fine: torch.Tensor
    coarse: torch.Tensor
    clean_dist_fine: float
    clean_dist_coarse: float


class LatentTargetObjective:
    """Σ_E w_E ‖E(view(x)) − t_E‖² / ‖E(view(x0)) − t_E‖² over an encoder ensemble; progress is the
    weighted mean of 1 − ‖E(view(x)) − t_E‖ / ‖E(view(x0)) − t_E‖ (share of the way to the target)."""

    def __init__(self, x0: torch.Tensor, target_image: torch.Tensor | None,
                 encoders: Sequence[tuple[Encoder, float]], *, target_latents: Sequence[torch.Tensor] | None = None,
                 coarse_scale: float = 0.5, overshoot: float = 1.0) -> None:
        self.size_fine = tuple(x0.shape[-2:])
        self.size_coarse = (max(8, round(x0.shape[-2] * coarse_scale)), max(8, round(x0.shape[-1] * coarse_scale)))
        self.targets: list[EncoderTarget] = []
        self.image_targets: list[torch.Tensor] = []  # the target image's own latents (before overshoot)
        self.overshoot = overshoot
        wsum = sum(w for _, w in encoders)
        with torch.no_grad():
            for i, (enc, w) in enumerate(encoders):
                if target_latents is not None:
                    tf = target_latents[i]
                    tc = tf  # caller-provided latents are used at both scales via resizing of the view
                    tc = F.interpolate(tf, size=enc.encode(resize(x0, self.size_coarse)).shape[-2:],
                                       mode="area")
                else:
                    tf = enc.encode(target_image)
                    tc = enc.encode(resize(target_image, self.size_coarse))
                z0f, z0c = enc.encode(x0), enc.encode(resize(x0, self.size_coarse))
                self.image_targets.append(tf)
                if overshoot != 1.0:  # aim past the target along the same latent direction
                    tf, tc = z0f + overshoot * (tf - z0f), z0c + overshoot * (tc - z0c)
                df = float((z0f - tf).norm())
                dc = float((z0c - tc).norm())
                self.targets.append(EncoderTarget(enc, w / wsum, tf, tc, max(df, 1e-8), max(dc, 1e-8)))

    def __call__(self, x: torch.Tensor, coarse: bool) -> tuple[torch.Tensor, float]:
        loss = x.new_zeros(())
        prog = 0.0
        view = resize(x, self.size_coarse) if coarse else resize(x, self.size_fine)
        view = view.contiguous(memory_format=torch.channels_last)
        for t in self.targets:
            z = t.encoder.encode(view)
            tgt, d0 = (t.coarse, t.clean_dist_coarse) if coarse else (t.fine, t.clean_dist_fine)
            d = (z - tgt).flatten().norm()
            loss = loss + t.weight * (d / d0) ** 2
            prog += t.weight * (1 - float(d.detach()) / d0)
        return loss, prog

    def distances(self, x: torch.Tensor) -> list[dict[str, float]]:
        """Per encoder: clean→target, x→target, relative reduction (for manifests), at the fine view."""
        out = []
        with torch.no_grad():
            v = resize(x, self.size_fine)
            for t, zi in zip(self.targets, self.image_targets, strict=True):
                z = t.encoder.encode(v)
                d = float((z - t.fine).norm())
                row = {"encoder": t.encoder.id, "clean_to_target": t.clean_dist_fine,
                       "protected_to_target": d, "relative_reduction": 1 - d / t.clean_dist_fine}
                if self.overshoot != 1.0:  # the same measure toward the target image's own latent
                    di = float((z - zi).norm())
                    row["reduction_toward_target_image"] = 1 - di / (t.clean_dist_fine / self.overshoot)
                out.append(row)
        return out


def full_resolution_view(objective, x0: torch.Tensor, full: tuple[int, int]):  # noqa: ANN001, ANN201
    """Wrap an objective so it sees what a trainer sees: the work-resolution perturbation upsampled to the
    full image (as it will be saved) and the full image resized back to the work resolution. By
    linearity of resizing, view(x0 + δ) = x0 + down(up(δ)); the round trip is a fixed low-pass filter
    that the optimiser must account for, or the saved file loses part of the latent shift."""
    if tuple(x0.shape[-2:]) == tuple(full):
        return objective
    work = tuple(x0.shape[-2:])

    def wrapped(x: torch.Tensor, coarse: bool):  # noqa: ANN202
        d = x - x0
        return objective(x0 + resize(resize(d, full), work), coarse)

    return wrapped


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


def load_encoders(config: Any, *, models_dir=None) -> list[tuple[Encoder, float]]:  # noqa: ANN001
    """The (encoder, weight) pairs named by ``config.encoders``, loaded once per process."""

    return [(_cached_encoder(spec, models_dir), w) for spec, w in config.encoders]


_ENCODER_CACHE: dict[tuple[str, str], Encoder] = {}


def _cached_encoder(spec: str, models_dir) -> Encoder:  # noqa: ANN001
    from .encoders import load_encoder

    key = (spec, str(models_dir))
    if key not in _ENCODER_CACHE:
        _ENCODER_CACHE[key] = load_encoder(spec, models_dir=models_dir)
    return _ENCODER_CACHE[key]


def protected_quality(protected: np.ndarray, original: np.ndarray, *, lpips_net: str = "alex",
                      models_dir=None) -> dict[str, float]:  # noqa: ANN001
    """LPIPS, PSNR, SSIM and L∞ of a protected image against its original (HxWx3 float arrays)."""
    from .metrics.lpips import load_lpips
    from .metrics.quality import linf, psnr, ssim

    a, b = to_nchw(protected), to_nchw(original)
    with torch.no_grad():
        return {
            f"lpips_{lpips_net}": float(load_lpips(lpips_net, models_dir=models_dir)(a, b)[0]),
            "psnr": float(psnr(a, b)[0]),
            "ssim": float(ssim(a, b)[0]),
            "linf": float(linf(a, b)[0]),
        }




class WeightedObjectives:
    """Σ_k w_k · objective_k — several latent targets at once (e.g. a style cloak and a concept poison
    in one pass); ``distances`` labels each target's figures with its name."""

    def __init__(self, parts: Sequence[tuple[str, LatentTargetObjective, float]]) -> None:
        total = sum(w for _, _, w in parts)
        self.parts = [(n, o, w / total) for n, o, w in parts]

    def __call__(self, x: torch.Tensor, coarse: bool) -> tuple[torch.Tensor, float]:
        loss, prog = x.new_zeros(()), 0.0
        for _, o, w in self.parts:
            lo, pr = o(x, coarse)
            loss, prog = loss + w * lo, prog + w * pr
        return loss, prog

    def distances(self, x: torch.Tensor) -> list[dict[str, Any]]:
        return [{**d, "target": n} for n, o, _ in self.parts for d in o.distances(x)]


#: LPIPS during optimisation is computed on the image as a person sees it — the full-size file, at its
#: own resolution and sampling grid — downscaled only beyond this many pixels.
LPIPS_VIEW_MAX_PIXELS = 16_000_000
#: Views larger than this are measured one region per step, round-robin (see :func:`lpips_regions`).
LPIPS_REGION_PIXELS = 1_200_000


def capped_size(h: int, w: int, max_pixels: int) -> tuple[int, int]:
    """``(h, w)`` scaled down (aspect kept) to at most about ``max_pixels``; never scaled up."""
    s = min(1.0, (max_pixels / (h * w)) ** 0.5)
    return max(8, round(h * s)), max(8, round(w * s))


def seen_view(rgb: np.ndarray, x0: torch.Tensor):  # noqa: ANN201
    """Map an image at the work resolution (``x0 + δ``) to the full image a person sees, ``x_full + up(δ)``
    (at most :data:`LPIPS_VIEW_MAX_PIXELS`); ``None`` when the two coincide."""
    size = capped_size(*rgb.shape[:2], LPIPS_VIEW_MAX_PIXELS)
    if size == tuple(x0.shape[-2:]):
        return None
    xb0 = resize(to_nchw(rgb), size).to(x0).contiguous(memory_format=torch.channels_last)
    x0 = x0.detach()

    def view(x: torch.Tensor) -> torch.Tensor:
        return xb0 + resize(x - x0, size)

    return view


def lpips_regions(h: int, w: int, max_pixels: int = LPIPS_REGION_PIXELS) -> list[tuple[int, int, int, int]] | None:
    """Tiles ``(top, left, height, width)`` of at most about ``max_pixels`` that cover an ``h``×``w`` view,
    with corners on multiples of 16 so each tile keeps the whole image's AlexNet sampling grid; ``None``
    when the view is small enough to measure whole."""
    h, w = capped_size(h, w, LPIPS_VIEW_MAX_PIXELS)
    if h * w <= max_pixels:
        return None
    side = max_pixels ** 0.5
    rows, cols = max(1, -(-h // int(side))), max(1, -(-w // int(side)))
    th, tw = -(-h // rows), -(-w // cols)
    th, tw = -(-th // 16) * 16, -(-tw // 16) * 16
    return [(r * th, c * tw, min(th, h - r * th), min(tw, w - c * tw))
            for r in range(rows) for c in range(cols) if h - r * th >= 32 and w - c * tw >= 32]


#: The saved-file LPIPS check during optimisation runs on at most this many pixels (a forward pass only).
LPIPS_CHECK_MAX_PIXELS = 8_000_000


def saved_file_lpips(rgb: np.ndarray, x0: torch.Tensor, net: str, models_dir=None):  # noqa: ANN001, ANN201
    """LPIPS of ``x0 + δ`` (work resolution) as the saved file will measure it: δ upsampled to the full
    image, rounded to 8 bits, compared with the original at full size (above
    :data:`LPIPS_CHECK_MAX_PIXELS`, both are downscaled to that many pixels)."""
    from .metrics.lpips import load_lpips

    size = capped_size(*rgb.shape[:2], LPIPS_CHECK_MAX_PIXELS)
    full = resize(to_nchw(rgb), size).to(x0)
    lp = load_lpips(net, models_dir=models_dir).to(device=x0.device, dtype=x0.dtype)
    x0 = x0.detach()

    def check(x: torch.Tensor) -> float:
        with torch.no_grad():
            y = torch.round((full + resize(x - x0, size)).clamp(0, 1) * 255) / 255
            return float(lp(y, full).max())

    return check


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


def robust_setup(x0: torch.Tensor, robustness: Any, encoders: Sequence[tuple[Encoder, float]]
                 ) -> tuple[Transform | None, torch.Tensor | None]:
    """The EOT transform and the L∞ budget map that ``robustness`` asks for (``None`` when off)."""
    transform = None
    eps_map = None
    if robustness is not None and robustness.eot != "none":
        from .eot import make_transform

        renderer = next((e for e, _ in encoders if e.has_decoder), None)
        transform = make_transform(robustness.eot, encoder=renderer)
    if robustness is not None and robustness.masking:
        from .masking import budget_map

        eps_map = budget_map(x0)
    return transform, eps_map


def perturb_toward(rgb: np.ndarray, x0: torch.Tensor, objective: Any, *, budget: Budget, effort: Effort,
                   alpha: float, seed: int, quantise: Quantiser | None = None, models_dir=None,  # noqa: ANN001
                   transform: Transform | None = None, progress: Callable[[int, int], None] | None = None,
                   update: str = "adam", eps_map: torch.Tensor | None = None,
                   init_noise: float = 0.0, radial_lpips: bool = False,
                   perturbation_scale: float = 1.0) -> PerturbOutcome:
    """Optimise δ at the work resolution of ``x0`` against ``objective`` under ``budget``, upsample it to
    the full image ``rgb``, calibrate it on the quantised result, and measure what was achieved.
    ``eps_map`` scales the L∞ cap per pixel (adaptive masking); ``init_noise`` starts δ from seeded
    uniform noise of that amplitude (anti-fingerprint); ``radial_lpips`` shrinks δ where a step went above
    the LPIPS ceiling (:class:`~sfumato.budgets.LpipsBudget`; used by poison and protect, whose photos
    overshoot); ``perturbation_scale`` < 1 optimises δ on a coarser grid (a low-frequency perturbation,
    see :func:`~sfumato.optimize.optimise`)."""
    from .metrics.lpips import load_lpips

    quantise = quantise or round_to_bits
    h, w = rgb.shape[:2]
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
    loop = optimise(x0, full_resolution_view(objective, x0, (h, w)), budgets, steps=effort.steps, lr=effort.lr,
                    generator=gen, update=update, coarse_fraction=effort.coarse_fraction,  # type: ignore[arg-type]
                    decay="cosine" if effort.lr_schedule == "cosine" else "none",
                    early_stop=effort.early_stop, transform=transform, callback=progress, init_noise=init_noise,
                    param_size=param_size)
    timing["optimise"] = time.perf_counter() - t
    t = time.perf_counter()
    delta_full = to_hwc(resize(loop.delta, (h, w)))
    linf_cap: float | np.ndarray = budget.linf
    if eps_map is not None:  # the per-pixel cap holds at full size too, also after calibration's scaling
        linf_cap = to_hwc(resize(eps_map.expand(1, 3, *eps_map.shape[-2:]).float(), (h, w))) * budget.linf
    lp = load_lpips(budget.lpips_net, models_dir=models_dir)

    def lpips_fn(a: np.ndarray, b: np.ndarray) -> float:
        with torch.no_grad():
            return float(lp(to_nchw(a), to_nchw(b))[0])

    out, scale, _ = calibrate(rgb, delta_full, lpips_p=budget.lpips, linf=linf_cap, quantise=quantise,
                              lpips_fn=lpips_fn, iters=effort.calibration_steps)
    timing["calibrate"] = time.perf_counter() - t
    latent = objective.distances(resize(to_nchw(out), tuple(x0.shape[-2:])))
    achieved = protected_quality(out, rgb, lpips_net=budget.lpips_net, models_dir=models_dir)
    return PerturbOutcome(out, scale, loop, latent, achieved, timing)
