"""Style cloak: a perceptually bounded perturbation that makes a model's encoder see the artwork in a
different style.

Method of Shan et al., "Glaze: Protecting Artists from Style Mimicry by Text-to-Image Models" (USENIX
Security 2023), Eq. 3:  minimise ‖Φ(x+δ) − Φ(Ω(x, T))‖² + α·max(LPIPS(x+δ, x) − p, 0), where Φ is the
encoder, Ω(x, T) renders x in target style T (:mod:`sfumato.style_transfer`) and p the LPIPS budget.

What Sfumato adds around that objective:

* the encoder sees the image at the resolution a trainer would use (long side ``effort.resolution``),
  reached through a differentiable resize; the perturbation lives at that resolution and is upsampled
  smoothly to the full image, so any size and aspect ratio works in bounded memory;
* an ensemble of encoders with weights, each loss normalised by its clean-to-target distance;
* the budget is enforced on the *quantised* full-resolution image exactly as it will be saved: the
  perturbation is scaled by a factor found by bisection so that LPIPS ≤ p and |δ| ≤ L∞ cap hold after
  the output codec (8/16-bit rounding, or the JPEG encoder) — :func:`calibrate`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .budgets import LinfBudget, LpipsBudget
from .config import CloakConfig
from .encoders.base import Encoder
from .optimize import Transform, optimise

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
                 coarse_scale: float = 0.5) -> None:
        self.size_fine = tuple(x0.shape[-2:])
        self.size_coarse = (max(8, round(x0.shape[-2] * coarse_scale)), max(8, round(x0.shape[-1] * coarse_scale)))
        self.targets: list[EncoderTarget] = []
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
                df = float((enc.encode(x0) - tf).norm())
                dc = float((enc.encode(resize(x0, self.size_coarse)) - tc).norm())
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
            for t in self.targets:
                d = float((t.encoder.encode(v) - t.fine).norm())
                out.append({"encoder": t.encoder.id, "clean_to_target": t.clean_dist_fine,
                            "protected_to_target": d, "relative_reduction": 1 - d / t.clean_dist_fine})
        return out


def choose_style(x_work: torch.Tensor, renderer: Encoder, candidates: Sequence[Any], *, seed: int,
                 low_pct: float = 50, high_pct: float = 75) -> tuple[Any, dict[str, float]]:
    """Glaze's target choice: a candidate whose style distance from the artwork lies between the
    ``low_pct`` and ``high_pct`` percentiles of all candidates' distances (seeded pick among those)."""
    from .style_transfer import style_distance

    with torch.no_grad():
        zc = renderer.encode(resize(x_work, work_size(*x_work.shape[-2:], 256)))
        dists = {}
        for c in candidates:
            zs = torch.cat([renderer.encode(to_nchw(e)).flatten(2) for e in c.exemplars], dim=2)
            dists[c.name] = style_distance(zc, zs[..., None])
    if len(candidates) == 1:
        return candidates[0], dists
    vals = np.array(list(dists.values()))
    lo, hi = np.percentile(vals, low_pct), np.percentile(vals, high_pct)
    band = [c for c in candidates if lo <= dists[c.name] <= hi] or list(candidates)
    rng = np.random.default_rng(seed)
    return band[int(rng.integers(len(band)))], dists


def _apply(x_full: np.ndarray, delta_full: np.ndarray, s: float, linf: float, quantise: Quantiser) -> np.ndarray:
    d = np.clip(delta_full * s, -linf, linf)
    return quantise(np.clip(x_full + d, 0, 1))


def calibrate(x_full: np.ndarray, delta_full: np.ndarray, *, lpips_p: float, linf: float, quantise: Quantiser,
              lpips_fn: Callable[[np.ndarray, np.ndarray], float], max_scale: float = 1.5,
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


@dataclass
class CloakResult:
    """The outcome of :func:`cloak_array`: the protected image (already passed through the output
    codec's quantisation), what it was aimed at and what was measured."""

    image: np.ndarray
    config: CloakConfig
    target: dict[str, Any]
    latent: list[dict[str, float]]
    achieved: dict[str, float]
    timing_s: dict[str, float]
    steps_run: int
    scale: float
    target_image: np.ndarray | None = None
    history: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "latent": self.latent, "achieved": self.achieved,
                "timing_s": self.timing_s, "steps_run": self.steps_run, "scale": self.scale,
                "config": self.config.to_dict()}


def load_encoders(config: CloakConfig, *, models_dir=None) -> list[tuple[Encoder, float]]:  # noqa: ANN001

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


