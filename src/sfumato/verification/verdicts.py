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
    "TRUSTED_ATTRIBUTION",
    "artist_label",
    "combine_verdicts",
    "concept_verdict",
    "latent_verdict",
    "make_verdict",
    "pct",
    "style_verdict",
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


# ----------------------------------------------------------------------------------------------------
# the plain verdict of one protected image: one sentence, and the numbers behind it

TRUSTED_ATTRIBUTION = 0.5
"""The style judge speaks for an artist only when it gives the original (and the original's AI view) at
least this probability; otherwise it does not know the artist and cannot say whether the style shows."""


def pct(p: float | None) -> str:
    """A probability or share as the verdicts write it (``98 %``)."""
    return "-" if p is None else f"{100 * float(p):.0f} %"


def artist_label(name: str) -> str:
    """A judge's artist name in words: ``vincent_van_gogh`` → ``Vincent Van Gogh``."""
    return " ".join(w[:1].upper() + w[1:] for w in str(name).replace("_", " ").split())


def make_verdict(protected: bool | None, sentence: str, **basis: Any) -> dict[str, Any]:
    """A verdict record: ``protected`` (``None``: cannot tell), its sentence, the numbers behind it."""
    return {"protected": protected, "sentence": sentence, "basis": basis}


def latent_verdict(toward: float | None, target_style: str | None, *, why_no_judge: str) -> dict[str, Any]:
    """The verdict from the latent shift alone (no judge could speak): never "protected"."""
    if toward is None:
        return make_verdict(None, f"No verdict: {why_no_judge}.", latent_toward=None)
    where = f"the target style '{target_style}'" if target_style else "the target"
    if toward < MIN_PROTECTION:
        return make_verdict(False, f"Not protected: what a model sees barely moved ({pct(toward)} of the way toward "
                                   f"{where}).", latent_toward=toward, target_style=target_style)
    return make_verdict(None, f"Cannot tell whether a model would still pick up your style: what it sees moved "
                              f"{pct(toward)} of the way toward {where}, but {why_no_judge}.",
                        latent_toward=toward, target_style=target_style)


def style_verdict(*, artist: str, p_reference: float, readings: list[dict[str, Any]], scope: str,
                  toward: float | None = None, target_style: str | None = None,
                  judge: str = "style judge") -> dict[str, Any]:
    """Whether a style judge still recognises ``artist`` in what a model sees. ``p_reference``: its
    probability for ``artist`` on the reference (the original's AI view, or its pixels); ``readings``: one per view (``view``, ``p_original``
    and ``p_protected`` — the artist's probability on the AI views of the original and the protected file —,
    ``prediction``, the judge's top artist on the protected one, and ``judge`` when another judge read it); ``scope`` names what was tested (e.g.
    "at every trainer view we tested (7)"). Protected only when no view is still attributed to the artist."""
    who = artist_label(artist)
    basis = {"judge": judge, "artist": artist, "p_reference": p_reference, "views": readings,
             "latent_toward": toward, "target_style": target_style}
    if p_reference < TRUSTED_ATTRIBUTION:
        return make_verdict(None, f"Cannot tell: the {judge} does not recognise this artist in what a model sees of "
                                  f"the original (its best guess, {who}, at {pct(p_reference)}), so it cannot say "
                                  "whether a model would pick up your style.",
                            **basis)
    usable = [r for r in readings if r["p_original"] >= TRUSTED_ATTRIBUTION or r.get("original_attributed")]
    if not usable:
        return make_verdict(None, f"Cannot tell: the {judge} does not recognise {who} even in what a model sees of "
                                  "the unprotected original.", **basis)
    stuck = [r for r in usable if r["prediction"] == artist]
    one = len(readings) == 1
    if stuck:
        w = max(stuck, key=lambda r: r["p_protected"])
        at = "" if one else f" at the {w['view']} view"
        return make_verdict(False, f"A model trained on this image would still pick up your style{at} "
                                   f"({w.get('judge') or judge}: {who} {pct(w['p_protected'])}).", **basis)
    w = max(usable, key=lambda r: r["p_protected"])
    weakest = (f"{who} {pct(w['p_original'])} → {pct(w['p_protected'])}" if one else
               f"weakest: {w['view']}, {who} {pct(w['p_original'])} → {pct(w['p_protected'])}")
    return make_verdict(True, f"Protected {scope}: the {judge} no longer recognises your style in what a model "
                              f"sees ({weakest}, read as {artist_label(w['prediction'])}).", **basis)


def concept_verdict(*, concept: str, target: str, scores: dict[str, float] | None, label: str | None,
                    known: bool = True) -> dict[str, Any]:
    """Whether a poison took: does what a model sees of the image show ``target`` rather than ``concept``?
    ``scores``: the concept judge's scores on the protected file's AI view; ``label``: its reading."""
    basis = {"judge": "concept judge (MobileNetV2)", "concept": concept, "target": target, "scores": scores,
             "label": label}
    if not known or scores is None or label is None:
        return make_verdict(None, f"Cannot tell whether the poison took: the concept judge has no '{concept}' or "
                                  f"'{target}' group to read.", **basis)
    both = f"{target} {pct(scores.get(target))}, {concept} {pct(scores.get(concept))}"
    if label == target:
        return make_verdict(True, f"The poison took: a model sees a {target} in this {concept} image (judge on the "
                                  f"AI view: {both}).", **basis)
    if label == concept:
        return make_verdict(False, f"Not protected: a model still sees a {concept} in this image (judge on the AI "
                                   f"view: {concept} {pct(scores.get(concept))}); the poison did not take.", **basis)
    return make_verdict(False, f"The poison did not take: what a model sees is no clear {target} (judge on the AI "
                               f"view: {both}, read as {label}).", **basis)


def combine_verdicts(parts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One verdict for several aims (``{"style": ..., "concept": ...}``): protected only when every part is,
    not protected when any part is not, else cannot tell; the sentences in order."""
    values = [v["protected"] for v in parts.values()]
    protected = False if False in values else (True if values and all(values) else None)
    return {"protected": protected, "sentence": " ".join(v["sentence"] for v in parts.values()),
            "basis": {k: v["basis"] for k, v in parts.items()}, "parts": {k: v["protected"] for k, v in parts.items()}}
