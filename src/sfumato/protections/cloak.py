"""Style cloak: a perceptually bounded perturbation that makes a model's encoder see the artwork in a
different style.

Method of Shan et al., "Glaze: Protecting Artists from Style Mimicry by Text-to-Image Models" (USENIX
Security 2023), Eq. 3:  minimise ‖Φ(x+δ) − Φ(Ω(x, T))‖² + α·max(LPIPS(x+δ, x) − p, 0), where Φ is the
encoder, Ω(x, T) renders x in target style T and p the LPIPS budget.

What Sfumato adds around that objective:

* built-in procedural target styles (no data needed) or the user's reference folders, chosen as in
  Glaze between the 50th and 75th percentile of style distance (:mod:`sfumato.targets.style_target`);
* Ω rendered by neural style transfer by default (Gatys et al., CVPR 2016, :mod:`sfumato.targets.gatys`),
  or by whitening–colouring in an autoencoder's latent space (:mod:`sfumato.targets.latent_wct`) or a
  diffusers img2img pipeline (:mod:`sfumato.targets.img2img`), per ``CloakConfig.target_renderer``;
* the shared machinery of :mod:`sfumato.optimise.perturb`: trainer-resolution view, encoder ensembles,
  and the budget enforced on the quantised image exactly as it will be saved;
* with ``Effort.views == "trainer"``, the objective in expectation over trainer views (buckets, native
  size and random crops, :mod:`sfumato.optimise.view_sampling`) instead of the single work view.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sfumato.config import CloakConfig
from sfumato.encoders.base import Encoder
from sfumato.encoders.cache import load_encoders
from sfumato.io.outputs import Quantiser
from sfumato.io.tensors import resize, round_to_bits, to_hwc, work_size
from sfumato.optimise.loop import Transform
from sfumato.optimise.objectives import LatentTargetObjective
from sfumato.optimise.perturb import image_seed, perturb_toward, robust_setup
from sfumato.optimise.view_sampling import over_trainer_views
from sfumato.protections.device import image_on, models_on, resolve_device
from sfumato.protections.result import ProtectionResult, outcome_fields
from sfumato.targets.style_target import render_target


@dataclass(kw_only=True)
class CloakResult(ProtectionResult):
    """The outcome of :func:`cloak_array`: the protected image (already passed through the output
    codec's quantisation), what it was aimed at (``target``; ``target_image`` on request) and what was
    measured."""

    config: CloakConfig
    target: dict[str, Any]
    target_image: np.ndarray | None = None

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
    device: str | torch.device | None = None,
) -> CloakResult:
    """Cloak one RGB image (float32 HxWx3 in [0, 1], any size). ``quantise`` simulates the output codec
    (default: 8-bit rounding); the returned image is exactly what that codec will store. ``device``: where
    to compute (:func:`sfumato.protections.device.resolve_device`; the encoders are moved there)."""
    from sfumato.targets.styles import resolve_style_option

    config = config or CloakConfig()
    quantise = quantise or round_to_bits
    t_start = time.perf_counter()
    timing: dict[str, float] = {}
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB array, got shape {rgb.shape}")
    h, w = rgb.shape[:2]
    dev = resolve_device(device)
    encs = models_on(encoders if encoders is not None else load_encoders(config, models_dir=models_dir), dev)
    renderer = next((e for e, _ in encs if e.has_decoder), None)
    if renderer is None:
        raise ValueError("the style cloak needs at least one encoder with a decoder (e.g. taef2) to render "
                         "the target style; add one to config.encoders")
    x_full = image_on(rgb, dev)
    seed_used = image_seed(rgb, config.seed) if config.robustness.anti_fingerprint else config.seed
    res_px = config.effort.resolution
    if config.robustness.anti_fingerprint:  # jitter the perturbation grid per image (its spatial structure)
        res_px = int(round(res_px * (0.875 + 0.125 * (seed_used % 1000) / 999)))
        if res_px >= 128:  # on multiples of 16 (the encoder's grid: an odd size costs ~10 % more per step)
            res_px = res_px // 16 * 16
    x0 = resize(x_full, work_size(h, w, res_px)).contiguous(memory_format=torch.channels_last)
    timing["load"] = time.perf_counter() - t_start

    t = time.perf_counter()
    candidates = resolve_style_option(config.target_style)
    target_img, style, vetting = render_target(x0, renderer, candidates, config, seed=seed_used,
                                               models_dir=models_dir)
    objective = LatentTargetObjective(x0, target_img, encs, overshoot=config.target_overshoot)
    timing["target"] = time.perf_counter() - t

    rob = config.robustness
    eot, eps_map = robust_setup(x0, rob, encs)
    objective, eot = over_trainer_views(objective, x0, target_img, encs, rgb=rgb, effort=config.effort,
                                        seed=seed_used, transform=transform or eot, models_dir=models_dir)
    res = perturb_toward(rgb, x0, objective, budget=config.budget, effort=config.effort, alpha=config.alpha,
                         seed=seed_used, quantise=quantise, models_dir=models_dir,
                         transform=eot, progress=progress, eps_map=eps_map,
                         init_noise=config.budget.linf / 4 if rob.anti_fingerprint else 0.0,
                         perturbation_scale=rob.perturbation_scale)
    timing.update(res.timing)
    timing["total"] = time.perf_counter() - t_start
    target = {"style": style.name, "kind": "builtin" if config.target_style in ("auto", style.name) else "folder",
              "choice": "auto (50th-75th percentile of style distance)" if config.target_style == "auto"
              else "given", "strength": config.style_strength, "overshoot": config.target_overshoot, "seed_used": seed_used,
              "work_size": list(x0.shape[-2:]), **vetting}
    return CloakResult(**outcome_fields(res, timing), config=config, target=target,
                       target_image=to_hwc(target_img) if keep_target_image else None)


__all__ = ["CloakResult", "cloak_array"]
