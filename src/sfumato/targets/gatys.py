"""Neural style transfer (Gatys et al.) for rendering the cloak's target Ω(x, T), and a Gram style distance.

Gatys, Ecker & Bethge, "Image Style Transfer Using Convolutional Neural Networks" (CVPR 2016): an image
is optimised so that its deep features keep the content of ``x`` while the Gram matrices (channel
correlations) of its features at several depths match those of the style exemplars. Glaze renders its
target with a style-transfer model for the same reason (Shan et al., USENIX Security 2023, §5.2): the
target must *look like another style* before any cloak can carry an artwork toward it.

Features: the ImageNet-trained SqueezeNet-1.1 backbone that LPIPS ships (:mod:`sfumato.metrics.lpips`),
taps after stages 1, 2, 3, 4 and 6 for style and stage 4 for content. Measured on the shared paintings
(Sfumato's ``benchmarks/style_efficacy.py``; the independent MobileNetV2 style judge looks at the
TAEF2 AI view of the target): these targets are judged to be another artist far more often than the
latent whitening-colouring targets of :mod:`sfumato.targets.latent_wct`.

This network is used only to *render and choose targets* (allowed: the target is an image, the
perturbation is then optimised against generative-model encoders only). It never sees the perturbation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from sfumato.numerics.adam import Adam

__all__ = ["STYLE_TAPS", "CONTENT_TAP", "gram", "gram_signature", "gram_distance", "gatys_transfer", "style_loss"]

STYLE_TAPS = (0, 1, 2, 3, 5)  # indices into LPIPS-squeeze activations (layers 1, 4, 7, 9, 11)
CONTENT_TAP = 3  # layer 9


def _net(models_dir=None):  # noqa: ANN001, ANN202
    from sfumato.metrics.lpips import load_lpips

    return load_lpips("squeeze", models_dir=models_dir)


def gram(f: torch.Tensor) -> torch.Tensor:
    """Channel Gram matrix of a ``1xCxHxW`` activation, normalised by the number of positions."""
    c = f.shape[1]
    f = f.reshape(c, -1)
    return f @ f.T / f.shape[1]


def gram_signature(images: Sequence[torch.Tensor], *, models_dir=None) -> list[torch.Tensor]:  # noqa: ANN001
    """Mean Gram matrices over ``images`` (each 1x3xHxW in [0, 1]) at :data:`STYLE_TAPS`."""
    net = _net(models_dir).to(images[0].device)
    out: list[torch.Tensor] | None = None
    with torch.no_grad():
        for im in images:
            acts = net.activations(im.to(next(net.parameters()).dtype))
            g = [gram(acts[i]) for i in STYLE_TAPS]
            out = g if out is None else [a + b for a, b in zip(out, g, strict=True)]
    assert out is not None, "gram_signature needs at least one image"
    return [g / len(images) for g in out]


def style_loss(grams: Sequence[torch.Tensor], target_grams: Sequence[torch.Tensor],
               norms: Sequence[torch.Tensor | float]) -> torch.Tensor:
    """Gatys et al.'s style loss: Σ over taps of ‖G − G_t‖²_F / ``norm`` (``norm`` = ‖G_t‖²_F)."""
    return sum(((g - t) ** 2).sum() / k for g, t, k in zip(grams, target_grams, norms, strict=True))  # type: ignore[return-value]


def gram_distance(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> float:
    """Style distance between two Gram signatures: mean over taps of the relative Frobenius distance."""
    return float(sum(((x - y.to(x)).norm() / (y.norm() + 1e-8)) for x, y in zip(a, b, strict=True)) / len(a))


def gatys_transfer(x: torch.Tensor, exemplars: Sequence[torch.Tensor], *, steps: int = 150, lr: float = 0.02,
                   style_weight: float = 1.0, content_weight: float = 1.0, coarse_steps: int = 0,
                   models_dir=None,  # noqa: ANN001
                   ) -> torch.Tensor:
    """Render ``x`` (1x3xHxW in [0, 1]) in the style of ``exemplars``: Adam on the pixels, started from
    ``x`` with the exemplars' per-channel colour statistics (a colour transfer), for ``steps`` steps.
    ``coarse_steps`` of them run first at half resolution (coarse-to-fine, as in multi-scale style
    transfer: the coarse pass lays out the large strokes for a quarter of the cost per step, the fine
    pass adds the texture). Deterministic for given inputs and thread settings. Returns a detached image
    in [0, 1]."""
    net = _net(models_dir).to(x.device)
    x = x.detach().to(next(net.parameters()).dtype)
    target_grams = gram_signature(exemplars, models_dir=models_dir)
    gram_norms = [(g**2).sum() for g in target_grams]
    with torch.no_grad():
        pixels = torch.cat([e.flatten(2) for e in exemplars], dim=2).to(x)
        m, sd = pixels.mean(2)[..., None, None], pixels.std(2)[..., None, None]
        y = ((x - x.mean((2, 3), keepdim=True)) / (x.std((2, 3), keepdim=True) + 1e-5) * sd + m).clamp(0, 1)

    def run(y0: torch.Tensor, xc: torch.Tensor, n: int) -> torch.Tensor:
        with torch.no_grad():
            content = net.activations(xc)[CONTENT_TAP]
            content_norm = (content**2).mean()
        y = y0.clone().requires_grad_(True)
        opt = Adam(y, lr=lr)
        for _ in range(n):
            acts = net.activations(y)
            style = style_loss([gram(acts[i]) for i in STYLE_TAPS], target_grams, gram_norms)
            cont = ((acts[CONTENT_TAP] - content) ** 2).mean() / content_norm
            loss = style_weight * style + content_weight * cont
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                y.clamp_(0, 1)
        return y.detach()

    coarse_steps = min(max(0, coarse_steps), steps)
    if coarse_steps and min(x.shape[-2:]) >= 64:
        half = (x.shape[-2] // 2, x.shape[-1] // 2)
        y_half = F.interpolate(y, size=half, mode="bilinear", align_corners=False, antialias=True)
        small = run(y_half, F.interpolate(x, size=half, mode="bilinear", align_corners=False, antialias=True),
                    coarse_steps)
        # carry the coarse pass's change over to full resolution (the colour-transferred start keeps its detail)
        y = (y + F.interpolate(small - y_half, size=x.shape[-2:], mode="bilinear", align_corners=False)).clamp(0, 1)
        steps -= coarse_steps
    return run(y, x, steps)
