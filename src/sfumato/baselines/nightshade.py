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

from typing import Unpack

import numpy as np

from sfumato.baselines.common import BaselineResult, BaselineRun, RunOptions, fit_image
from sfumato.optimise.budgets import LinfBudget, LpipsBudget

STEPS = 500
"""Signed-gradient steps (the public release's setting)."""
EPS = 0.05
"""L∞ cap in [0, 1] pixel units."""
STEP_RATIO = 0.1
"""First step size as a share of the L∞ cap (not published); it decays linearly to 0."""
LPIPS_P = 0.07
"""The paper's LPIPS budget p, kept as a soft penalty."""
ALPHA = 30.0
"""Weight of the LPIPS penalty (Glaze's α; the paper gives none)."""


def nightshade_poison(
    rgb: np.ndarray,
    *,
    target: np.ndarray | None = None,
    steps: int = STEPS,
    eps: float | None = None,
    step_size: float | None = None,
    lpips_p: float | None = None,
    alpha: float = ALPHA,
    lpips_net: str = "alex",
    **options: Unpack[RunOptions],
) -> BaselineResult:
    """Nightshade poison of ``rgb`` (HxWx3 float32 in [0, 1]) toward the anchor image ``target``.

    ``target``: an image of the target concept (HxWx3 float array; required). ``eps``: L∞ cap (default
    0.05); ``step_size``: first step (default ``eps/10``), decaying linearly to 0; ``lpips_p`` (default
    0.07, 0 disables) and ``alpha`` (30): the LPIPS penalty. ``matched_budget``: a
    :class:`sfumato.config.Budget`; sets ``eps = budget.linf``, p = ``budget.lpips`` and calibrates the
    result to the budget.
    """
    if target is None:
        raise ValueError("nightshade: target must be an anchor image of the target concept (HxWx3 float array "
                         "in [0, 1]), e.g. a photo of a cat to poison 'dog'")
    method = "nightshade"
    run = BaselineRun.start(method, rgb, steps=steps, eps=eps, default_eps=EPS, **options)
    step = run.step_size(step_size, STEP_RATIO)
    if run.matched_budget is not None:
        if lpips_p is not None:
            raise ValueError("nightshade: give either lpips_p or matched_budget (which sets p = budget.lpips), "
                             "not both")
        p, net = float(run.matched_budget.lpips), run.matched_budget.lpips_net
    else:
        p, net = float(LPIPS_P if lpips_p is None else lpips_p), lpips_net
    if not 0 <= p < 1:
        raise ValueError(f"nightshade: lpips_p must be in [0, 1) (0 disables the penalty), got {p}; the paper uses 0.07")
    if alpha < 0:
        raise ValueError(f"nightshade: alpha must be >= 0, got {alpha}")

    work = run.prepare()
    anchor = fit_image(target, work.x0, "nightshade: target (anchor image)")
    budgets: list = [LinfBudget(eps=run.eps)]
    if p > 0 and alpha > 0:
        budgets.insert(0, LpipsBudget(p=p, alpha=alpha, net=net, margin=1.0, models_dir=run.models_dir))
    loop, objective = run.optimise_toward(anchor, budgets, steps=steps, lr=step, update="sign", decay="linear")
    params = {"method": "Nightshade poison (Shan et al., IEEE S&P 2024)", "steps": steps, "update": "sign",
              "eps": run.eps, "step_size": step, "step_schedule": "linear decay to 0", "init": "zero",
              "lpips_p": p if p > 0 and alpha > 0 else None, "alpha": alpha, "lpips_net": net, "seed": run.seed,
              "resolution": run.resolution, "target": f"anchor image {list(np.shape(target))}"}
    return run.finish(loop, objective, params, anchor)
