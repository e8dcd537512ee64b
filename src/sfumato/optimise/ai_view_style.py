"""A style loss on the AI view: Gram statistics of the decoded latent of a view against those of the target's.

What a model trained on an image reproduces is the decoded latent D(E(x)), the *AI view*, not the latent
itself. Glaze's objective (Shan et al., USENIX Security 2023, Eq. 3) pulls E(x + δ) toward E(T) point by
point; issue 23 asks whether a style loss on the AI view does better at the same budget. Here the style of
an image is the Gatys et al. signature (Gatys, Ecker & Bethge, "Image Style Transfer Using Convolutional
Neural Networks", CVPR 2016): the channel Gram matrices of ImageNet features at several depths, the
LPIPS-SqueezeNet taps of :mod:`sfumato.targets.gatys` that render the cloak's target. For a view ``v``:

    s(x) = Σ_taps ‖G(φ(D(E(v(x))))) − G(φ(D(E(v(T)))))‖²_F / ‖G(φ(D(E(v(T)))))‖²_F,   loss = s(x + δ) / s(x)

so the term is 1 on the clean view and 0 when the AI view has the target's feature statistics, like the
normalised latent term beside it. :class:`AiViewGram` holds the decoder and the feature network, and
computes a crop's reference Gram matrices once (the view sampler caches them with the crop's latents).

The feature network only renders and vets targets elsewhere; it is not a judge (the meter's judges are a
MobileNetV2 probe, an AlexNet-Gram probe and a crop judge, none of which enters this loss). The AlexNet-Gram
judge measures the same kind of statistic on another network, so gains under that judge alone are read
with care (``docs/benchmarks.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from sfumato.encoders.base import Encoder

#: ``Effort.objective`` → weight of the AI-view style term; the latent term gets the rest.
OBJECTIVES = {"latent": 0.0, "mix": 0.5, "ai-view-gram": 1.0}

#: Below this clean-to-target style distance (a sum of relative squared Gram distances over the taps) a
#: view has nothing to move toward: its style term is left out. On TAEF2 and LPIPS-SqueezeNet, 256 px
#: tiles of art128 paintings measured about 3.7, the tiny random models of the tests 5e-9 to 1e-6.
MIN_CLEAN_DISTANCE = 1e-9


@dataclass
class StyleReference:
    """A view's target Gram matrices and the clean view's style distance to them (the normaliser)."""

    grams: list[torch.Tensor]
    norms: list[float]
    clean: float


class AiViewGram:
    """Gram style distance of the AI view ``decoder.decode(z)`` to a reference, on ``net``'s activations at
    ``taps`` (default: the Gatys taps of :mod:`sfumato.targets.gatys`)."""

    def __init__(self, decoder: Encoder, net: torch.nn.Module, *, taps: Sequence[int] | None = None) -> None:
        if not decoder.has_decoder:
            raise ValueError(f"the AI-view style loss needs an encoder with a decoder; {decoder.id} has none")
        from sfumato.targets.gatys import STYLE_TAPS

        self.decoder = decoder
        self.net = net
        self.taps = tuple(STYLE_TAPS if taps is None else taps)

    def ai_view(self, z: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return self.decoder.decode(z)[..., : size[0], : size[1]].clamp(0, 1)

    def grams(self, image: torch.Tensor) -> list[torch.Tensor]:
        from sfumato.targets.gatys import gram

        p = next(self.net.parameters())
        acts = self.net.activations(image.to(device=p.device, dtype=p.dtype))  # type: ignore[operator]
        return [gram(acts[i]) for i in self.taps]

    def raw(self, grams: Sequence[torch.Tensor], ref: StyleReference) -> torch.Tensor:
        from sfumato.targets.gatys import style_loss

        return style_loss(grams, ref.grams, ref.norms)

    def reference(self, z_target: torch.Tensor, z_clean: torch.Tensor, size: tuple[int, int]) -> StyleReference:
        """The reference of one view from its target and clean latents (no gradients). The Gram matrices
        (C×C per tap: about 2 MB per view for SqueezeNet) are kept for as long as the caller caches them."""
        with torch.no_grad():
            grams = self.grams(self.ai_view(z_target, size))
            norms = [max(float(g.square().sum()), 1e-12) for g in grams]
            ref = StyleReference(grams, norms, 0.0)
            ref.clean = float(self.raw(self.grams(self.ai_view(z_clean, size)), ref))
        return ref

    def loss(self, z: torch.Tensor, size: tuple[int, int], ref: StyleReference) -> torch.Tensor:
        """s(x) / s(clean) for the latent ``z`` of the view (differentiable); 0 for a view whose clean AI view
        already has the target's statistics (s(clean) < :data:`MIN_CLEAN_DISTANCE`), where the ratio would
        only amplify noise."""
        if ref.clean < MIN_CLEAN_DISTANCE:
            return z.new_zeros(())
        return self.raw(self.grams(self.ai_view(z, size)), ref) / ref.clean


__all__ = ["MIN_CLEAN_DISTANCE", "OBJECTIVES", "AiViewGram", "StyleReference"]
