"""The verdicts of ``sfumato check`` and their wording: how much retained protection counts as surviving
or removed (:func:`verdict_for`), the thresholds as reported, the sentence explaining each attack's
outcome (:func:`explain`), the report's summary (:func:`summary`) and what a check does not test
(:data:`NOT_TESTED`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from sfumato.attacks.best_of_n import USABLE_LPIPS, USABLE_PSNR_DB
from sfumato.verification.results import AttackResult

__all__ = [
    "MIN_PROTECTION",
    "NOT_TESTED",
    "REMOVED_BELOW",
    "SURVIVES_AT",
    "explain",
    "summary",
    "thresholds",
    "verdict_for",
]

SURVIVES_AT = 2 / 3
"""An attack leaves the protection *surviving* when at least this share of it is retained."""
REMOVED_BELOW = 1 / 3
"""... and *removes* it when less than this share is retained (in between: *weakened*)."""
MIN_PROTECTION = 0.02
"""Below this baseline (relative reduction, or shift relative to the clean latent's norm) there is no
protection worth testing; attack verdicts are then ``"no protection"``."""
NOT_TESTED: tuple[str, ...] = (
    "Diffusion-based purification: DiffPure (Nie et al. 2022), GrIDPure (Zhao et al., CVPR 2024), PDM-Pure "
    "(Xue et al. 2024) and noisy upscaling with a real diffusion upscaler (only its classical stand-in runs "
    "unless you pass an upscaler).",
    "Learned perturbation removers trained to detect and strip cloaks, e.g. LightShed (Foerster et al., "
    "USENIX Security 2025).",
    "Fine-tuning a real text-to-image model (DreamBooth/LoRA) on protected images and judging what it "
    "generates: this check measures encoder latents and independent judges, the ingredients of mimicry, "
    "not mimicry itself.",
    "Encoders other than those measured (real Stable Diffusion / FLUX VAEs unless requested as "
    "diffusers:<id>, CLIP image encoders, text-conditioning paths).",
    "Adaptive attacks designed against Sfumato, and chains of several attacks (best-of-N covers single "
    "operations only).",
    "Screenshots, print-and-scan, re-photographing and full social-media pipelines (only approximated by "
    "JPEG, resizing and cropping).",
    "IMPRESS with the paper's full budget (3000 steps with Stable Diffusion's VAE and LPIPS-VGG); the suites "
    "run fewer steps with TAEF2 and LPIPS-AlexNet ('impress-paper' runs the 3000 steps).",
)
"""What :func:`sfumato.verification.check.check` does not test, stated in every report."""


def verdict_for(retained: float | None) -> str:
    """``"survives"`` (>= 2/3), ``"weakened"``, ``"removed"`` (< 1/3) or ``"not measured"`` (None)."""
    if retained is None or not np.isfinite(retained):
        return "not measured"
    if retained >= SURVIVES_AT:
        return "survives"
    if retained >= REMOVED_BELOW:
        return "weakened"
    return "removed"


def thresholds() -> dict[str, Any]:
    """The thresholds behind the verdicts, as a report states them."""
    return {
        "survives_at": SURVIVES_AT,
        "removed_below": REMOVED_BELOW,
        "min_protection": MIN_PROTECTION,
        "usable_psnr_db": USABLE_PSNR_DB,
        "usable_lpips": USABLE_LPIPS,
        "retained": "with a target style: relative_reduction(attacked) / relative_reduction(protected); "
                    "without: <E(A(protected)) - E(A(original)), u> / |u|^2 with u = E(protected) - E(original); "
                    "smallest over encoders",
        "verdict": f"survives if retained >= {SURVIVES_AT:.2f}, removed if < {REMOVED_BELOW:.2f}, else weakened",
        "usable": f"PSNR vs the protected image >= {USABLE_PSNR_DB:g} dB or LPIPS-alex vs the original "
                  f"<= {USABLE_LPIPS:g}",
    }


def explain(verdict: str, retained: float | None, usable: bool, psnr_v: float, lp_v: float | None,
             measure: str) -> str:
    """One attack's outcome in words: the verdict, then whether the attacked image stays usable."""
    db = "∞" if not np.isfinite(psnr_v) else f"{psnr_v:.1f}"
    use = (f"The attacked image stays usable (PSNR {db} dB vs the protected image"
           + (f", LPIPS {lp_v:.3f} vs the original" if lp_v is not None else "") + ")."
           if usable else
           f"The attack degrades the image too much to be useful (PSNR {db} dB"
           + (f", LPIPS {lp_v:.3f}" if lp_v is not None else "") + "), so it does not count for best-of-N.")
    what = "of the latent shift toward the target style" if measure == "target" else "of the latent shift"
    if verdict == "survives":
        head = f"Protection survives: {retained:.0%} {what} remains."
    elif verdict == "weakened":
        head = f"Protection weakened: only {retained:.0%} {what} remains."
    elif verdict == "removed":
        head = f"Protection removed: {max(retained or 0.0, 0.0):.0%} {what} remains."
    elif verdict == "no protection":
        head = "Nothing to remove: the protected image carries no measurable latent protection."
    else:
        head = "Latent protection not measured (no original given); see the judges."
    return f"{head} {use}"


def summary(results: list[AttackResult], best: dict[str, Any] | None, measure: str, base_ok: bool) -> str:
    """The report's summary: how many usable attacks the protection survives, and the strongest one."""
    if measure == "none":
        return ("Latent protection not measured: the original is needed for that. The judges' readings of the "
                "AI views are reported for each attack.")
    if not base_ok:
        return "The protected image carries no measurable latent protection."
    usable = [r for r in results if r.usable]
    surv = [r.name for r in usable if r.verdict == "survives"]
    weak = [r.name for r in usable if r.verdict == "weakened"]
    gone = [r.name for r in usable if r.verdict == "removed"]
    parts = [f"Of {len(usable)} usable attacks (of {len(results)} run), the protection survives {len(surv)}"]
    if weak:
        parts.append(f"is weakened by {len(weak)} ({', '.join(weak)})")
    if gone:
        parts.append(f"is removed by {len(gone)} ({', '.join(gone)})")
    text = ", ".join(parts) + "."
    if best is not None:
        text += (f" Strongest usable attack (best-of-N): {best['name']}, leaving {best['retained']:.0%} of the "
                 f"protection ({best['verdict']}).")
    return text
