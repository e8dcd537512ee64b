"""Budget objects applied by the shared optimisation loop (:mod:`sfumato.optimize`).

A budget constrains a perturbation in two ways: ``project`` (a hard constraint applied to δ after every
step, like the L∞ box of PGD — Madry et al., ICLR 2018) and ``penalty`` (a soft term added to the loss,
like Glaze's α·max(LPIPS(x+δ, x) − p, 0) — Shan et al., USENIX Security 2023, Eq. 3). ``measure``
reports the budget's quantity for a finished image; the pipeline checks it on the *saved* file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


class BudgetTerm:
    """Interface: ``prepare`` once per image, then ``penalty`` / ``project`` every step."""

    name: str = "budget"

    def prepare(self, x0: torch.Tensor) -> None:
        """Cache whatever depends only on the clean image (called once per image and scale)."""

    def penalty(self, x_adv: torch.Tensor) -> torch.Tensor:
        return x_adv.new_zeros(())

    def project(self, delta: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        return delta

    def measure(self, x_adv: torch.Tensor, x0: torch.Tensor) -> float:
        raise NotImplementedError


@dataclass
class LinfBudget(BudgetTerm):
    """Hard cap on |δ| per pixel and channel (optionally a per-pixel map, e.g. adaptive masking)."""

    eps: float
    eps_map: torch.Tensor | None = None  # broadcastable to δ, values in [0, 1] scaling eps
    name: str = "linf"

    def bound(self, like: torch.Tensor) -> torch.Tensor | float:
        if self.eps_map is None:
            return self.eps
        m = self.eps_map.to(like)
        if m.shape[-2:] != like.shape[-2:]:
            m = torch.nn.functional.interpolate(m, size=like.shape[-2:], mode="bilinear", align_corners=False)
        return self.eps * m

    def project(self, delta: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        b = self.bound(delta)
        d = torch.maximum(torch.minimum(delta, torch.as_tensor(b).to(delta)), -torch.as_tensor(b).to(delta))
        return (x0 + d).clamp(0, 1) - x0  # also keep x0 + δ a valid image

    def measure(self, x_adv: torch.Tensor, x0: torch.Tensor) -> float:
        return float((x_adv - x0).abs().amax())


@dataclass
class LpipsBudget(BudgetTerm):
    """Soft LPIPS ceiling: ``alpha * max(LPIPS(x_adv, x0) - p * margin, 0)``.

    ``margin`` < 1 leaves head-room for 8-bit quantisation and resizing to the full image; the final
    calibration in :mod:`sfumato.cloak` enforces ``p`` exactly on the saved file.
    """

    p: float
    alpha: float = 30.0
    net: str = "alex"
    margin: float = 0.9
    models_dir: Any = None
    view: Any = None  # optional callable mapping the optimised image to the one a person sees (e.g. full size)
    name: str = "lpips"
    _lpips: Any = field(default=None, repr=False)
    _ref: Any = field(default=None, repr=False)

    def metric(self):  # noqa: ANN201
        if self._lpips is None:
            from .metrics.lpips import load_lpips

            self._lpips = load_lpips(self.net, models_dir=self.models_dir)
        return self._lpips

    def prepare(self, x0: torch.Tensor) -> None:
        self._lpips = self.metric().to(device=x0.device, dtype=x0.dtype)
        self._ref = self._lpips.reference(self.view(x0) if self.view is not None else x0)

    def value(self, x_adv: torch.Tensor) -> torch.Tensor:
        return self.metric().forward_ref(self.view(x_adv) if self.view is not None else x_adv, self._ref)

    def penalty(self, x_adv: torch.Tensor) -> torch.Tensor:
        return self.alpha * torch.relu(self.value(x_adv) - self.p * self.margin).sum()

    def measure(self, x_adv: torch.Tensor, x0: torch.Tensor) -> float:
        with torch.no_grad():
            return float(self.metric().to(device=x0.device, dtype=x0.dtype)(x_adv, x0).max())
