"""Machinery every baseline shares: input checks, the image at the encoder's resolution, one run of the
shared loop toward a latent target (:class:`BaselineRun`), quantisation with the L∞ cap holding on the
quantised values (calibrated to a matched budget when one is given), and the measured result."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

import numpy as np

from sfumato.io.outputs import Quantiser

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from sfumato.config import Budget
    from sfumato.encoders.base import Encoder
    from sfumato.optimise.loop import LoopResult
    from sfumato.optimise.objectives import LatentTargetObjective

CALIBRATION_MAX_SCALE = 1.5
"""Largest factor the matched-budget calibration may scale a perturbation by (as :func:`cloak_array`)."""

LINF_TOLERANCE = 1e-6
"""Float slack allowed when checking the L∞ cap of a quantised image."""


@dataclass
class BaselineResult:
    """The outcome of one baseline run.

    ``image``: the protected image at full size, already passed through ``quantise`` (what the codec
    stores); ``latent``: per encoder, clean→target and protected→target distances and the relative
    reduction (same shape as :attr:`sfumato.protections.cloak.CloakResult.latent`); ``achieved``: LPIPS, PSNR,
    SSIM and L∞ of ``image`` against the input (:func:`sfumato.metrics.saved.protected_quality`);
    ``params``: every setting that determined the result (JSON-ready); ``target_image``: what the
    encoders were aimed at, at the encoder's resolution (``None`` where the target is a latent only).
    """

    image: np.ndarray
    name: str
    params: dict[str, Any]
    latent: list[dict[str, float]]
    achieved: dict[str, float]
    seconds: float
    steps_run: int
    history: list[dict] = field(default_factory=list)
    target_image: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": self.params, "latent": self.latent, "achieved": self.achieved,
                "seconds": round(self.seconds, 3), "steps_run": self.steps_run}


# --------------------------------------------------------------------------------------------- validation
def check_rgb(rgb: Any, what: str) -> np.ndarray:
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3:
        got = rgb.shape if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise ValueError(f"{what} must be an HxWx3 float RGB array in [0, 1], got {got}")
    if not np.issubdtype(rgb.dtype, np.floating):
        raise ValueError(f"{what} must be float in [0, 1], got {rgb.dtype}; divide 8-bit data by 255")
    if min(rgb.shape[:2]) < 8:
        raise ValueError(f"{what} is {rgb.shape[0]}x{rgb.shape[1]} pixels; give an image at least 8x8")
    return np.ascontiguousarray(rgb, dtype=np.float32)


def check_settings(*, steps: int, resolution: int, seed: int) -> None:
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if not isinstance(resolution, int) or not 64 <= resolution <= 4096:
        raise ValueError(f"resolution must be an int in [64, 4096] pixels (the encoder's long side), got {resolution!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")


def resolve_eps(eps: float | None, default: float, matched_budget: Budget | None, method: str) -> float:
    """The L∞ cap to use: the method's default, an explicit ``eps`` or the matched budget's (not both)."""
    if matched_budget is not None:
        if eps is not None:
            raise ValueError(f"{method}: give either eps or matched_budget (which sets eps = budget.linf), not both")
        return float(matched_budget.linf)
    value = default if eps is None else float(eps)
    if not 0 < value <= 1:
        raise ValueError(f"{method}: eps must be in (0, 1] (pixel units, 16/255 = 0.063), got {value}")
    return value


def check_positive(value: float, name: str, method: str) -> float:
    if not value > 0:
        raise ValueError(f"{method}: {name} must be positive, got {value}")
    return float(value)


# --------------------------------------------------------------------------------------------- machinery
@dataclass
class Work:
    """The clean image at the encoder's resolution (1x3xhxw on the encoders' device) and the encoders."""

    x0: torch.Tensor
    encoders: list[tuple[Encoder, float]]
    full_size: tuple[int, int]


def prepare(rgb: np.ndarray, encoders: Sequence[tuple[Encoder, float]] | None, resolution: int,
            models_dir: Any, method: str) -> Work:
    """Check the encoders (default: TAEF2) and resize the image to the encoder's working size."""
    import torch

    from sfumato.io.tensors import resize, to_nchw, work_size

    if encoders is None:
        from sfumato.encoders import load_encoder

        encoders = [(load_encoder("taef2", models_dir=models_dir), 1.0)]
    encs = [tuple(e) if isinstance(e, list) else e for e in encoders]
    if not encs:
        raise ValueError(f"{method}: encoders is empty; pass [(encoder, weight)], e.g. [(load_encoder('taef2'), 1.0)]")
    for item in encs:
        if not (isinstance(item, tuple | list) and len(item) == 2 and isinstance(item[0], torch.nn.Module)
                and isinstance(item[1], int | float) and float(item[1]) > 0):
            raise ValueError(f"{method}: each encoder must be (Encoder, positive weight), got {item!r}")
    device = next(encs[0][0].parameters()).device
    h, w = rgb.shape[:2]
    x0 = resize(to_nchw(rgb).to(device), work_size(h, w, resolution))
    return Work(x0.contiguous(memory_format=torch.channels_last), encs, (h, w))


