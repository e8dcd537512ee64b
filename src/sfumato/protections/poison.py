"""Concept poison: an image of concept C perturbed so a model's encoder sees concept A.

Method of Shan et al., "Nightshade: Prompt-Specific Poisoning Attacks on Text-to-Image Generative
Models" (IEEE S&P 2024), §5: for a candidate image x of C and an *anchor* image x_A of A, minimise
‖Φ(x+δ) − Φ(x_A)‖² subject to LPIPS(x+δ, x) < p (p = 0.07 in the paper). Paired with a caption that
names C, a few hundred such images teach a fine-tuned model C → A.

Sfumato's version runs in the shared loop of :mod:`sfumato.perturb` (same budget objects, trainer-
resolution view, budget enforced on the saved file). Anchors come from a folder or from a text-to-image
pipeline (:mod:`sfumato.anchors`); per image the anchor whose latent is nearest (the cheapest
perturbation) is used unless a fixed one is asked for. Candidate selection uses a pluggable concept
scorer (:mod:`sfumato.scorers`); the judges that report stealth and effect never enter the loss.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from sfumato.config import Budget, Effort, JSONConfig, require
from sfumato.encoders.base import Encoder
from sfumato.encoders.cache import load_encoders
from sfumato.io.tensors import fit_to, resize, to_nchw, work_size
from sfumato.optimise.objectives import LatentTargetObjective
from sfumato.optimise.perturb import Quantiser, perturb_toward
from sfumato.targets.anchors import choose_anchor

POISON_BUDGET = Budget(lpips=0.07, linf=24 / 255)

#: Search effort of ``sfumato poison`` / ``protect`` per ``--quality`` (the figures in docs/benchmarks.md
#: were measured with these; the cloak's own presets are :data:`sfumato.config.QUALITY_PRESETS`).
POISON_QUALITY: dict[str, Effort] = {
    "fast": Effort(steps=30, resolution=512, lr=0.01),
    "default": Effort(steps=80, resolution=512, lr=0.008),
    "slow": Effort(steps=150, resolution=768, lr=0.008),
}


@dataclass(frozen=True, kw_only=True)
class PoisonConfig(JSONConfig):
    """Everything that determines a poison (with the image and the anchors, it reproduces the result).

    ``anchor_choice``: ``"cheapest"`` (per image, the anchor with the nearest latent) or ``"fixed"``
    (``anchor_index``). ``budget`` defaults to Nightshade's LPIPS p = 0.07 with an L∞ cap of 24/255.
    """

    concept: str
    target: str
    budget: Budget = field(default_factory=lambda: POISON_BUDGET)
    effort: Effort = field(default_factory=lambda: Effort(steps=60, resolution=512, lr=0.004))
    encoders: tuple[tuple[str, float], ...] = (("taef2", 1.0),)
    anchor_choice: Literal["cheapest", "fixed"] = "cheapest"
    anchor_index: int = 0
    alpha: float = 30.0
    seed: int = 0

    def __post_init__(self) -> None:
        require(bool(self.concept.strip()) and bool(self.target.strip()),
               "poison needs a concept C and a target A, e.g. concept='dog', target='cat'")
        require(self.concept != self.target, f"concept and target are both {self.concept!r}; pick two concepts")
        require(self.anchor_choice in ("cheapest", "fixed"),
               f"anchor_choice must be 'cheapest' or 'fixed', got {self.anchor_choice!r}")
        require(self.anchor_index >= 0, f"anchor_index must be >= 0, got {self.anchor_index}")
        require(len(self.encoders) >= 1, "at least one encoder is needed, e.g. encoders=(('taef2', 1.0),)")






@dataclass
class PoisonResult:
    image: np.ndarray
    config: PoisonConfig
    anchor: dict[str, Any]
    latent: list[dict[str, Any]]
    achieved: dict[str, float]
    timing_s: dict[str, float]
    steps_run: int
    scale: float
    history: list[dict] = field(default_factory=list)


def poison_array(rgb: np.ndarray, config: PoisonConfig, anchors: Sequence[np.ndarray], *,
                 anchor_names: Sequence[str] | None = None, quantise: Quantiser | None = None,
                 encoders: Sequence[tuple[Encoder, float]] | None = None, models_dir=None,  # noqa: ANN001
                 transform=None, progress: Callable[[int, int], None] | None = None) -> PoisonResult:  # noqa: ANN001
    """Poison one RGB image (HxWx3 float32 in [0, 1]) toward the anchors' concept."""
    if not anchors:
        raise ValueError("no anchor images: give a folder of target-concept images (--anchors DIR) or a "
                         "text-to-image model to generate them (--anchor-model)")
    t0 = time.perf_counter()
    h, w = rgb.shape[:2]
    encs = list(encoders) if encoders is not None else load_encoders(config, models_dir=models_dir)
    x0 = resize(to_nchw(rgb), work_size(h, w, config.effort.resolution)).contiguous(
        memory_format=torch.channels_last)
    idx, dists = choose_anchor(x0, anchors, encs, choice=config.anchor_choice, index=config.anchor_index)
    anchor_img = fit_to(anchors[idx], tuple(x0.shape[-2:]))  # type: ignore[arg-type]
    objective = LatentTargetObjective(x0, anchor_img, encs)
    t_target = time.perf_counter() - t0
    res = perturb_toward(rgb, x0, objective, budget=config.budget, effort=config.effort, alpha=config.alpha,
                         seed=config.seed, quantise=quantise, models_dir=models_dir, transform=transform,
                         progress=progress, radial_lpips=True)
    names = list(anchor_names) if anchor_names is not None else [f"anchor-{i}" for i in range(len(anchors))]
    anchor = {"index": idx, "name": names[idx], "choice": config.anchor_choice,
              "distances": {n: round(d, 4) for n, d in zip(names, dists, strict=True)}}
    timing = {"target": t_target, **res.timing, "total": time.perf_counter() - t0}
    return PoisonResult(res.image, config, anchor, res.latent, res.achieved,
                        {k: round(v, 3) for k, v in timing.items()}, res.loop.steps_run, res.scale,
                        res.loop.history)




CAPTION_TEMPLATES = (
    "A photo of a {c}.",
    "A {c} in a natural setting.",
    "Close-up photo of a {c}.",
    "A picture of a {c}, taken outdoors.",
    "A {c}, photographed in daylight.",
)


def caption_for(concept: str, *, seed: int) -> str:
    """A natural caption that names the concept (what a scraper would pair with the image)."""
    rng = np.random.default_rng(seed)
    return CAPTION_TEMPLATES[int(rng.integers(len(CAPTION_TEMPLATES)))].format(c=concept)
