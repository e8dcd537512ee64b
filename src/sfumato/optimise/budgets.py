"""Budget objects applied by the shared optimisation loop (:mod:`sfumato.optimise.loop`).

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

    def observe(self, x_adv: torch.Tensor, step: int) -> None:
        """Called by the loop before each step with the current (detached) iterate; a budget may use it
        to re-measure itself the expensive way now and then (default: nothing)."""

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
    calibration in :mod:`sfumato.optimise.perturb` enforces ``p`` exactly on the saved file.

    ``view`` maps the optimised image to the one a person sees (e.g. the full-size file). ``crops``
    (optional ``(top, left, height, width)`` regions of that view) makes each step measure one region,
    round-robin, so a large image is judged at its own resolution and sampling grid for the cost of a
    small one. Both matter: LPIPS is not scale-invariant (features are unit-normalised per location, so
    smooth areas of a large image amplify small changes), and an optimiser that sees one AlexNet sampling
    grid learns a perturbation that falls between its samples — the same change measured 0.031 at the
    grid it was tuned on and 0.046 one pixel of image size away.

    ``check`` (optional) measures LPIPS the expensive way — on the whole image exactly as it will be saved,
    without gradients. Every ``check_every`` steps the ceiling the penalty aims at is rescaled by the
    ratio of that figure to the per-region values, so the loop spends the budget the saved file has.

    ``every`` (default 1) evaluates the penalty on one step in ``every`` only, with ``alpha · every`` so
    that its expected gradient is unchanged; the other steps pay no LPIPS pass (forward or backward). On a
    1024² file the whole-file LPIPS is about a fifth of a trainer-view step's time.
    """

    p: float
    alpha: float = 30.0
    net: str = "alex"
    margin: float = 0.9
    models_dir: Any = None
    view: Any = None
    crops: Any = None  # optional list of (top, left, height, width) regions of the view
    check: Any = None  # optional callable x_adv -> LPIPS of the saved file (no gradient needed)
    check_every: int = 10
    check_from: int = 5
    radial: bool = False  # after a step that measured above the ceiling, shrink δ there (see project)
    every: int = 1  # evaluate the penalty on one step in `every` (alpha scaled by `every`)
    name: str = "lpips"
    _lpips: Any = field(default=None, repr=False)
    _ratio: float = field(default=1.0, repr=False)
    _refs: Any = field(default=None, repr=False)
    _last: Any = field(default=None, repr=False)
    _seen0: Any = field(default=None, repr=False)
    _calls: int = field(default=0, repr=False)
    _over: Any = field(default=None, repr=False)
    _steps: int = field(default=0, repr=False)

    def metric(self):  # noqa: ANN201
        if self._lpips is None:
            from sfumato.metrics.lpips import load_lpips

            self._lpips = load_lpips(self.net, models_dir=self.models_dir)
        return self._lpips

    def prepare(self, x0: torch.Tensor) -> None:
        self._ratio, self._calls, self._refs, self._last, self._over = 1.0, 0, {}, {}, None
        self._steps = 0
        self._lpips = self.metric().to(device=x0.device, dtype=x0.dtype)
        with torch.no_grad():
            self._seen0 = self.view(x0) if self.view is not None else x0

    @property
    def regions(self) -> int:
        return len(self.crops) if self.crops else 1

    def _at(self, x: torch.Tensor, k: int) -> torch.Tensor:
        if not self.crops:
            return x
        t, left, h, w = self.crops[k]
        return x[..., t:t + h, left:left + w]

    def value(self, x_adv: torch.Tensor, k: int = 0) -> torch.Tensor:
        """LPIPS of region ``k`` of the viewed image (the whole view when there are no crops)."""
        if k not in self._refs:
            self._refs[k] = self._lpips.reference(self._at(self._seen0, k))
        seen = self.view(x_adv) if self.view is not None else x_adv
        return self._lpips.forward_ref(self._at(seen, k), self._refs[k])

    @property
    def ceiling(self) -> float:
        """The LPIPS the penalty lets each region reach (p · margin, corrected by the last check)."""
        return self.p * self.margin / self._ratio

    def observe(self, x_adv: torch.Tensor, step: int) -> None:
        if self.check is None or step < self.check_from or (step - self.check_from) % self.check_every:
            return
        with torch.no_grad():
            for k in range(self.regions):
                if k not in self._last:
                    self._last[k] = float(self.value(x_adv, k).max())
            cheap = sum(self._last.values()) / len(self._last)
            if cheap > 1e-3:  # too small a change to estimate a ratio from
                self._ratio = min(4.0, max(0.25, float(self.check(x_adv)) / cheap))

    def penalty(self, x_adv: torch.Tensor) -> torch.Tensor:
        self._steps += 1
        if self.every > 1 and (self._steps - 1) % self.every:
            self._over = None
            return x_adv.new_zeros(())
        alpha = self.alpha * max(1, self.every)
        k = self._calls % self.regions
        self._calls += 1
        # One forward pass, with its graph: inside the ceiling (about half the steps) the penalty and its
        # gradient are 0, so a detached zero is returned and the graph is dropped unused (no backward pass
        # through LPIPS); above it, the same pass is differentiated. The former no-grad pass followed by a
        # second, differentiable one cost a whole extra LPIPS forward on every step above the ceiling.
        with torch.set_grad_enabled(x_adv.requires_grad and torch.is_grad_enabled()):
            v = self.value(x_adv, k)
        self._last[k] = float(v.detach().max())
        self._over = (k, self._last[k]) if self._last[k] > self.ceiling else None
        if self._last[k] <= self.ceiling or not x_adv.requires_grad:
            return alpha * torch.relu(v.detach() - self.ceiling).sum()
        return alpha * torch.relu(v - self.ceiling).sum()

    def project(self, delta: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """With ``radial``: when the last penalty measured region ``k`` above the ceiling, scale δ inside
        that region by sqrt(ceiling / LPIPS) (LPIPS grows about quadratically with a small δ's amplitude).
        A hinge penalty alone lets Adam's fixed-size steps overshoot on smooth photos (LPIPS 0.2 against a
        0.063 ceiling), and the best iterate is then an early, nearly empty one."""
        if not self.radial or self._over is None:
            return delta
        k, v = self._over
        self._over = None
        f = (self.ceiling / v) ** 0.5
        if not self.crops:
            return delta * f
        t, left, h, w = self.crops[k]
        vh, vw = self._seen0.shape[-2:]
        dh, dw = delta.shape[-2:]
        r0, r1 = int(t * dh / vh), min(dh, -(-(t + h) * dh // vh))
        c0, c1 = int(left * dw / vw), min(dw, -(-(left + w) * dw // vw))
        out = delta.clone()
        out[..., r0:r1, c0:c1] *= f
        return out

    def measure(self, x_adv: torch.Tensor, x0: torch.Tensor) -> float:
        with torch.no_grad():
            return float(self.metric().to(device=x0.device, dtype=x0.dtype)(x_adv, x0).max())