def fit_image(img: np.ndarray | float, like: torch.Tensor, what: str) -> torch.Tensor:
    """A target image at ``like``'s size: an RGB array is resized to cover it and centre-cropped (aspect
    ratio kept); a number is a uniform grey of that level."""
    import torch

    from sfumato.io.tensors import resize, to_nchw

    h, w = like.shape[-2:]
    if isinstance(img, int | float) and not isinstance(img, bool):
        if not 0 <= float(img) <= 1:
            raise ValueError(f"{what}: a grey level must be in [0, 1], got {img}")
        return torch.full_like(like, float(img))
    t = to_nchw(check_rgb(img, what)).to(like)
    th, tw = t.shape[-2:]
    s = max(h / th, w / tw)
    sh, sw = max(h, round(th * s)), max(w, round(tw * s))
    t = resize(t, (sh, sw))
    top, left = (sh - h) // 2, (sw - w) // 2
    return t[..., top: top + h, left: left + w].clamp(0, 1).contiguous()


def finish(name: str, rgb: np.ndarray, work: Work, loop: LoopResult, objective: LatentTargetObjective, *,
           eps: float, quantise: Quantiser, matched_budget: Budget | None, models_dir: Any,
           params: dict[str, Any], t_start: float, target_image: torch.Tensor | None) -> BaselineResult:
    """Upsample δ to the full image, quantise (calibrating to the matched budget if one is given) with the
    L∞ cap holding on the quantised values, and measure the latent distances and the image quality."""
    import torch

    from sfumato.io.tensors import resize, to_hwc, to_nchw
    from sfumato.metrics.saved import protected_quality

    h, w = work.full_size
    delta = loop.delta
    if tuple(delta.shape[-2:]) != (h, w):
        delta = resize(delta, (h, w))
    delta_full = to_hwc(delta)
    lpips_net = matched_budget.lpips_net if matched_budget is not None else "alex"
    out, calibration = quantise_within(rgb, delta_full, eps=eps, quantise=quantise, matched_budget=matched_budget,
                                       models_dir=models_dir)
    with torch.no_grad():
        view = resize(to_nchw(out).to(work.x0), tuple(work.x0.shape[-2:]))
    latent = objective.distances(view)
    achieved = protected_quality(out, rgb, lpips_net=lpips_net, models_dir=models_dir)
    params = dict(params)
    params.update({"steps_run": loop.steps_run, "resolution_used": list(work.x0.shape[-2:]),
                   "encoders": [{"id": e.id, "weight": float(wt)} for e, wt in work.encoders],
                   "matched_budget": matched_budget.to_dict() if matched_budget is not None else None,
                   "calibration": calibration})
    return BaselineResult(out, name, params, latent, achieved, time.perf_counter() - t_start, loop.steps_run,
                          loop.history, to_hwc(target_image) if target_image is not None else None)


