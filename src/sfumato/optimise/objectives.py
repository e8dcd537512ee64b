"""Latent-target objectives (Glaze, Shan et al. USENIX Security 2023, eq. 3; Nightshade, IEEE S&P 2024, section 5): normalised latent distance to a target over an encoder ensemble, weighted sums of such objectives, and the full-resolution view a trainer sees."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from sfumato.encoders.base import Encoder
from sfumato.io.tensors import resize


@dataclass
class EncoderTarget:
    encoder: Encoder
    weight: float
    latent: torch.Tensor
    clean_dist: float


class LatentTargetObjective:
    """Σ_E w_E ‖E(view(x)) − t_E‖² / ‖E(view(x0)) − t_E‖² over an encoder ensemble; progress is the
    weighted mean of 1 − ‖E(view(x)) − t_E‖ / ‖E(view(x0)) − t_E‖ (share of the way to the target).
    ``overshoot`` > 1 aims t_E past the target image's latent along the same direction."""

    def __init__(self, x0: torch.Tensor, target_image: torch.Tensor, encoders: Sequence[tuple[Encoder, float]], *,
                 overshoot: float = 1.0) -> None:
        self.size = tuple(x0.shape[-2:])
        self.targets: list[EncoderTarget] = []
        self.image_targets: list[torch.Tensor] = []  # the target image's own latents (before overshoot)
        self.overshoot = overshoot
        wsum = sum(w for _, w in encoders)
        with torch.no_grad():
            for enc, w in encoders:
                t = enc.encode(target_image)
                z0 = enc.encode(x0)
                self.image_targets.append(t)
                if overshoot != 1.0:  # aim past the target along the same latent direction
                    t = z0 + overshoot * (t - z0)
                self.targets.append(EncoderTarget(enc, w / wsum, t, max(float((z0 - t).norm()), 1e-8)))

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, float]:
        loss = x.new_zeros(())
        prog = 0.0
        view = resize(x, self.size).contiguous(memory_format=torch.channels_last)
        for t in self.targets:
            d = (t.encoder.encode(view) - t.latent).flatten().norm()
            loss = loss + t.weight * (d / t.clean_dist) ** 2
            prog += t.weight * (1 - float(d.detach()) / t.clean_dist)
        return loss, prog

    def distances(self, x: torch.Tensor) -> list[dict[str, float]]:
        """Per encoder: clean→target, x→target, relative reduction (for manifests)."""
        out = []
        with torch.no_grad():
            v = resize(x, self.size)
            for t, zi in zip(self.targets, self.image_targets, strict=True):
                z = t.encoder.encode(v)
                d = float((z - t.latent).norm())
                row = {"encoder": t.encoder.id, "clean_to_target": t.clean_dist,
                       "protected_to_target": d, "relative_reduction": 1 - d / t.clean_dist}
                if self.overshoot != 1.0:  # the same measure toward the target image's own latent
                    di = float((z - zi).norm())
                    row["reduction_toward_target_image"] = 1 - di / (t.clean_dist / self.overshoot)
                out.append(row)
        return out


def full_resolution_view(objective, x0: torch.Tensor, full: tuple[int, int]):  # noqa: ANN001, ANN201
    """Wrap an objective so it sees what a trainer sees: the work-resolution perturbation upsampled to the
    full image (as it will be saved) and the full image resized back to the work resolution. By
    linearity of resizing, view(x0 + δ) = x0 + down(up(δ)); the round trip is a fixed low-pass filter
    that the optimiser must account for, or the saved file loses part of the latent shift."""
    if tuple(x0.shape[-2:]) == tuple(full):
        return objective
    work = tuple(x0.shape[-2:])

    def wrapped(x: torch.Tensor):  # noqa: ANN202
        d = x - x0
        return objective(x0 + resize(resize(d, full), work))

    return wrapped


class WeightedObjectives:
    """Σ_k w_k · objective_k — several latent targets at once (e.g. a style cloak and a concept poison
    in one pass); ``distances`` labels each target's figures with its name."""

    def __init__(self, parts: Sequence[tuple[str, LatentTargetObjective, float]]) -> None:
        total = sum(w for _, _, w in parts)
        self.parts = [(n, o, w / total) for n, o, w in parts]

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, float]:
        loss, prog = x.new_zeros(()), 0.0
        for _, o, w in self.parts:
            lo, pr = o(x)
            loss, prog = loss + w * lo, prog + w * pr
        return loss, prog

    def distances(self, x: torch.Tensor) -> list[dict[str, Any]]:
        return [{**d, "target": n} for n, o, _ in self.parts for d in o.distances(x)]