def cloak_array(
    rgb: np.ndarray,
    config: CloakConfig | None = None,
    *,
    quantise: Quantiser | None = None,
    encoders: Sequence[tuple[Encoder, float]] | None = None,
    models_dir=None,  # noqa: ANN001
    transform: Transform | None = None,
    progress: Callable[[int, int], None] | None = None,
    keep_target_image: bool = False,
) -> CloakResult:
    """Cloak one RGB image (float32 HxWx3 in [0, 1], any size). ``quantise`` simulates the output codec
    (default: 8-bit rounding); the returned image is exactly what that codec will store."""
    from .metrics.lpips import load_lpips
    from .style_transfer import render_in_style
    from .styles import resolve_style_option

    config = config or CloakConfig()
    quantise = quantise or round_to_bits
    t_start = time.perf_counter()
    timing: dict[str, float] = {}
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB array, got shape {rgb.shape}")
    h, w = rgb.shape[:2]
    encs = list(encoders) if encoders is not None else load_encoders(config, models_dir=models_dir)
    renderer = next((e for e, _ in encs if e.has_decoder), None)
    if renderer is None:
        raise ValueError("the style cloak needs at least one encoder with a decoder (e.g. taef2) to render "
                         "the target style; add one to config.encoders")
    x_full = to_nchw(rgb)
    x0 = resize(x_full, work_size(h, w, config.effort.resolution)).contiguous(memory_format=torch.channels_last)
    timing["load"] = time.perf_counter() - t_start

    t = time.perf_counter()
    candidates = resolve_style_option(config.target_style)
    style, dists = choose_style(x0, renderer, candidates, seed=config.seed)
    exemplars = [to_nchw(e) for e in style.exemplars]
    target_img = render_in_style(renderer, x0, exemplars, strength=config.style_strength)
    objective = LatentTargetObjective(x0, target_img, encs)
    timing["target"] = time.perf_counter() - t

    t = time.perf_counter()
    gen = torch.Generator().manual_seed(config.seed)
    budgets = [LpipsBudget(p=config.budget.lpips, alpha=config.alpha, net=config.budget.lpips_net,
                           models_dir=models_dir),
               LinfBudget(eps=config.budget.linf)]
    eff = config.effort
    loop = optimise(x0, objective, budgets, steps=eff.steps, lr=eff.lr, generator=gen, update="adam",
                    coarse_fraction=eff.coarse_fraction, early_stop=eff.early_stop, transform=transform,
                    callback=progress)
    timing["optimise"] = time.perf_counter() - t

    t = time.perf_counter()
    delta_full = to_hwc(resize(loop.delta, (h, w))) if (h, w) != tuple(x0.shape[-2:]) else to_hwc(loop.delta)
    lp = load_lpips(config.budget.lpips_net, models_dir=models_dir)

    def lpips_fn(a: np.ndarray, b: np.ndarray) -> float:
        with torch.no_grad():
            return float(lp(to_nchw(a), to_nchw(b))[0])

    out, scale, lp_val = calibrate(rgb, delta_full, lpips_p=config.budget.lpips, linf=config.budget.linf,
                                   quantise=quantise, lpips_fn=lpips_fn,
                                   iters=eff.calibration_steps)
    timing["calibrate"] = time.perf_counter() - t

    latent = objective.distances(resize(to_nchw(out), tuple(x0.shape[-2:])))
    achieved = protected_quality(out, rgb, lpips_net=config.budget.lpips_net, models_dir=models_dir)
    timing["total"] = time.perf_counter() - t_start
    target = {"style": style.name, "kind": "builtin" if config.target_style in ("auto", style.name) else "folder",
              "choice": "auto (50th-75th percentile of style distance)" if config.target_style == "auto"
              else "given", "style_distances": {k: round(v, 4) for k, v in dists.items()},
              "strength": config.style_strength}
    return CloakResult(out, config, target, latent, achieved, {k: round(v, 3) for k, v in timing.items()},
                       loop.steps_run, scale, to_hwc(target_img) if keep_target_image else None,
                       loop.history)


def ai_view(rgb: np.ndarray, encoder: Encoder, *, resolution: int = 512) -> np.ndarray:
    """What ``encoder``'s latent of an image looks like, decoded (requires a decoder)."""
    x = resize(to_nchw(rgb), work_size(*rgb.shape[:2], resolution))
    with torch.no_grad():
        y = encoder.decode(encoder.encode(x))[..., : x.shape[-2], : x.shape[-1]]
    return to_hwc(y)


__all__ = ["CloakResult", "cloak_array", "calibrate", "ai_view", "work_size", "math"]
