"""Rectified flow / flow matching: the training loss and a guided Euler sampler.

Flow matching (Lipman et al., "Flow Matching for Generative Modeling", ICLR 2023) with the straight
(rectified) path of Liu et al. ("Flow Straight and Fast", ICLR 2023): ``x_t = (1 - t) x_0 + t eps``, the
network regresses the velocity ``eps - x_0``. Times are drawn logit-normal, which Esser et al. (SD3,
ICML 2024) found better than uniform. Sampling integrates from ``t = 1`` (noise) to ``t = 0`` with Euler
steps and classifier-free guidance (Ho & Salimans, "Classifier-Free Diffusion Guidance", 2022):
``v = v_null + w (v_class - v_null)``.
"""

from __future__ import annotations

import torch

__all__ = ["flow_loss", "sample"]


def flow_loss(model: torch.nn.Module, x0: torch.Tensor, label: torch.Tensor, *, generator: torch.Generator,
              p_uncond: float = 0.1) -> torch.Tensor:
    """Mean squared velocity error of ``model`` on clean standardised latents ``x0`` with class ``label``
    (a share ``p_uncond`` of labels replaced by the null class ``model.n_classes``)."""
    b = x0.shape[0]
    dev, dt = x0.device, x0.dtype
    t = torch.sigmoid(torch.randn(b, generator=generator, device=dev, dtype=dt))
    eps = torch.randn(x0.shape, generator=generator, device=dev, dtype=dt)
    xt = (1 - t)[:, None, None, None] * x0 + t[:, None, None, None] * eps
    drop = torch.rand(b, generator=generator, device=dev) < p_uncond
    label = torch.where(drop, torch.full_like(label, model.n_classes), label)
    v = model(xt, t, label)
    return ((v - (eps - x0)) ** 2).mean()


@torch.no_grad()
def sample(model: torch.nn.Module, label: torch.Tensor, shape: tuple[int, int, int], *, steps: int,
           guidance: float, generator: torch.Generator) -> torch.Tensor:
    """Standardised latents for classes ``label`` (``(B,)``), ``shape = (C, H, W)``; device and dtype
    follow the model's parameters."""
    p = next(model.parameters())
    b = label.shape[0]
    x = torch.randn((b, *shape), generator=generator, device=p.device, dtype=p.dtype)
    null = torch.full_like(label, model.n_classes)
    ts = torch.linspace(1.0, 0.0, steps + 1, device=p.device, dtype=p.dtype)
    for i in range(steps):
        t = ts[i].expand(b)
        if guidance == 1.0:
            v = model(x, t, label)
        else:
            both = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([label, null]))
            vc, vu = both.chunk(2)
            v = vu + guidance * (vc - vu)
        x = x + (ts[i + 1] - ts[i]) * v
    return x
