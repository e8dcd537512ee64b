"""Concept poison: an image of concept C perturbed so a model's encoder sees concept A.

Method of Shan et al., "Nightshade: Prompt-Specific Poisoning Attacks on Text-to-Image Generative
Models" (IEEE S&P 2024), §5: for a candidate image x of C and an *anchor* image x_A of A, minimise
‖Φ(x+δ) − Φ(x_A)‖² subject to LPIPS(x+δ, x) < p (p = 0.07 in the paper). Paired with a caption that
names C, a few hundred such images teach a fine-tuned model C → A.

Sfumato's version runs in the shared loop of :mod:`sfumato.optimise.perturb` (same budget objects,
trainer-resolution view, budget enforced on the saved file). Anchors come from a folder or from a
text-to-image pipeline (:mod:`sfumato.targets.anchors`); per image the anchor is chosen as
``PoisonConfig.anchor_choice`` asks: ``"aligned"`` — the anchor flipped, cropped and scaled to keep the
photo's layout, nearest in latent space (:mod:`sfumato.targets.anchor_alignment`), ``"cheapest"`` — the
centre-cropped anchor whose latent is nearest, or ``"fixed"``. With ``Effort.views == "trainer"`` the
objective is taken in expectation over trainer views (buckets, native size, random crops;
:mod:`sfumato.optimise.view_sampling`), the work-view objective reporting the manifest's figures. Candidate selection uses a pluggable
concept scorer (:mod:`sfumato.judges.scorers`); the judges that report stealth and effect never enter the
loss. Its configuration, :class:`~sfumato.config.PoisonConfig`, and presets live in :mod:`sfumato.config`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sfumato.config import ConceptFields, PoisonConfig
from sfumato.encoders.base import Encoder
from sfumato.encoders.cache import load_encoders
from sfumato.io.outputs import Quantiser
from sfumato.io.tensors import fit_to
from sfumato.optimise.objectives import LatentTargetObjective
from sfumato.optimise.perturb import perturb_toward
from sfumato.optimise.view_sampling import over_trainer_views
from sfumato.protections.device import models_on, resolve_device, work_view_on
from sfumato.protections.result import ProtectionResult, outcome_fields
from sfumato.targets.anchors import choose_anchor


@dataclass(kw_only=True)
class PoisonResult(ProtectionResult):
    """The outcome of :func:`poison_array`; ``anchor``: which anchor was aimed at and every anchor's
    latent distance."""

    config: PoisonConfig
    anchor: dict[str, Any]


def aim_at_anchor(x0: torch.Tensor, anchors: Sequence[np.ndarray], encoders: Sequence[tuple[Encoder, float]],
                  config: ConceptFields, anchor_names: Sequence[str] | None
                  ) -> tuple[torch.Tensor, dict[str, Any]]:
    """The anchor to aim at (aligned, cheapest or fixed, as ``config`` asks), at ``x0``'s size, and its
    manifest entry: index, name, choice and latent distances — every anchor's (centre-cropped) for
    ``cheapest``/``fixed``; for ``aligned`` (:func:`sfumato.targets.anchor_alignment.align_anchor`) the
    aligned anchor's and the unaligned nearest anchor's, with the flip and crop found (``alignment``)."""
    names = list(anchor_names) if anchor_names is not None else [f"anchor-{i}" for i in range(len(anchors))]
    if config.anchor_choice == "aligned":
        from sfumato.targets.anchor_alignment import align_anchor

        found = align_anchor(x0, anchors, encoders)
        report = found.report()
        report["unaligned_name"] = names[found.unaligned_index]
        dist = {names[found.index] + (" (aligned)" if found.index == found.unaligned_index else ""):
                round(found.distance, 4), names[found.unaligned_index]: round(found.unaligned_distance, 4)}
        return found.image, {"index": found.index, "name": names[found.index], "choice": "aligned",
                             "distances": dist, "alignment": report}
    idx, dists = choose_anchor(x0, anchors, encoders, choice=config.anchor_choice, index=config.anchor_index)
    anchor_img = fit_to(anchors[idx], tuple(x0.shape[-2:])).to(x0)  # type: ignore[arg-type]
    return anchor_img, {"index": idx, "name": names[idx], "choice": config.anchor_choice,
                        "distances": {n: round(d, 4) for n, d in zip(names, dists, strict=True)}}


def poison_array(rgb: np.ndarray, config: PoisonConfig, anchors: Sequence[np.ndarray], *,
                 anchor_names: Sequence[str] | None = None, quantise: Quantiser | None = None,
                 encoders: Sequence[tuple[Encoder, float]] | None = None, models_dir=None,  # noqa: ANN001
                 transform=None, progress: Callable[[int, int], None] | None = None,  # noqa: ANN001
                 device: str | torch.device | None = None) -> PoisonResult:
    """Poison one RGB image (HxWx3 float32 in [0, 1]) toward the anchors' concept, computed on ``device``
    (:func:`sfumato.protections.device.resolve_device`)."""
    if not anchors:
        raise ValueError("no anchor images: give a folder of target-concept images (--anchors DIR) or a "
                         "text-to-image model to generate them (--anchor-model)")
    t0 = time.perf_counter()
    dev = resolve_device(device)
    encs = models_on(encoders if encoders is not None else load_encoders(config, models_dir=models_dir), dev)
    x0 = work_view_on(rgb, config.effort.resolution, dev)
    anchor_img, anchor = aim_at_anchor(x0, anchors, encs, config, anchor_names)
    objective, transform = over_trainer_views(LatentTargetObjective(x0, anchor_img, encs), x0, anchor_img, encs,
                                              rgb=rgb, effort=config.effort, seed=config.seed, transform=transform,
                                              models_dir=models_dir)
    eps_map = None
    if config.masking:
        from sfumato.optimise.masking import budget_map

        eps_map = budget_map(x0)
    t_target = time.perf_counter() - t0
    res = perturb_toward(rgb, x0, objective, budget=config.budget, effort=config.effort, alpha=config.alpha,
                         seed=config.seed, quantise=quantise, models_dir=models_dir, transform=transform,
                         progress=progress, radial_lpips=True, eps_map=eps_map,
                         perturbation_scale=config.perturbation_scale)
    timing = {"target": t_target, **res.timing, "total": time.perf_counter() - t0}
    return PoisonResult(**outcome_fields(res, timing), config=config, anchor=anchor)


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


__all__ = ["CAPTION_TEMPLATES", "PoisonConfig", "PoisonResult", "aim_at_anchor", "caption_for", "poison_array"]
