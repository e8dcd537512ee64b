"""Peer protections reimplemented from their papers, for comparing Sfumato against them at matched budgets.

Each baseline is a function ``fn(rgb, *, encoders, target, steps, seed, resolution, quantise, models_dir,
progress, matched_budget, ...) -> BaselineResult``; the keywords they all share are
:class:`sfumato.baselines.common.RunOptions`. Every one runs on Sfumato's encoder adapters, its budget
objects (:mod:`sfumato.optimise.budgets`) and the one optimisation loop (:func:`sfumato.optimise.loop.optimise`), and works
exactly like :func:`sfumato.protections.cloak.cloak_array` around the method's own objective: the encoder sees the
image with its long side at ``resolution``, the perturbation lives at that size and is upsampled smoothly to
the full image, and the result is passed through ``quantise`` (the output codec) with the method's L∞ cap
measured *after* quantisation. What differs between baselines is only what each paper specifies: the
target, the loss, the update rule, the step schedule and the budget.

======================  ==========================================  ==========================================
name                    paper                                       module
======================  ==========================================  ==========================================
``"photoguard"``        Salman et al., ICML 2023 (encoder attack)   :mod:`sfumato.baselines.photoguard`
``"glaze"``             Shan et al., USENIX Security 2023           :mod:`sfumato.baselines.glaze`
``"nightshade"``        Shan et al., IEEE S&P 2024                  :mod:`sfumato.baselines.nightshade`
``"mist"``              Liang et al., ICML 2023 (Mist, textural)    :mod:`sfumato.baselines.mist`
======================  ==========================================  ==========================================

``matched_budget`` (a :class:`sfumato.config.Budget`) switches any baseline to the benchmark's
matched-budget mode: the method's L∞ cap (and LPIPS budget, where it has one) become the budget's, and the
final perturbation is scaled with :func:`sfumato.optimise.calibrate.calibrate` — the same calibration the cloak uses —
so that the *saved* image has LPIPS ≤ ``budget.lpips`` and L∞ ≤ ``budget.linf``.

The machinery they share (input checks, the working view, the one run of the loop, quantisation
within the cap, the measurements) is :mod:`sfumato.baselines.common`.

No code of the original tools was used (several are GPL/AGPL or unlicensed); each module cites the paper
and states where it departs from it.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any

from sfumato.baselines.common import BaselineResult, quantise_within

__all__ = [
    "BASELINES", "BaselineResult", "get_baseline", "quantise_within",
    "photoguard_encoder_attack", "glaze_style_cloak", "nightshade_poison", "mist_textural",
]

BASELINES: dict[str, str] = {
    "photoguard": "photoguard:photoguard_encoder_attack",
    "glaze": "glaze:glaze_style_cloak",
    "nightshade": "nightshade:nightshade_poison",
    "mist": "mist:mist_textural",
}
_FUNCTIONS = {v.split(":")[1]: v for v in BASELINES.values()}


def get_baseline(name: str) -> Callable[..., BaselineResult]:
    """The baseline function registered under ``name`` (see :data:`BASELINES`)."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose one of {sorted(BASELINES)}")
    mod, fn = BASELINES[name].split(":")
    return getattr(import_module(f"{__name__}.{mod}"), fn)


def __getattr__(name: str) -> Any:
    if name in _FUNCTIONS:
        mod, fn = _FUNCTIONS[name].split(":")
        return getattr(import_module(f"{__name__}.{mod}"), fn)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