def quantise_within(rgb: np.ndarray, delta_full: np.ndarray, *, eps: float, quantise: Quantiser,
                    matched_budget: Budget | None, models_dir: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """The quantised protected image with |quantised − rgb| ≤ eps everywhere.

    Rounding can push a value up to half a quantisation step past the cap (and an input that is not on the
    codec's grid moves when quantised even with δ = 0), so the clipping bound is lowered by the measured
    excess until the cap holds on the quantised result. With a matched budget the perturbation is also
    scaled by :func:`sfumato.optimise.calibrate.calibrate` so that LPIPS ≤ ``budget.lpips`` on the quantised result.
    """
    import torch

    from sfumato.io.tensors import to_nchw
    from sfumato.optimise.calibrate import calibrate

    lpips_fn = None
    if matched_budget is not None:
        from sfumato.metrics.lpips import load_lpips

        lp = load_lpips(matched_budget.lpips_net, models_dir=models_dir)

        def lpips_fn(a: np.ndarray, b: np.ndarray) -> float:
            with torch.no_grad():
                return float(lp(to_nchw(a), to_nchw(b))[0])

    bound = eps
    scale, lp_val = 1.0, None
    out = rgb
    for _ in range(8):
        if lpips_fn is None:
            out = quantise(np.clip(rgb + np.clip(delta_full, -bound, bound), 0, 1)).astype(np.float32)
        else:
            out, scale, lp_val = calibrate(rgb, delta_full, lpips_p=matched_budget.lpips, linf=bound,
                                           quantise=quantise, lpips_fn=lpips_fn, max_scale=CALIBRATION_MAX_SCALE)
            out = out.astype(np.float32)
        excess = float(np.abs(out.astype(np.float64) - rgb).max()) - eps
        if excess <= LINF_TOLERANCE or bound <= 0:
            break
        bound = max(0.0, bound - excess - LINF_TOLERANCE)
    info: dict[str, Any] = {"linf_clip_bound": bound, "scale": scale}
    if lpips_fn is not None:
        info.update({"lpips": lp_val, "max_scale": CALIBRATION_MAX_SCALE})
    return out, info


# --------------------------------------------------------------------------------------------- one run
class RunOptions(TypedDict, total=False):
    """Keyword options every baseline takes (``**run: Unpack[RunOptions]``).

    ``encoders``: ``[(Encoder, weight)]`` (default TAEF2); ``seed``; ``resolution``: the encoder's long side
    in pixels (default 512); ``quantise``: the output codec (default 8-bit rounding); ``matched_budget``: a
    :class:`sfumato.config.Budget` for the matched-budget mode; ``models_dir``; ``progress(step, steps)``.
    """

    encoders: Sequence[tuple[Any, float]] | None
    seed: int
    resolution: int
    quantise: Quantiser | None
    matched_budget: Any
    models_dir: Any
    progress: Callable[[int, int], None] | None


@dataclass
class BaselineRun:
    """One baseline run: the checked inputs, then (after :meth:`prepare`) the working view, one run of the
    shared loop toward a target image (:meth:`optimise_toward`) and the measured result (:meth:`finish`)."""

    method: str
    rgb: np.ndarray
    eps: float
    t_start: float
    encoders: Sequence[tuple[Any, float]] | None = None
    seed: int = 0
    resolution: int = 512
    quantise: Quantiser | None = None
    matched_budget: Budget | None = None
    models_dir: Any = None
    progress: Callable[[int, int], None] | None = None
    work: Work | None = None

    @classmethod
    def start(cls, method: str, rgb: Any, *, steps: int, eps: float | None, default_eps: float,
              **run: Unpack[RunOptions]) -> BaselineRun:
        """Check the image and the settings shared by every baseline and resolve the L∞ cap."""
        from sfumato.io.tensors import round_to_bits

        t_start = time.perf_counter()
        rgb = check_rgb(rgb, f"{method}: rgb")
        self = cls(method, rgb, 0.0, t_start, **run)
        check_settings(steps=steps, resolution=self.resolution, seed=self.seed)
        self.eps = resolve_eps(eps, default_eps, self.matched_budget, method)
        self.quantise = self.quantise or round_to_bits
        return self

    def step_size(self, given: float | None, ratio: float) -> float:
        """The (first) step size: ``given``, or the method's ratio of the L∞ cap."""
        return check_positive(given if given is not None else ratio * self.eps, "step_size", self.method)

    def prepare(self) -> Work:
        """The image at the encoder's resolution, and the encoders (default TAEF2)."""
        self.work = prepare(self.rgb, self.encoders, self.resolution, self.models_dir, self.method)
        return self.work

    def optimise_toward(self, target_image: torch.Tensor, budgets: Sequence[Any], *, steps: int, lr: float,
                        update: str, decay: str = "none", init_noise: float = 0.0
                        ) -> tuple[LoopResult, LatentTargetObjective]:
        """The shared loop on the working view toward ``target_image``'s latent (normalised distance)."""
        import torch

        from sfumato.optimise import loop as shared_loop
        from sfumato.optimise.objectives import LatentTargetObjective

        assert self.work is not None, "call prepare() first"
        objective = LatentTargetObjective(self.work.x0, target_image, self.work.encoders)
        gen = torch.Generator().manual_seed(self.seed)
        result = shared_loop.optimise(self.work.x0, objective, budgets, steps=steps, lr=lr, generator=gen,
                                      update=update, decay=decay, init_noise=init_noise,  # type: ignore[arg-type]
                                      callback=self.progress)
        return result, objective

    def finish(self, loop: LoopResult, objective: LatentTargetObjective, params: dict[str, Any],
               target_image: torch.Tensor | None) -> BaselineResult:
        """Quantise within the cap (calibrated to the matched budget, if any) and measure the result."""
        assert self.work is not None and self.quantise is not None, "call prepare() first"
        return finish(self.method, self.rgb, self.work, loop, objective, eps=self.eps, quantise=self.quantise,
                      matched_budget=self.matched_budget, models_dir=self.models_dir, params=params,
                      t_start=self.t_start, target_image=target_image)
