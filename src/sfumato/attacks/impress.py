"""IMPRESS purification: remove a protective perturbation by making the image consistent under the
autoencoder, while staying perceptually close to the protected image.

Cao, Li, Wang, Jia, Li, Chen, "IMPRESS: Evaluating the Resilience of Imperceptible Perturbations Against
Unauthorized Data Usage in Diffusion-Based Generative AI" (NeurIPS 2023). Key observation: a clean image
is (nearly) a fixed point of the latent diffusion model's autoencoder, x ≈ D(E(x)), while a protected
image is not. The purified image solves

    min over x_pur of  ‖x_pur − D(E(x_pur))‖²  +  λ · max(LPIPS(x_pur, x_prot) − Δ, 0)

with Adam, starting from the protected image plus a little Gaussian noise.

Settings (defaults follow the authors' release: 3000 Adam steps, learning rate 0.01 with cosine decay,
λ = 0.1, Δ = 0.1, initial noise 0.1 — all in their [-1, 1] pixel range):

* pixels here are in [0, 1], so the learning rate is 0.005 and the initial noise standard deviation 0.05
  (half the paper's values), and the consistency term is the mean squared error in the [-1, 1] range
  (4x the [0, 1] MSE) so that λ keeps the paper's meaning;
* the autoencoder is TAEF2 (a distilled stand-in for the FLUX.2 VAE; the paper used Stable Diffusion's
  VAE) and LPIPS uses AlexNet (the paper used VGG, whose backbone is not available here);
* the optimisation runs at the encoder's working size (long side ``resolution``, at most 512 px in the
  registry). For larger images the *purification change* ``x_pur − x_prot`` at the working size is
  upsampled (bilinear) and added to the full-size protected image, keeping its full-resolution detail;
* the result is quantised to 8 bits, like a file a mimic would save.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from sfumato.attacks.views import apply_work_delta, check_rgb, work_view
from sfumato.io.tensors import to_nchw

if TYPE_CHECKING:  # pragma: no cover
    from sfumato.encoders.base import Encoder
    from sfumato.metrics.lpips import LPIPS

__all__ = ["PAPER_DEFAULTS", "consistency_loss", "impress_purify"]

PAPER_DEFAULTS: dict[str, float] = {"steps": 3000, "lr": 0.005, "alpha": 0.1, "delta": 0.1, "init_noise": 0.05}
"""The authors' settings converted to [0, 1] pixels (see the module docstring)."""


def consistency_loss(x: torch.Tensor, autoencoder: Encoder) -> torch.Tensor:
    """``mean((D(E(x)) − x)²)`` in the [-1, 1] pixel range (4x the [0, 1] MSE), per batch, for x NCHW in [0, 1]."""
    h, w = x.shape[-2:]
    y = autoencoder.decode(autoencoder.encode(x))[..., :h, :w]
    return 4.0 * (y.to(x.dtype) - x).square().mean()


def impress_purify(rgb: np.ndarray, *, autoencoder: Encoder, steps: int = int(PAPER_DEFAULTS["steps"]),
                   lr: float = PAPER_DEFAULTS["lr"], alpha: float = PAPER_DEFAULTS["alpha"],
                   delta: float = PAPER_DEFAULTS["delta"], init_noise: float = PAPER_DEFAULTS["init_noise"],
                   resolution: int = 512, seed: int = 0, lpips: LPIPS | None = None, lpips_net: str = "alex",
                   models_dir: str | os.PathLike[str] | None = None,
                   callback: Callable[[int, dict[str, float]], Any] | None = None) -> np.ndarray:
    """Purify a protected float32 ``HxWx3`` image in [0, 1]; returns the purified image, same size, 8-bit.

    ``alpha`` is λ (weight of the LPIPS hinge), ``delta`` is Δ (the LPIPS allowance), ``init_noise`` the
    standard deviation of the starting noise (``torch.Generator`` seeded with ``seed``). ``callback(step,
    {"consistency", "lpips"})`` is called after every step.
    """
    x = check_rgb(rgb, "impress_purify")
    if not getattr(autoencoder, "has_decoder", False):
        raise ValueError(f"impress_purify: encoder {getattr(autoencoder, 'id', '?')!r} has no decoder; IMPRESS "
                         "needs an autoencoder such as taef2")
    if not (isinstance(steps, (int, np.integer)) and steps >= 1):
        raise ValueError(f"impress_purify: steps must be a positive integer, got {steps!r}")
    if not lr > 0 or not alpha >= 0 or not delta >= 0 or not init_noise >= 0:
        raise ValueError(f"impress_purify: need lr > 0, alpha >= 0, delta >= 0, init_noise >= 0; got lr={lr}, "
                         f"alpha={alpha}, delta={delta}, init_noise={init_noise}")
    if not 64 <= resolution <= 4096:
        raise ValueError(f"impress_purify: resolution must be in [64, 4096] pixels, got {resolution}")
    if lpips is None:
        from sfumato.metrics.lpips import load_lpips

        lpips = load_lpips(lpips_net, models_dir=models_dir)
    param = next(autoencoder.parameters())
    dev = param.device
    lpips = lpips.to(dev)
    x_full = to_nchw(x).to(dev)
    x_prot = work_view(x_full, resolution).detach()
    gen = torch.Generator().manual_seed(int(seed))
    noise = torch.randn(x_prot.shape, generator=gen, dtype=torch.float32).to(dev) * init_noise
    x_pur = (x_prot + noise).clamp(0, 1).requires_grad_(True)
    ref = lpips.reference(x_prot)
    opt = torch.optim.Adam([x_pur], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=int(steps), eta_min=lr * 1e-3)
    for step in range(int(steps)):
        opt.zero_grad(set_to_none=True)
        cons = consistency_loss(x_pur, autoencoder)
        d = lpips.forward_ref(x_pur, ref).sum()
        loss = cons + alpha * torch.clamp(d - delta, min=0.0)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            x_pur.clamp_(0, 1)
        if callback is not None:
            callback(step, {"consistency": float(cons.detach()), "lpips": float(d.detach())})
    return apply_work_delta(x, x_prot.detach().cpu(), x_pur.detach().float().cpu())
