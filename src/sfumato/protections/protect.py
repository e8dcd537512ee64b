"""One-pass protection: a style cloak and a concept poison optimised *jointly* under one perceptual budget.

Artists today run Nightshade, then Glaze, then export (Shan et al., IEEE S&P 2024 and USENIX Security
2023 recommend that order), which stacks two perturbations and their visible cost. Here the two latent
targets — the artwork rendered in another style (Ω(x, T), Glaze) and an anchor of concept A
(Nightshade) — are weighted terms of one objective in the shared loop of :mod:`sfumato.optimise.perturb`,
with a single budget enforced on the saved file. Its configuration, :class:`~sfumato.config.ProtectConfig`,
and presets live in :mod:`sfumato.config`; ``benchmarks/protect_vs_sequential.py`` compares it with the
published two-app order.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sfumato.config import CloakConfig, ProtectConfig
from sfumato.encoders.base import Encoder
from sfumato.encoders.cache import load_encoders
from sfumato.io.outputs import Quantiser
from sfumato.optimise.objectives import LatentTargetObjective, WeightedObjectives
from sfumato.optimise.perturb import perturb_toward
from sfumato.protections.device import models_on, resolve_device, work_view_on
from sfumato.protections.poison import aim_at_anchor
from sfumato.protections.result import ProtectionResult, outcome_fields


@dataclass(kw_only=True)
class ProtectResult(ProtectionResult):
    """The outcome of :func:`protect_array`: ``target`` (the style aimed at) and ``anchor`` (the concept
    anchor aimed at), with both targets' figures in ``latent``."""

    config: ProtectConfig
    target: dict[str, Any]
    anchor: dict[str, Any]


def style_target(x0: torch.Tensor, encs: Sequence[tuple[Encoder, float]], cfg: CloakConfig,
                 models_dir=None) -> tuple[torch.Tensor, dict[str, Any]]:  # noqa: ANN001
    """The artwork ``x0`` rendered in the target style of ``cfg`` and its manifest entry."""
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
                  progress: Callable[[int, int], None] | None = None,
                  device: str | torch.device | None = None) -> ProtectResult:
    """Cloak and poison one image jointly (one optimisation, one budget), computed on ``device``
    (:func:`sfumato.protections.device.resolve_device`)."""
    if not anchors:
        raise ValueError("no anchor images for the poison part: give --anchors DIR or --anchor-model")
    t0 = time.perf_counter()
    dev = resolve_device(device)
    encs = models_on(encoders if encoders is not None else load_encoders(config, models_dir=models_dir), dev)
    x0 = work_view_on(rgb, config.effort.resolution, dev)
    style_img, target = style_target(x0, encs, config.cloak_config(), models_dir)
    anchor_img, anchor = aim_at_anchor(x0, anchors, encs, config, anchor_names)
    objective = WeightedObjectives([
        ("style", LatentTargetObjective(x0, style_img, encs), config.style_weight),
        ("poison", LatentTargetObjective(x0, anchor_img, encs), config.poison_weight),
    ])
    t_target = time.perf_counter() - t0
    res = perturb_toward(rgb, x0, objective, budget=config.budget, effort=config.effort, alpha=config.alpha,
                         seed=config.seed, quantise=quantise, models_dir=models_dir, progress=progress,
                         radial_lpips=True)
    timing = {"target": t_target, **res.timing, "total": time.perf_counter() - t0}
    return ProtectResult(**outcome_fields(res, timing), config=config, target=target, anchor=anchor)


__all__ = ["ProtectConfig", "ProtectResult", "protect_array", "style_target"]
