"""Latent-target objective in expectation over trainer views: each step samples one view of the image as
a fine-tuning pipeline would encode it (a bucket resize or the native size, then a random crop with a
fixed pixel budget) and pulls that view's latent toward the same view of the target.

Why: the latent encoders are not scale-equivariant. A cloak optimised at one work size moved the TAEF2
latent 38 % of the way to its target there and 1–5 % at the 512/768/1024 px buckets a trainer uses
(``docs/benchmarks.md``, protection meter). Bucketing trainers (kohya-ss sd-scripts, SimpleTuner) resize the
long side to 512/768/1024 px, upscaling small files, and the diffusers example scripts crop; the views are
those of :func:`sfumato.attacks.trainer_views.trainer_views`.

Method: expectation over transformation (Athalye et al., "Synthesizing Robust Adversarial Examples",
ICML 2018) where the transformation is the trainer's view, applied to Glaze's objective (Shan et al.,
USENIX Security 2023, Eq. 3): at every step

    v ~ views;  loss = Σ_E w_E ‖E(v(x + δ)) − E(v(T))‖² / ‖E(v(x)) − E(v(T))‖²

where T is the target rendering and v a resize to the view's size followed by a crop of side
``crop_side`` (aligned to the encoder's latent grid). A step costs one encoder pass at ``crop_side``²
whatever the file or bucket size, plus two gradient-free passes for the view's clean and target latents.

Crops start anywhere on an 8 px grid (``crop_stride=8``), or on a coarser grid of positions spread evenly
over the view so that the crops cover it (``crop_stride`` = ``crop_side``: tiles; the positions of one view
size are visited in a seeded shuffled cycle, every tile before any repeats). The gradient-free latents
(the target's and the clean normaliser) of a crop are computed once and reused when the crop comes back,
so with tiles a step costs the gradient pass alone once every tile has been seen: on a 1024² file, 29
tiles over the 512/768/1024 buckets against 80 fresh crops for the default 80 steps.
Attack stand-ins (EOT) are applied to the view itself, at the scale the trainer sees, not to the work
image. The objective is stochastic (``stochastic = True``): the shared loop then keeps the last iterate
instead of the lowest single-view loss. ``Effort.objective`` can mix in a style loss on the view's AI view
(:mod:`sfumato.optimise.ai_view_style`), which costs a decoder pass and a feature pass with their
gradients per step.

Which view size a step takes (``weighting``): ``"uniform"`` draws each bucket and the native size equally
often. ``"worst"`` aims at the figure the protection meter reports, the *worst* trainer view: once every
view size has been visited, half the steps (:data:`WORST_SHARE`) go to the view size whose running
progress (an exponential average, :data:`PROGRESS_EMA`, of ``1 − d / d₀`` over its sampled crops) is
lowest, the other half stay uniform so no view is abandoned. This is the min–max form of expectation over
transformation (a worst-case distribution over the views, as in distributionally robust optimisation:
Sagawa et al., "Distributionally Robust Neural Networks", ICLR 2020, applied here to views rather than
groups of data); it costs nothing per step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sfumato.attacks.trainer_views import BUCKETS, trainer_views
from sfumato.config import VIEW_WEIGHTINGS
from sfumato.encoders.base import Encoder
from sfumato.io.tensors import resize
from sfumato.optimise.ai_view_style import OBJECTIVES, AiViewGram, StyleReference

#: With ``weighting="worst"``, the share of steps given to the view size that has moved least.
WORST_SHARE = 0.5
#: With ``weighting="worst"``, the weight of a step's progress in its view size's running average.
PROGRESS_EMA = 0.3

#: Crops start on multiples of this many pixels of the view (the latent grid of an 8×-downsampling
#: encoder), so a crop's latent lines up with the view's.
CROP_ALIGN = 8


def crop_starts(room: int, stride: int) -> list[int]:
    """The start offsets of crops along one axis with ``room`` pixels to spare (view side − crop side):
    every multiple of :data:`CROP_ALIGN` for ``stride`` ≤ :data:`CROP_ALIGN`, otherwise
    ⌈room / stride⌉ + 1 offsets spread evenly from 0 to ``room`` (rounded down to the grid), so crops of
    side ≥ ``stride`` cover the axis to within :data:`CROP_ALIGN` − 1 px, as the fine grid does."""
    if room < CROP_ALIGN:
        return [0]
    if stride <= CROP_ALIGN:
        return list(range(0, room // CROP_ALIGN * CROP_ALIGN + 1, CROP_ALIGN))
    n = -(-room // stride) + 1
    return sorted({(i * room // (n - 1)) // CROP_ALIGN * CROP_ALIGN for i in range(n)})


@dataclass(frozen=True)
class SampledView:
    """One trainer view: resize to ``size`` (h, w), then crop ``(top, left, h, w)``."""

    name: str
    size: tuple[int, int]
    crop: tuple[int, int, int, int]


def view_sizes(h: int, w: int, *, buckets: Sequence[int] = BUCKETS) -> list[tuple[str, tuple[int, int]]]:
    """The whole-image trainer views of an ``h x w`` file, as the meter lists them
    (:func:`sfumato.attacks.trainer_views.trainer_views` without crops): each bucket (long side resized to
    it, aspect kept, small files upscaled as a bucketing trainer does) and the native size (capped),
    identical sizes listed once."""
    return [(v.name, v.size) for v in trainer_views(h, w, work_size=None, seed=0, crops_per_scale=0, scales=buckets)]


def over_trainer_views(objective: Any, x0: torch.Tensor, target_image: torch.Tensor,
                       encoders: Sequence[tuple[Encoder, float]], *, rgb: np.ndarray, effort: Any, seed: int,
                       transform: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None,
                       models_dir: Any = None, style_net: torch.nn.Module | None = None,
                       ) -> tuple[Any, Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None]:
    """What a protection hands :func:`~sfumato.optimise.perturb.perturb_toward`: with ``effort.views ==
    "trainer"``, a :class:`ViewSampledObjective` toward ``target_image`` over the views of the file ``rgb``
    (``objective`` reporting the manifest's figures) and no loop transform, the attack stand-ins acting
    on each view instead; otherwise ``objective`` and ``transform`` unchanged. ``effort.objective`` other
    than ``"latent"`` adds the AI-view style term (:mod:`sfumato.optimise.ai_view_style`; its feature
    network is ``style_net``, by default LPIPS-SqueezeNet from ``models_dir``)."""
    if effort.views != "trainer":
        return objective, transform
    from sfumato.io.tensors import to_nchw

    weight = OBJECTIVES[getattr(effort, "objective", "latent")]
    style = None
    if weight > 0:
        from sfumato.metrics.lpips import load_lpips

        decoder = next((e for e, _ in encoders if e.has_decoder), None)
        if decoder is None:
            raise ValueError(f"objective {effort.objective!r} needs an encoder with a decoder (e.g. taef2) to "
                             "render the AI view; use objective='latent' with encoder-only models")
        net = style_net if style_net is not None else load_lpips("squeeze", models_dir=models_dir)
        style = AiViewGram(decoder, net.to(x0))
    return ViewSampledObjective(x0, target_image, encoders, full=to_nchw(rgb), crop_side=effort.view_crop,
                                crop_stride=effort.view_stride, seed=seed, transform=transform,
                                report=objective, style=style, style_weight=weight,
                                weighting=getattr(effort, "view_weighting", "uniform")), None


class ViewSampledObjective:
    """Glaze's normalised latent distance to a target, in expectation over trainer views (module docstring).

    ``x0``: the clean image at the perturbation's grid (1x3xhxw, [0, 1]); ``target_image``: the target
    rendering at the same size; ``full``: the clean file (1x3xHxW; default ``x0``), whose resized views the
    perturbation and the target's change are added to, so a large file keeps its detail at every view;
    ``file_size``: the (h, w) of the file the trainer reads (default ``full``'s; the view sizes follow
    it); ``report``: an objective whose ``distances`` the manifest reports; ``crop_side``: the pixel budget
    of a step (a crop of at most ``crop_side``² of the view); ``crop_stride``: the grid crops start on
    (:func:`crop_starts`; above :data:`CROP_ALIGN`, each view size's crops are visited in shuffled cycles;
    a stride above the crop's side acts as the side);
    ``transform``: attack stand-ins applied to the view (``transform(view, generator)``); ``seed`` makes
    the sequence of views reproducible. ``progress`` is 1 − d / d₀ of the sampled view. ``style`` and
    ``style_weight`` (in [0, 1]) mix in the AI-view style term of :mod:`sfumato.optimise.ai_view_style` on
    the style's decoder: loss = (1 − w)·latent term + w·style term, its crop references cached with the
    crop's latents. ``weighting``: ``"uniform"`` or ``"worst"`` (how a step picks its view size; module
    docstring).
    """

    stochastic = True

    def __init__(self, x0: torch.Tensor, target_image: torch.Tensor, encoders: Sequence[tuple[Encoder, float]], *,
                 full: torch.Tensor | None = None, file_size: tuple[int, int] | None = None,
                 crop_side: int = 256, crop_stride: int = CROP_ALIGN, seed: int = 0,
                 transform: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
                 buckets: Sequence[int] = BUCKETS, report: object | None = None,
                 style: AiViewGram | None = None, style_weight: float = 0.0, weighting: str = "uniform") -> None:
        if crop_side < 32:
            raise ValueError(f"crop_side must be >= 32 pixels, got {crop_side}")
        self.x0 = x0.detach()
        self.change = target_image.detach().to(x0) - self.x0  # the target as a change of the image
        self.full = full.detach().to(x0) if full is not None else self.x0
        if file_size is None:
            file_size = (int(self.full.shape[-2]), int(self.full.shape[-1]))
        wsum = sum(w for _, w in encoders)
        self.encoders = [(e, w / wsum) for e, w in encoders]
        self.views = view_sizes(*file_size, buckets=buckets)
        self._bases: dict[tuple[int, int], torch.Tensor] = {}
        self.report = report
        self.crop_side = int(crop_side)
        if crop_stride < 1:
            raise ValueError(f"crop_stride must be >= 1 pixel, got {crop_stride}")
        self.crop_stride = int(crop_stride)
        self._cycles: dict[tuple[int, int], list[tuple[int, int]]] = {}
        self._latents: dict[tuple[tuple[int, int], tuple[int, int, int, int]], list[tuple[torch.Tensor, float]]] = {}
        self.encodes = 0  # gradient-free crop pairs encoded (the rest came from the cache)
        self.transform = transform
        self.generator = torch.Generator().manual_seed(int(seed))
        self.history: list[str] = []
        if not 0 <= style_weight <= 1:
            raise ValueError(f"style_weight must be in [0, 1], got {style_weight}")
        if style_weight > 0 and style is None:
            raise ValueError("style_weight > 0 needs an AiViewGram (style=...)")
        if style is not None and all(e is not style.decoder for e, _ in self.encoders):
            raise ValueError("the AI-view style term must decode one of the objective's encoders")
        self.style = style if style_weight > 0 else None
        self.style_weight = float(style_weight)
        self._style_refs: dict[tuple[tuple[int, int], tuple[int, int, int, int]], StyleReference] = {}
        if weighting not in VIEW_WEIGHTINGS:
            raise ValueError(f"weighting must be one of {VIEW_WEIGHTINGS}, got {weighting!r}")
        self.weighting = weighting
        self.progress: dict[tuple[int, int], float] = {}  # running progress per view size ("worst")

    def sample(self) -> SampledView:
        """The next view (seeded): a whole-image view, uniformly, then an aligned random crop."""
        g = self.generator
        pick = int(torch.randint(len(self.views), (1,), generator=g))
        if self.weighting == "worst" and len(self.views) > 1:
            unseen = [i for i, (_, size) in enumerate(self.views) if size not in self.progress]
            coin = float(torch.rand((), generator=g))
            if unseen:  # every view size is visited once before any is preferred
                pick = unseen[pick % len(unseen)]
            elif coin < WORST_SHARE:
                pick = min(range(len(self.views)), key=lambda i: self.progress[self.views[i][1]])
        name, (hv, wv) = self.views[pick]
        ch, cw = min(self.crop_side, hv), min(self.crop_side, wv)
        if self.crop_stride <= CROP_ALIGN:  # a fresh start anywhere on the latent grid
            def start(room: int) -> int:
                starts = crop_starts(room, CROP_ALIGN)
                return starts[int(torch.randint(len(starts), (1,), generator=g))] if len(starts) > 1 else 0

            return SampledView(name, (hv, wv), (start(hv - ch), start(wv - cw), ch, cw))
        cycle = self._cycles.get((hv, wv))
        if not cycle:  # a new shuffled pass over this view size's tiles (a stride above the crop's side
            # would leave gaps between crops: it acts as the side)
            cells = [(t, left) for t in crop_starts(hv - ch, min(self.crop_stride, ch))
                     for left in crop_starts(wv - cw, min(self.crop_stride, cw))]
            cycle = self._cycles[(hv, wv)] = [cells[i] for i in torch.randperm(len(cells), generator=g).tolist()]
        t, left = cycle.pop()
        return SampledView(name, (hv, wv), (t, left, ch, cw))

    def distances(self, x: torch.Tensor) -> list[dict[str, float]]:
        """The manifest's latent figures, from the ``report`` objective (at the work view)."""
        if self.report is None:
            raise ValueError("this objective was built without a report objective")
        return self.report.distances(x)  # type: ignore[attr-defined]

    def base(self, size: tuple[int, int]) -> torch.Tensor:
        """The clean file resized to a view's size (from the full-resolution file, cached)."""
        if size not in self._bases:
            with torch.no_grad():
                self._bases[size] = resize(self.full, size)
        return self._bases[size]

    def apply(self, change: torch.Tensor | None, v: SampledView) -> torch.Tensor:
        """The view ``v`` of the file plus ``change`` (a perturbation at the grid's size; resizing is
        linear, so view(file + up(δ)) = view(file) + resize(δ)))."""
        t, left, ch, cw = v.crop
        y = self.base(v.size)
        if change is not None:
            y = (y + resize(change, v.size)).clamp(0, 1)
        return y[..., t:t + ch, left:left + cw].contiguous(memory_format=torch.channels_last)

    def references(self, v: SampledView) -> list[tuple[torch.Tensor, float]]:
        """Per encoder, the target's latent of view ``v`` and the clean view's distance to it (the
        normaliser d₀), computed without gradients once per crop and reused when the crop is sampled again."""
        key = (v.size, v.crop)
        if key not in self._latents:
            self.encodes += 1
            refs = []
            with torch.no_grad():
                clean, target = self.apply(None, v), self.apply(self.change, v)
                for enc, _ in self.encoders:
                    zt, zc = enc.encode(target), enc.encode(clean)
                    refs.append((zt, max(float((zc - zt).flatten().norm()), 1e-8)))
                    if self.style is not None and enc is self.style.decoder:
                        self._style_refs[key] = self.style.reference(zt, zc, tuple(clean.shape[-2:]))
            self._latents[key] = refs
        return self._latents[key]

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, float]:
        v = self.sample()
        self.history.append(v.name)
        view = self.apply(x - self.x0, v)
        if self.transform is not None:
            view = self.transform(view, self.generator)
        loss = x.new_zeros(())
        prog = 0.0
        refs = self.references(v)
        for (enc, w), (zt, d0) in zip(self.encoders, refs, strict=True):
            z = enc.encode(view)
            d = (z - zt).flatten().norm()
            loss = loss + (1 - self.style_weight) * w * (d / d0) ** 2
            prog += w * (1 - float(d.detach()) / d0)
            if self.style is not None and enc is self.style.decoder:
                ref = self._style_refs[(v.size, v.crop)]
                loss = loss + self.style_weight * self.style.loss(z, tuple(view.shape[-2:]), ref)
        old = self.progress.get(v.size)
        self.progress[v.size] = prog if old is None else (1 - PROGRESS_EMA) * old + PROGRESS_EMA * prog
        return loss, prog


__all__ = ["CROP_ALIGN", "PROGRESS_EMA", "WORST_SHARE", "SampledView", "crop_starts", "ViewSampledObjective", "over_trainer_views", "view_sizes"]
