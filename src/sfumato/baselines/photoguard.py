"""PhotoGuard's encoder attack, reimplemented on Sfumato's encoders and loop.

Salman, Khaddaj, Leclerc, Ilyas, Madry, "Raising the Cost of Malicious AI-Powered Image Editing",
ICML 2023 (arXiv:2302.06588), §4 "encoder attack":

    δ* = argmin_{‖δ‖∞ ≤ ε} ‖E(x + δ) − z_target‖²,   z_target = E(x_target),

solved with L∞ projected gradient descent (signed gradient steps, Madry et al., ICLR 2018) from a uniform
random start inside the ε-box, with a step size that decays linearly over the run.

Settings are those of the authors' public release (the encoder-attack demo in github.com/MadryLab/photoguard;
only its numbers were used, no code). It works on [−1, 1] pixels, so its values are halved here for
Sfumato's [0, 1] pixels: ε = 0.12 → **0.06** (≈ 15.3/255), first step 0.01 → **0.005**, **200**
iterations, uniform random start in the ε-box, target = a **50 % grey** image (the release encodes a
grey-uniformity test card). The release's step decays linearly from ``step`` to ``step/100``; the shared
loop's ``decay="linear"`` goes from ``step`` to 0 — the difference is the last 1 % of a step. The loop also
returns the iterate with the lowest loss rather than the last one.

Departures, stated plainly: the encoder is whatever Sfumato adapter is passed (TAEF2 by default), not the
Stable Diffusion VAE; the loss is the latent distance normalised by its clean value (identical signed
gradient for one encoder, a weighted sum for an ensemble); the image is attacked at the encoder's
resolution (long side ``resolution``) and the perturbation upsampled, instead of a 512×512 crop.
"""

from __future__ import annotations

from typing import Unpack

import numpy as np

from sfumato.baselines.common import BaselineResult, BaselineRun, RunOptions, fit_image
from sfumato.optimise.budgets import LinfBudget

EPS = 0.06
"""L∞ cap in [0, 1] pixel units (the demo's 0.12 on [−1, 1])."""
STEP = 0.005
"""First step size (the demo's 0.01 on [−1, 1]); it decays linearly to 0."""
STEP_RATIO = STEP / EPS
STEPS = 200
TARGET_GREY = 0.5


def photoguard_encoder_attack(
    rgb: np.ndarray,
    *,
    target: np.ndarray | float = TARGET_GREY,
    steps: int = STEPS,
    eps: float | None = None,
    step_size: float | None = None,
    **options: Unpack[RunOptions],
) -> BaselineResult:
    """PhotoGuard encoder attack on ``rgb`` (HxWx3 float32 in [0, 1]).

    ``target``: the image whose latent the attack aims at (HxWx3 array, resized to cover the image and
    centre-cropped) or a grey level (default 0.5, the paper's grey target). ``eps``: L∞ cap (default 0.06);
    ``step_size``: first PGD step (default ``eps/12``, the demo's ratio). ``matched_budget``: a
    :class:`sfumato.config.Budget`; sets ``eps = budget.linf`` and calibrates the result to LPIPS ≤
    ``budget.lpips``.
    """
    run = BaselineRun.start("photoguard", rgb, steps=steps, eps=eps, default_eps=EPS, **options)
    step = run.step_size(step_size, STEP_RATIO)
    work = run.prepare()
    target_img = fit_image(target, work.x0, "photoguard: target")
    loop, objective = run.optimise_toward(target_img, [LinfBudget(eps=run.eps)], steps=steps, lr=step,
                                          update="sign", decay="linear", init_noise=run.eps)
    params = {"method": "PhotoGuard encoder attack (Salman et al., ICML 2023)", "eps": run.eps,
              "step_size": step, "step_schedule": "linear decay to 0", "steps": steps, "update": "sign",
              "init": "uniform in the eps box", "seed": run.seed, "resolution": run.resolution,
              "target": f"grey {float(target):.3f}" if isinstance(target, int | float) else
              f"image {list(np.shape(target))}"}
    return run.finish(loop, objective, params, target_img)
