"""Nightshade's poison perturbation, reimplemented on Sfumato's encoders and loop.

Shan, Ding, Passananti, Wu, Zheng, Zhao, "Nightshade: Prompt-Specific Poisoning Attacks on Text-to-Image
Generative Models", IEEE S&P 2024 (arXiv:2310.13828), §5.3: a poison image of concept C is the clean
image x_t plus δ that moves its features to those of an *anchor* image x_a of the target concept A,

    min_δ ‖F(x_t + δ) − F(x_a)‖²   subject to   LPIPS(x_t + δ, x_t) < p,   p = 0.07,

where F is the image feature extractor of the text-to-image model (its VAE encoder for latent diffusion).

Settings used here, and where they come from:

* loss: the squared latent distance to the anchor's latent (normalised by its clean value, as Sfumato
  does — same signed gradient for one encoder); the anchor image is passed by the caller as ``target``
  (resized to cover the image and centre-cropped) — generating it (the paper prompts the model for
  concept A) is outside this module;
* optimiser: signed-gradient PGD, **500** steps, L∞ cap **0.05**, step size decaying **linearly** to 0 —
  the settings attributed to the authors' public release (Nightshade v1.0). That release is closed-source,
  so these could not be checked against code; the paper itself states only the LPIPS budget;
* the paper's constraint is kept as a soft penalty α·max(LPIPS − p, 0) with p = **0.07** and α = 30
  (Glaze's weight; the paper gives none), evaluated at the encoder's resolution. Pass ``lpips_p=0`` to
  drop it and run the pure L∞ attack;
* the first step size, not published, is ``eps/10`` (0.005): the signed steps then travel about 25·ε in
  total, enough to reach any corner of the box; no random start.

As for every baseline, the encoder is a Sfumato adapter (TAEF2 by default), not the SD/SDXL VAE.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from sfumato.baselines import (
    BaselineResult,
    Quantiser,
    check_positive,
    check_rgb,
    check_settings,
    finish,
    fit_image,
    prepare,
    resolve_eps,
)
from sfumato.io.tensors import round_to_bits
from sfumato.optimise.budgets import LinfBudget, LpipsBudget
from sfumato.optimise.loop import optimise
from sfumato.optimise.objectives import LatentTargetObjective

STEPS = 500
EPS = 0.05
STEP_RATIO = 0.1
LPIPS_P = 0.07
ALPHA = 30.0


def nightshade_poison(
    rgb: np.ndarray,
    *,
    target: np.ndarray | None = None,
    encoders: Sequence[tuple[Any, float]] | None = None,
    steps: int = STEPS,
    eps: float | None = None,
    step_size: float | None = None,
    lpips_p: float | None = None,
    alpha: float = ALPHA,
    lpips_net: str = "alex",
    seed: int = 0,
    resolution: int = 512,
    quantise: Quantiser | None = None,
    matched_budget: Any = None,
    models_dir: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> BaselineResult:
    """Nightshade poison of ``rgb`` (HxWx3 float32 in [0, 1]) toward the anchor image ``target``.

    ``target``: an image of the target concept (HxWx3 float array; required). ``eps``: L∞ cap (default
    0.05); ``step_size``: first step (default ``eps/10``), decaying linearly to 0; ``lpips_p`` (default
    0.07, 0 disables) and ``alpha`` (30): the LPIPS penalty. ``matched_budget``: a
    :class:`sfumato.config.Budget`; sets ``eps = budget.linf``, p = ``budget.lpips`` and calibrates the
    result to the budget.
    """
    t_start = time.perf_counter()
    method = "nightshade"
    rgb = check_rgb(rgb, "nightshade: rgb")
    if target is None:
        raise ValueError("nightshade: target must be an anchor image of the target concept (HxWx3 float array "
                         "in [0, 1]), e.g. a photo of a cat to poison 'dog'")
    check_settings(steps=steps, resolution=resolution, seed=seed)
    eps_used = resolve_eps(eps, EPS, matched_budget, method)
    step = check_positive(step_size if step_size is not None else STEP_RATIO * eps_used, "step_size", method)
    if matched_budget is not None:
        if lpips_p is not None:
            raise ValueError("nightshade: give either lpips_p or matched_budget (which sets p = budget.lpips), "
                             "not both")
        p, net = float(matched_budget.lpips), matched_budget.lpips_net
    else:
        p, net = float(LPIPS_P if lpips_p is None else lpips_p), lpips_net
    if not 0 <= p < 1:
        raise ValueError(f"nightshade: lpips_p must be in [0, 1) (0 disables the penalty), got {p}; the paper uses 0.07")
    if alpha < 0:
        raise ValueError(f"nightshade: alpha must be >= 0, got {alpha}")
    quantise = quantise or round_to_bits

    work = prepare(rgb, encoders, resolution, models_dir, method)
    anchor = fit_image(target, work.x0, "nightshade: target (anchor image)")
    objective = LatentTargetObjective(work.x0, anchor, work.encoders)
    budgets: list = [LinfBudget(eps=eps_used)]
    if p > 0 and alpha > 0:
        budgets.insert(0, LpipsBudget(p=p, alpha=alpha, net=net, margin=1.0, models_dir=models_dir))
    gen = torch.Generator().manual_seed(seed)
    loop = optimise(work.x0, objective, budgets, steps=steps, lr=step, generator=gen, update="sign",
                    decay="linear", callback=progress)
    params = {"method": "Nightshade poison (Shan et al., IEEE S&P 2024)", "steps": steps, "update": "sign",
              "eps": eps_used, "step_size": step, "step_schedule": "linear decay to 0", "init": "zero",
              "lpips_p": p if p > 0 and alpha > 0 else None, "alpha": alpha, "lpips_net": net, "seed": seed,
              "resolution": resolution, "target": f"anchor image {list(np.shape(target))}"}
    return finish(method, rgb, work, loop, objective, eps=eps_used, quantise=quantise,
                  matched_budget=matched_budget, models_dir=models_dir, params=params, t_start=t_start,
                  target_image=anchor)
