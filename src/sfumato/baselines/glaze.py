"""Glaze's style cloak as published, reimplemented on Sfumato's encoders and loop.

Shan, Cryan, Wenger, Zheng, Hanocka, Zhao, "Glaze: Protecting Artists from Style Mimicry by Text-to-Image
Models", USENIX Security 2023, §5 and Eq. 3:

    min_δ ‖Φ(x + δ) − Φ(Ω(x, T))‖² + α · max(LPIPS(x + δ, x) − p, 0),

with the target style T picked so that its distance from the artist's style lies between the 50th and
75th percentile of the candidates and Ω(x, T) the artwork rendered in style T. Settings: Adam on δ for
**500** iterations, α = **30**, LPIPS budget p = **0.05** (the paper's headline "low perturbation"
level).

How this module realises it, and where it differs from the original:

* Φ is whatever Sfumato encoder adapter is passed (TAEF2 by default). **The original uses the Stable
  Diffusion VAE encoder as Φ and a Stable Diffusion style-transfer model (img2img with a style prompt) as
  Ω**; here Ω is :func:`sfumato.targets.latent_wct.render_in_style` (WCT in the renderer's latent space) and T is
  chosen by :func:`sfumato.targets.style_target.choose_style` among Sfumato's built-in styles (or a folder).
* ``target_image`` replaces Ω(x, T) by a given rendering, so that Glaze and Sfumato's cloak can be compared
  toward the *same* target: pass the cloak's own target (``cloak_array(..., keep_target_image=True)
  .target_image``, Gatys at the cloak's work size). Only the method then differs (objective, steps, update).
* The distance term is normalised by its clean value (``LatentTargetObjective``), as in Sfumato's cloak:
  α's scale is tied to the feature extractor, and with raw squared TAEF2 latent distances α = 30 would make
  the LPIPS term inert. The penalty uses p itself (no safety margin) and is evaluated at the encoder's
  resolution, as in the paper; nothing re-checks it after quantisation (the published method has no
  calibration step), so the saved file can exceed p slightly — ``achieved`` reports what it is.
* Glaze has no L∞ cap; a loose one (0.1 by default) only keeps pathological pixels in check.
* The Adam learning rate is not given in the paper; Sfumato's default effort uses 0.004 and so does this.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Unpack

import numpy as np

from sfumato.baselines.common import BaselineResult, BaselineRun, RunOptions, check_positive, fit_image
from sfumato.io.tensors import to_nchw
from sfumato.optimise.budgets import LinfBudget, LpipsBudget
from sfumato.targets.latent_wct import render_in_style
from sfumato.targets.style_target import choose_style
from sfumato.targets.styles import resolve_style_option

if TYPE_CHECKING:  # pragma: no cover
    import torch

STEPS = 500
ALPHA = 30.0
LPIPS_P = 0.05
LOOSE_LINF = 0.1
LR = 0.004


def glaze_style_cloak(
    rgb: np.ndarray,
    *,
    target: str = "auto",
    target_image: np.ndarray | None = None,
    style_strength: float = 1.0,
    steps: int = STEPS,
    lpips_p: float | None = None,
    alpha: float = ALPHA,
    lpips_net: str = "alex",
    eps: float | None = None,
    lr: float = LR,
    **options: Unpack[RunOptions],
) -> BaselineResult:
    """Glaze style cloak (Eq. 3 of the paper) on ``rgb`` (HxWx3 float32 in [0, 1]).

    ``target``: ``"auto"`` (Glaze's 50th–75th percentile choice among the built-in styles), a built-in
    style name or a folder of reference images. ``lpips_p`` (default 0.05) and ``alpha`` (30) set the LPIPS
    penalty; ``eps`` is the loose L∞ cap (default 0.1). ``matched_budget``: a :class:`sfumato.config.Budget`;
    sets p = ``budget.lpips``, ``eps = budget.linf``, the LPIPS net, and calibrates the result to the budget.
    The first encoder with a decoder renders the target style. ``target_image`` (HxWx3 float in [0, 1]):
    aim at this rendering instead (resized to cover the encoder's working size and centre-cropped; at
    that size already, it is used as is); ``target`` is then ignored.
    """
    method = "glaze"
    run = BaselineRun.start(method, rgb, steps=steps, eps=eps, default_eps=LOOSE_LINF, **options)
    if run.matched_budget is not None:
        if lpips_p is not None:
            raise ValueError("glaze: give either lpips_p or matched_budget (which sets p = budget.lpips), not both")
        p, net = float(run.matched_budget.lpips), run.matched_budget.lpips_net
    else:
        p, net = float(LPIPS_P if lpips_p is None else lpips_p), lpips_net
    if not 0 < p < 1:
        raise ValueError(f"glaze: lpips_p must be in (0, 1), got {p}; the paper uses 0.05")
    if not 0 < style_strength <= 1:
        raise ValueError(f"glaze: style_strength must be in (0, 1], got {style_strength}")
    if alpha < 0:
        raise ValueError(f"glaze: alpha must be >= 0, got {alpha}")
    check_positive(lr, "lr", method)

    work = run.prepare()
    if target_image is not None:
        target_img = fit_image(target_image, work.x0, "glaze: target_image")
        return _optimise(run, target_img, p=p, net=net, alpha=alpha, steps=steps, lr=lr,
                         target={"option": "given image", "style": None, "size": list(target_img.shape[-2:])})
    renderer = next((e for e, _ in work.encoders if getattr(e, "has_decoder", False)), None)
    if renderer is None:
        raise ValueError("glaze: rendering the target style needs an encoder with a decoder (e.g. taef2) among "
                         "the encoders")
    candidates = resolve_style_option(target)
    style, dists = choose_style(work.x0, renderer, candidates, seed=run.seed)
    exemplars = [to_nchw(e).to(work.x0) for e in style.exemplars]
    target_img = render_in_style(renderer, work.x0, exemplars, strength=style_strength)
    return _optimise(run, target_img, p=p, net=net, alpha=alpha, steps=steps, lr=lr,
                     target={"option": target, "style": style.name,
                             "style_distances": {k: round(v, 4) for k, v in dists.items()},
                             "strength": style_strength})


def _optimise(run: BaselineRun, target_img: torch.Tensor, *, p: float, net: str, alpha: float, steps: int,
              lr: float, target: dict) -> BaselineResult:
    """Eq. 3 toward ``target_img`` (at the working size) with Adam, then quantise and measure."""
    budgets = [LpipsBudget(p=p, alpha=alpha, net=net, margin=1.0, models_dir=run.models_dir),
               LinfBudget(eps=run.eps)]
    loop, objective = run.optimise_toward(target_img, budgets, steps=steps, lr=lr, update="adam")
    params = {"method": "Glaze style cloak (Shan et al., USENIX Security 2023)", "steps": steps, "update": "adam",
              "lr": lr, "alpha": alpha, "lpips_p": p, "lpips_net": net, "eps": run.eps, "seed": run.seed,
              "resolution": run.resolution, "target": target}
    return run.finish(loop, objective, params, target_img)
