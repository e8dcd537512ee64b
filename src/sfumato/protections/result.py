"""What every protection returns: the protected image (already through the output codec's quantisation)
with the figures the shared loop measured; each mode adds what it aimed at."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sfumato.optimise.perturb import PerturbOutcome


@dataclass(kw_only=True)
class ProtectionResult:
    """``latent``: per encoder (and target), clean→target and protected→target distances and the relative
    reduction; ``achieved``: LPIPS, PSNR, SSIM and L∞ of ``image`` against the input; ``timing_s``: seconds
    per phase; ``scale``: the calibration's factor on the optimised perturbation; ``history``: per step."""

    image: np.ndarray
    config: Any
    latent: list[dict[str, Any]]
    achieved: dict[str, float]
    timing_s: dict[str, float]
    steps_run: int
    scale: float
    history: list[dict] = field(default_factory=list)


def outcome_fields(res: PerturbOutcome, timing: dict[str, float]) -> dict[str, Any]:
    """The :class:`ProtectionResult` fields from the shared loop's outcome and the seconds per phase."""
    return {"image": res.image, "latent": res.latent, "achieved": res.achieved,
            "timing_s": {k: round(v, 3) for k, v in timing.items()}, "steps_run": res.loop.steps_run,
            "scale": res.scale, "history": res.loop.history}
