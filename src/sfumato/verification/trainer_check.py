"""The trainer-views step of ``sfumato check``: which views, which budget for the ceiling control, which
judges (the whole-image style judge on every view, the crop judge on buckets and the native size of at
least 512 px: :meth:`~sfumato.verification.judging.JudgePanel.view_judges`), and the report's ``views``
section and its line in the summary (the measure itself is
:func:`sfumato.verification.views.measure_views`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from sfumato.verification.inputs import CheckInputs
from sfumato.verification.judging import JudgePanel

__all__ = ["JUDGE_LABELS", "views_budget", "views_step", "views_summary"]

JUDGE_LABELS = {"style": "whole-image style", "crop_style": "crop (trainer's scale) style"}
"""How the summary names each judge of the trainer views."""


def views_budget(inp: CheckInputs, quality: dict[str, float] | None,
                 notes: list[str]) -> dict[str, Any] | None:
    """The ceiling control's budget: the manifest's (``lpips``, ``linf``), else what the protected file
    achieved against the original (the same visual change), else ``None``."""
    b = (inp.manifest or {}).get("budget")
    if isinstance(b, dict) and b.get("lpips") is not None and b.get("linf") is not None:
        return {"lpips": float(b["lpips"]), "linf": float(b["linf"]), "lpips_net": str(b.get("lpips_net", "alex")),
                "source": "manifest"}
    if quality:
        notes.append("Trainer views: the manifest gives no budget, so the ceiling control spends what the protected "
                     "file achieved (its LPIPS and L∞ against the original).")
        return {"lpips": float(quality["lpips_alex"]), "linf": float(quality["linf"]), "lpips_net": "alex",
                "source": "achieved"}
    return None


def views_step(inp: CheckInputs, ae: Any, target_view: Any, panel: JudgePanel, quality: dict[str, float] | None,
               seed: int, models_dir: Any, views: bool | Sequence[Any], notes: list[str],
               say: Callable[[str], None]) -> dict[str, Any] | None:
    """The report's ``views`` section (``None`` when switched off or without the original)."""
    if views is False or views is None:
        return None
    if inp.x_o is None:
        notes.append("Trainer views need the original (the clean latent at each view); not measured.")
        return None
    from sfumato.attacks.trainer_views import trainer_views
    from sfumato.verification.views import measure_views, worst_views

    t0 = time.perf_counter()
    h, w = inp.x_p.shape[:2]
    vlist = trainer_views(h, w, work_size=inp.size, seed=seed) if views is True else list(views)
    budget = views_budget(inp, quality, notes) if target_view is not None else None
    judges, artists, wanted = panel.view_judges()
    rows = measure_views(inp.x_o, inp.x_p, target_view, ae, budget, vlist, models_dir=models_dir,
                         autoencoder=ae, judges=judges, artist=artists, progress=say, judge_views=wanted)
    ceiling = rows[0].pop("ceiling", None) if rows else None
    if any(v.upscaled for v in vlist):
        notes.append("Trainer views marked 'upscaled' enlarge the file to a bucket, as a trainer does with a small "
                     "image unless told not to.")
    return {"encoder": ae.id, "seed": seed, "measure": "target" if target_view is not None else "shift",
            "budget": budget, "ceiling": ceiling, "rows": rows, "worst": worst_views(rows),
            "seconds": round(time.perf_counter() - t0, 3)}


def views_summary(info: dict[str, Any] | None) -> str:
    """The summary's sentence on the worst trainer view ('' without views)."""
    if not info or not info.get("worst") or not info["worst"].get("view"):
        return ""
    wv = info["worst"]["view"]
    work = next((r for r in info["rows"] if r["name"] == "work"), None)
    if wv["measure"] == "toward":
        s = (f" Worst trainer view: {wv['name']} ({wv['size'][0]}x{wv['size'][1]} px), "
             f"{wv['toward']:.0%} of the way to the target there")
        if work is not None and work["toward"] is not None:
            s += f" (vs {work['toward']:.0%} at the work size)"
        if wv.get("ceiling_toward") is not None:
            s += f"; the budget-limited blend toward the target reaches {wv['ceiling_toward']:.0%} there"
    else:
        s = (f" Smallest latent shift at trainer view {wv['name']} ({wv['size'][0]}x{wv['size'][1]} px): "
             f"{wv['value']:.1%} of the clean latent's norm")
    for name, j in info["worst"].get("judges", {}).items():
        s += (f"; {JUDGE_LABELS.get(name, name)} judge at its worst view ({j['name']}): p({j['artist']}) "
              f"{j['p_original']:.0%} → {j['p_protected']:.0%}")
    return s + "."
