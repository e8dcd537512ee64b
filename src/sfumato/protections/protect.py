"""One-pass protection: a style cloak and a concept poison optimised *jointly* under one perceptual budget.

Artists today run Nightshade, then Glaze, then export (Shan et al., IEEE S&P 2024 and USENIX Security
2023 recommend that order), which stacks two perturbations and their visible cost. Here the two latent
targets — the artwork rendered in another style (Ω(x, T), Glaze) and an anchor of concept A
(Nightshade) — are weighted terms of one objective in the shared loop of :mod:`sfumato.perturb`, with a
single budget enforced on the saved file. :func:`sequential_array` runs the published order (poison,
then cloak) at the same total budget, for comparison.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from sfumato.config import Budget, CloakConfig, Effort, JSONConfig, require
from sfumato.encoders.base import Encoder
from sfumato.encoders.cache import load_encoders
from sfumato.io.tensors import fit_to, resize, round_to_bits, to_nchw, work_size
from sfumato.optimise.calibrate import calibrate
from sfumato.optimise.objectives import LatentTargetObjective, WeightedObjectives
from sfumato.optimise.perturb import Quantiser, perturb_toward
from sfumato.protections.poison import PoisonConfig, poison_array
from sfumato.targets.anchors import choose_anchor


@dataclass(frozen=True, kw_only=True)
class ProtectConfig(JSONConfig):
    """Joint cloak + poison. ``budget`` is the single budget of the combined perturbation;
    ``style_weight``/``poison_weight`` weight the two (normalised) latent objectives."""

    concept: str
    target: str
    budget: Budget = field(default_factory=lambda: Budget(lpips=0.07, linf=24 / 255))
    effort: Effort = field(default_factory=lambda: Effort(steps=60, resolution=512, lr=0.008))
    encoders: tuple[tuple[str, float], ...] = (("taef2", 1.0),)
    target_style: str = "auto"
    style_strength: float = 1.0
    target_renderer: str = "gatys"
    style_weight: float = 1.0
    poison_weight: float = 1.0
    anchor_choice: str = "cheapest"
    anchor_index: int = 0
    alpha: float = 30.0
    seed: int = 0

    def __post_init__(self) -> None:
        require(self.style_weight >= 0 and self.poison_weight >= 0 and self.style_weight + self.poison_weight > 0,
               "style_weight and poison_weight must be >= 0 and not both 0")
        self.cloak_config()
        self.poison_config()

    def cloak_config(self, *, budget: Budget | None = None) -> CloakConfig:
        return CloakConfig(budget=budget or self.budget, effort=self.effort, encoders=self.encoders,
                           target_style=self.target_style, style_strength=self.style_strength, alpha=self.alpha,
                           seed=self.seed, target_renderer=self.target_renderer)

    def poison_config(self, *, budget: Budget | None = None) -> PoisonConfig:
        return PoisonConfig(concept=self.concept, target=self.target, budget=budget or self.budget,
                            effort=self.effort, encoders=self.encoders, anchor_choice=self.anchor_choice,  # type: ignore[arg-type]
                            anchor_index=self.anchor_index, alpha=self.alpha, seed=self.seed)


@dataclass
class ProtectResult:
    image: np.ndarray
    config: ProtectConfig
    target: dict[str, Any]
    anchor: dict[str, Any]
    latent: list[dict[str, Any]]
    achieved: dict[str, float]
    timing_s: dict[str, float]
    steps_run: int
    scale: float
    history: list[dict] = field(default_factory=list)


def _style_target(x0: torch.Tensor, encs: Sequence[tuple[Encoder, float]], cfg: CloakConfig,
                  models_dir=None) -> tuple[torch.Tensor, dict[str, Any]]:  # noqa: ANN001
    from sfumato.targets.style_target import render_target
    from sfumato.targets.styles import resolve_style_option

    renderer = next((e for e, _ in encs if e.has_decoder), None)
    if renderer is None:
        raise ValueError("protect needs an encoder with a decoder (e.g. taef2) to render the target style")
    candidates = resolve_style_option(cfg.target_style)
    img, style, report = render_target(x0, renderer, candidates, cfg, seed=cfg.seed, models_dir=models_dir)
    return img, {"style": style.name, "strength": cfg.style_strength, **report}


def protect_array(rgb: np.ndarray, config: ProtectConfig, anchors: Sequence[np.ndarray], *,
                  anchor_names: Sequence[str] | None = None, quantise: Quantiser | None = None,
                  encoders: Sequence[tuple[Encoder, float]] | None = None, models_dir=None,  # noqa: ANN001
                  progress: Callable[[int, int], None] | None = None) -> ProtectResult:
    """Cloak and poison one image jointly (one optimisation, one budget)."""
    if not anchors:
        raise ValueError("no anchor images for the poison part: give --anchors DIR or --anchor-model")
    t0 = time.perf_counter()
    h, w = rgb.shape[:2]
    encs = list(encoders) if encoders is not None else load_encoders(config, models_dir=models_dir)
    x0 = resize(to_nchw(rgb), work_size(h, w, config.effort.resolution)).contiguous(
        memory_format=torch.channels_last)
    style_img, target = _style_target(x0, encs, config.cloak_config(), models_dir)
    idx, dists = choose_anchor(x0, anchors, encs, choice=config.anchor_choice, index=config.anchor_index)
    anchor_img = fit_to(anchors[idx], tuple(x0.shape[-2:]))  # type: ignore[arg-type]
    objective = WeightedObjectives([
        ("style", LatentTargetObjective(x0, style_img, encs), config.style_weight),
        ("poison", LatentTargetObjective(x0, anchor_img, encs), config.poison_weight),
    ])
    t_target = time.perf_counter() - t0
    res = perturb_toward(rgb, x0, objective, budget=config.budget, effort=config.effort, alpha=config.alpha,
                         seed=config.seed, quantise=quantise, models_dir=models_dir, progress=progress,
                         radial_lpips=True)
    names = list(anchor_names) if anchor_names is not None else [f"anchor-{i}" for i in range(len(anchors))]
    anchor = {"index": idx, "name": names[idx], "choice": config.anchor_choice,
              "distances": {n: round(d, 4) for n, d in zip(names, dists, strict=True)}}
    timing = {"target": t_target, **res.timing, "total": time.perf_counter() - t0}
    return ProtectResult(res.image, config, target, anchor, res.latent, res.achieved,
                         {k: round(v, 3) for k, v in timing.items()}, res.loop.steps_run, res.scale,
                         res.loop.history)


def sequential_array(rgb: np.ndarray, config: ProtectConfig, anchors: Sequence[np.ndarray], *,
                     quantise: Quantiser | None = None, models_dir=None) -> dict[str, Any]:  # noqa: ANN001
    """The published two-app order at the same *total* budget: poison (budget p), then cloak the poisoned
    image (budget p relative to it), then scale the total perturbation so the final image meets p against
    the original. Returns the image and the same latent figures as :func:`protect_array` for comparison."""
    from sfumato.metrics.lpips import load_lpips
    from sfumato.metrics.saved import protected_quality
    from sfumato.protections.cloak import cloak_array

    quantise = quantise or round_to_bits
    t0 = time.perf_counter()
    p1 = poison_array(rgb, config.poison_config(), anchors, quantise=quantise, models_dir=models_dir)
    c2 = cloak_array(p1.image, config.cloak_config(), quantise=quantise, models_dir=models_dir)
    lp = load_lpips(config.budget.lpips_net, models_dir=models_dir)

    def lpips_fn(a: np.ndarray, b: np.ndarray) -> float:
        with torch.no_grad():
            return float(lp(to_nchw(a), to_nchw(b))[0])

    total = (c2.image - rgb).astype(np.float32)
    final, scale, _ = calibrate(rgb, total, lpips_p=config.budget.lpips, linf=config.budget.linf,
                                quantise=quantise, lpips_fn=lpips_fn, max_scale=1.0)
    # Measure both effects on the final image with the same objectives the joint pass uses.
    encs = load_encoders(config, models_dir=models_dir)
    h, w = rgb.shape[:2]
    x0 = resize(to_nchw(rgb), work_size(h, w, config.effort.resolution))
    style_img, target = _style_target(x0, encs, config.cloak_config(), models_dir)
    idx, _ = choose_anchor(x0, anchors, encs, choice=config.anchor_choice, index=config.anchor_index)
    objective = WeightedObjectives([
        ("style", LatentTargetObjective(x0, style_img, encs), config.style_weight),
        ("poison", LatentTargetObjective(x0, fit_to(anchors[idx], tuple(x0.shape[-2:])), encs),  # type: ignore[arg-type]
         config.poison_weight),
    ])
    latent = objective.distances(resize(to_nchw(final), tuple(x0.shape[-2:])))
    return {"image": final, "scale": scale, "latent": latent, "target": target,
            "achieved": protected_quality(final, rgb, lpips_net=config.budget.lpips_net, models_dir=models_dir),
            "seconds": time.perf_counter() - t0}


__all__ = ["ProtectConfig", "ProtectResult", "protect_array", "sequential_array"]
