"""Mist's textural loss, reimplemented on Sfumato's encoders and loop.

Liang, Wu, Hua, Zhang, Xue, Song, Xue, Ma, Guan, "Adversarial Example Does Good: Preventing Painting
Imitation from Diffusion Models via Adversarial Examples", ICML 2023, and the Mist tool built on it
(Liang & Wu, "Mist: Towards Improved Adversarial Examples for Diffusion Models", arXiv:2305.12683). Mist
combines a *semantic* loss (the diffusion model's training loss, maximised — AdvDM) with a *textural* loss
that pulls the image's latent toward that of a target pattern image y:

    min_{‖δ‖∞ ≤ ε} ‖E(x + δ) − E(y)‖²,

solved with targeted L∞ PGD (signed steps, uniform random start in the ε-box). This module implements the
textural loss alone (Mist's "textural" mode): Sfumato has no diffusion model to differentiate through.

Settings (the tool's documented defaults, converted from its [−1, 1] pixels): ε = **16/255**, step
**1/255** (constant), **100** steps; the image is attacked at the encoder's resolution (Mist resizes to
512×512). Mist's target is a specific image of the word "MIST" tiled in black on white; we do not copy it
and draw our own: :func:`mist_pattern` renders the same idea — the word "MIST" in a 5×7 block font,
repeated in offset rows, black on white — procedurally at any size. The loss is normalised by its clean
value (same signed gradient for one encoder) and the loop returns the lowest-loss iterate.
"""

from __future__ import annotations

from typing import Unpack

import numpy as np

from sfumato.baselines.common import BaselineResult, BaselineRun, RunOptions, fit_image
from sfumato.optimise.budgets import LinfBudget

EPS = 16 / 255
STEP = 1 / 255
STEP_RATIO = STEP / EPS
STEPS = 100

_GLYPHS = {  # 5x7 block letters, rows top to bottom
    "M": ("1...1", "11.11", "1.1.1", "1.1.1", "1...1", "1...1", "1...1"),
    "I": (".111.", "..1..", "..1..", "..1..", "..1..", "..1..", ".111."),
    "S": (".1111", "1....", "1....", ".111.", "....1", "....1", "1111."),
    "T": ("11111", "..1..", "..1..", "..1..", "..1..", "..1..", "..1.."),
}


def _word_bitmap(word: str) -> np.ndarray:
    cols = []
    for i, ch in enumerate(word):
        g = np.array([[c == "1" for c in row] for row in _GLYPHS[ch]], dtype=bool)
        if i:
            cols.append(np.zeros((7, 1), bool))
        cols.append(g)
    return np.concatenate(cols, axis=1)


def mist_pattern(height: int, width: int, *, cell: int | None = None) -> np.ndarray:
    """A high-contrast repeating target pattern (HxWx3 float32, values 0 and 1): the word "MIST" in a
    block font, black on white, tiled in rows offset by half a tile. ``cell`` is the size of one font
    pixel (default: long side / 128, at least 2 pixels, so the pattern looks alike at any resolution)."""
    if height < 1 or width < 1:
        raise ValueError(f"mist_pattern needs a positive size, got {height}x{width}")
    cell = cell or max(2, round(max(height, width) / 128))
    if cell < 1:
        raise ValueError(f"mist_pattern: cell must be >= 1 pixel, got {cell}")
    word = _word_bitmap("MIST")
    tile = np.zeros((word.shape[0] + 4, word.shape[1] + 4), bool)  # 2 font pixels of margin all round
    tile[2:-2, 2:-2] = word
    tile = np.kron(tile, np.ones((cell, cell), bool))
    th, tw = tile.shape
    ys, xs = np.mgrid[0:height, 0:width]
    row = ys // th
    ink = tile[ys % th, (xs + (row % 2) * (tw // 2)) % tw]
    img = np.where(ink, 0.0, 1.0).astype(np.float32)
    return np.repeat(img[..., None], 3, axis=2)


def mist_textural(
    rgb: np.ndarray,
    *,
    target: np.ndarray | None = None,
    steps: int = STEPS,
    eps: float | None = None,
    step_size: float | None = None,
    **options: Unpack[RunOptions],
) -> BaselineResult:
    """Mist (textural loss) on ``rgb`` (HxWx3 float32 in [0, 1]).

    ``target``: the target pattern image (HxWx3 array; default :func:`mist_pattern` drawn at the encoder's
    resolution). ``eps``: L∞ cap (default 16/255); ``step_size``: constant step (default ``eps/16``, Mist's
    ratio). ``matched_budget``: a :class:`sfumato.config.Budget`; sets ``eps = budget.linf`` and calibrates
    the result to LPIPS ≤ ``budget.lpips``.
    """
    run = BaselineRun.start("mist", rgb, steps=steps, eps=eps, default_eps=EPS, **options)
    step = run.step_size(step_size, STEP_RATIO)
    work = run.prepare()
    h, w = work.x0.shape[-2:]
    pattern = mist_pattern(h, w) if target is None else target
    target_img = fit_image(pattern, work.x0, "mist: target")
    loop, objective = run.optimise_toward(target_img, [LinfBudget(eps=run.eps)], steps=steps, lr=step,
                                          update="sign", decay="none", init_noise=run.eps)
    params = {"method": "Mist textural loss (Liang et al., ICML 2023; Mist tool)", "eps": run.eps,
              "step_size": step, "step_schedule": "constant", "steps": steps, "update": "sign",
              "init": "uniform in the eps box", "seed": run.seed, "resolution": run.resolution,
              "target": "built-in MIST pattern" if target is None else f"image {list(np.shape(target))}"}
    return run.finish(loop, objective, params, target_img)
