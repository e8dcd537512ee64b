"""Style cloak: a perceptually bounded perturbation that makes a model's encoder see the artwork in a
different style.

Method of Shan et al., "Glaze: Protecting Artists from Style Mimicry by Text-to-Image Models" (USENIX
Security 2023), Eq. 3:  minimise ‖Φ(x+δ) − Φ(Ω(x, T))‖² + α·max(LPIPS(x+δ, x) − p, 0), where Φ is the
encoder, Ω(x, T) renders x in target style T (:mod:`sfumato.style_transfer`) and p the LPIPS budget.

What Sfumato adds around that objective:

* built-in procedural target styles (no data needed) or the user's reference folders, chosen as in
  Glaze between the 50th and 75th percentile of style distance (:func:`choose_style`);
* Ω rendered by whitening–colouring in an autoencoder's latent space (:mod:`sfumato.style_transfer`);
* the shared machinery of :mod:`sfumato.perturb`: trainer-resolution view, encoder ensembles, and the
  budget enforced on the quantised image exactly as it will be saved.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .config import CloakConfig
from .encoders.base import Encoder
from .optimize import Transform
from .perturb import (  # noqa: F401  (re-exported: the public home of these helpers used to be here)
    LatentTargetObjective,
    Quantiser,
    _cached_encoder,
    calibrate,
    full_resolution_view,
    image_seed,
    load_encoders,
    perturb_toward,
    protected_quality,
    resize,
    robust_setup,
    round_to_bits,
    to_hwc,
    to_nchw,
    work_size,
)


def choose_style(x_work: torch.Tensor, renderer: Encoder, candidates: Sequence[Any], *, seed: int,
                 low_pct: float = 50, high_pct: float = 75) -> tuple[Any, dict[str, float]]:
    """Glaze's target choice: a candidate whose style distance from the artwork lies between the
    ``low_pct`` and ``high_pct`` percentiles of all candidates' distances (seeded pick among those)."""
    from .style_transfer import exemplar_latents, style_distance

    with torch.no_grad():
        zc = renderer.encode(resize(x_work, work_size(*x_work.shape[-2:], 256)))
        dists = {}
        for c in candidates:
            zs = torch.cat([z.flatten(2) for z in exemplar_latents(renderer, [to_nchw(e) for e in c.exemplars])],
                           dim=2)
            dists[c.name] = style_distance(zc, zs[..., None])
    if len(candidates) == 1:
        return candidates[0], dists
    vals = np.array(list(dists.values()))
    lo, hi = np.percentile(vals, low_pct), np.percentile(vals, high_pct)
    band = [c for c in candidates if lo <= dists[c.name] <= hi] or list(candidates)
    rng = np.random.default_rng(seed)
    return band[int(rng.integers(len(band)))], dists


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
    seed_used = image_seed(rgb, config.seed) if config.robustness.anti_fingerprint else config.seed
    res_px = config.effort.resolution
    if config.robustness.anti_fingerprint:  # jitter the perturbation grid per image (its spatial structure)
        res_px = int(round(res_px * (0.875 + 0.125 * (seed_used % 1000) / 999)))
    x0 = resize(x_full, work_size(h, w, res_px)).contiguous(memory_format=torch.channels_last)
    timing["load"] = time.perf_counter() - t_start

    t = time.perf_counter()
    candidates = resolve_style_option(config.target_style)
    style, dists = choose_style(x0, renderer, candidates, seed=seed_used)
    exemplars = [to_nchw(e) for e in style.exemplars]
    target_img = render_in_style(renderer, x0, exemplars, strength=config.style_strength)
    objective = LatentTargetObjective(x0, target_img, encs)
    timing["target"] = time.perf_counter() - t

    rob = config.robustness
    eot, eps_map = robust_setup(x0, rob, encs)
    res = perturb_toward(rgb, x0, objective, budget=config.budget, effort=config.effort, alpha=config.alpha,
                         seed=seed_used, quantise=quantise, models_dir=models_dir,
                         transform=transform or eot, progress=progress, eps_map=eps_map,
                         init_noise=config.budget.linf / 4 if rob.anti_fingerprint else 0.0)
    timing.update(res.timing)
    timing["total"] = time.perf_counter() - t_start
    target = {"style": style.name, "kind": "builtin" if config.target_style in ("auto", style.name) else "folder",
              "choice": "auto (50th-75th percentile of style distance)" if config.target_style == "auto"
              else "given", "style_distances": {k: round(v, 4) for k, v in dists.items()},
              "strength": config.style_strength, "seed_used": seed_used, "work_size": list(x0.shape[-2:])}
    return CloakResult(res.image, config, target, res.latent, res.achieved,
                       {k: round(v, 3) for k, v in timing.items()}, res.loop.steps_run, res.scale,
                       to_hwc(target_img) if keep_target_image else None, res.loop.history)


def ai_view(rgb: np.ndarray, encoder: Encoder, *, resolution: int = 512) -> np.ndarray:
    """What ``encoder``'s latent of an image looks like, decoded (requires a decoder)."""
    x = resize(to_nchw(rgb), work_size(*rgb.shape[:2], resolution))
    with torch.no_grad():
        y = encoder.decode(encoder.encode(x))[..., : x.shape[-2], : x.shape[-1]]
    return to_hwc(y)


__all__ = ["CloakResult", "cloak_array", "calibrate", "ai_view", "work_size"]
