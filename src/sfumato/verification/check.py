"""Verification of a protected image: how much protection it carries and how much survives real attacks
(``sfumato check``).

What :func:`check` measures, at the encoder's working size (a cloak manifest's ``target.work_size``, else
long side ``config.effort.resolution`` from the manifest, else 512 px — the size the protection was
optimised for and a trainer resizes to):

* **quality** of the protected image against the original: LPIPS (AlexNet), PSNR, SSIM, L∞;
* **latent protection**, per encoder E. With a known target style (the manifest's), the target is
  re-rendered exactly as the style cloak did (:func:`sfumato.targets.style_target.render_target` of the
  original at the working size, same style, strength and renderer) and, as in the manifest,
  ``relative_reduction = 1 − ‖E(x) − E(T)‖ / ‖E(original) − E(T)‖`` — the share of the way to the target
  the image's latent has moved. Always (with an original): the *shift away* ``‖E(x) − E(original)‖``;
* the **AI view** (TAEF2 decode of the latent) of the original and protected images;
* **independent judges** on the AI views (:mod:`sfumato.judges`): the style judge's probability for the
  artist the original is attributed to, and the concept judge's top concepts; for an image over 256 px,
  the crop judge at the trainer's scale on every bucket and native trainer view of >= 512 px
  (:mod:`~sfumato.verification.judging`). They never took part in making the protection;
* every **attack** (:mod:`sfumato.attacks`) applied to the protected image, then the same measures.
  ``retained`` is the share of the protection left after the attack: with a target,
  ``relative_reduction(attacked) / relative_reduction(protected)`` (the attack's own distortion counts
  against the protection: conservative); without a target, the share of the protection's latent shift
  that survives *in its own direction*: with ``u = E(protected) − E(original)``,
  ``⟨E(A(protected)) − E(A(original)), u⟩ / ‖u‖²`` — the same attack (same seed) is applied to the
  original, so the attack's own distortion is not mistaken for protection, and the random latent
  differences an attack creates (e.g. JPEG blocks falling differently) do not count either, being
  nearly orthogonal to ``u``. With several encoders the smallest value counts. Geometric attacks (crop)
  compare with references reframed the same way (without a target this makes a crop retain everything
  by construction: that measure cannot see what reframing does to a perturbation);
* **trainer views** (``views=True``; :mod:`~sfumato.verification.views`): the latent protection at every
  size and crop a trainer may encode at (buckets of 512/768/1024 px long side, the native size, random
  crops, the work size; :func:`sfumato.attacks.trainer_views.trainer_views`), with a ceiling control (the
  budget-limited blend toward the target itself) and the style judge on each view's AI view; ``worst`` is
  the view a trainer would pick;
* **verdicts**: ``survives`` when ``retained`` >= 2/3, ``removed`` when < 1/3, else ``weakened``;
  **best-of-N**: the usable attack that leaves the least (usable: PSNR vs the protected image >= 25 dB
  or LPIPS vs the original <= 0.3, :func:`sfumato.attacks.is_usable`).

Without the original the latent protection cannot be measured (it needs the clean latent); the report
then holds the judges only and says so.

:func:`check` runs these steps, each in its own module: the inputs and working size
(:mod:`~sfumato.verification.inputs`), the re-rendered target (:mod:`~sfumato.verification.target`), the
latent measures (:mod:`~sfumato.verification.latents`), the judges (:mod:`~sfumato.verification.judging`)
and the verdicts and their wording (:mod:`~sfumato.verification.verdicts`), into a
:class:`~sfumato.verification.results.CheckReport` (:mod:`~sfumato.verification.results`).
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sfumato.verification.inputs import CheckInputs, ImageInput, find_manifest, read_inputs
from sfumato.verification.judging import JudgePanel, setup_judges
from sfumato.verification.latents import (
    Baseline,
    EncoderViews,
    cached_encoder,
    measure_attack,
    measure_baseline,
)
from sfumato.verification.results import AttackResult, CheckReport
from sfumato.verification.target import rerender_target
from sfumato.verification.thumbnails import ATTACK_THUMB_SIDE, THUMB_SIDE, thumbnail
from sfumato.verification.trainer_check import views_step, views_summary
from sfumato.verification.verdicts import (
    MIN_PROTECTION,
    NOT_TESTED,
    REMOVED_BELOW,
    SURVIVES_AT,
    explain,
    summary,
    thresholds,
    verdict_for,
)

__all__ = [
    "MIN_PROTECTION",
    "NOT_TESTED",
    "REMOVED_BELOW",
    "SURVIVES_AT",
    "AttackResult",
    "CheckReport",
    "check",
    "find_manifest",
    "verdict_for",
]


def attack_seed(seed: int, name: str) -> int:
    """A per-attack seed derived from the check seed and the attack's name (stable if the suite changes)."""
    ss = np.random.SeedSequence([int(seed), zlib.crc32(name.encode("utf-8"))])
    return int(ss.generate_state(1)[0] % (2**31 - 1))


@dataclass
class _Run:
    """What every attack step needs: the inputs, the models, the baseline and the judges."""

    inputs: CheckInputs
    seed: int
    autoencoder: Any
    lpips: Any
    baseline: Baseline
    judges: JudgePanel
    upscaler: Callable[[np.ndarray], np.ndarray] | None
    models_dir: Any


def _quality_step(inp: CheckInputs, models_dir: Any, images: dict[str, np.ndarray],
                  say: Callable[[str], None]) -> dict[str, float] | None:
    if inp.x_o is None:
        return None
    from sfumato.metrics.saved import protected_quality

    say("quality")
    quality = protected_quality(inp.x_p, inp.x_o, models_dir=models_dir)
    images["original"] = thumbnail(inp.x_o, THUMB_SIDE)
    return quality


def _target_step(inp: CheckInputs, models_dir: Any, images: dict[str, np.ndarray], notes: list[str],
                 say: Callable[[str], None]) -> tuple[Any, dict[str, Any] | None]:
    if not (inp.mode == "cloak" and inp.style_name):
        return None, None
    if inp.x_o is None:
        notes.append("The manifest names a target style, but without the original the target cannot be "
                     "re-rendered (it is the original rendered in that style).")
        return None, None
    if inp.cfg is None:
        notes.append("The manifest has no 'config'; the target cannot be re-rendered.")
        return None, None
    from sfumato.io.tensors import to_hwc

    say("target")
    assert inp.manifest is not None
    target_view, target_info = rerender_target(inp.manifest, inp.cfg, inp.x_o, inp.size, models_dir, notes)
    if target_view is not None:
        images["target"] = thumbnail(to_hwc(target_view), THUMB_SIDE)
    return target_view, target_info


def _ai_views_step(inp: CheckInputs, ae: Any, images: dict[str, np.ndarray],
                   say: Callable[[str], None]) -> tuple[np.ndarray, np.ndarray | None]:
    from sfumato.encoders.views import ai_view

    say("AI views")
    av_p = ai_view(inp.x_p, ae, resolution=inp.resolution)
    images["ai_view_protected"] = thumbnail(av_p, THUMB_SIDE)
    av_o = None
    if inp.x_o is not None:
        av_o = ai_view(inp.x_o, ae, resolution=inp.resolution)
        images["ai_view_original"] = thumbnail(av_o, THUMB_SIDE)
    return av_p, av_o


def _attack_step(run: _Run, spec: Any) -> AttackResult:
    """Apply one attack to the protected image and measure the result: quality, latents, verdict, judges."""
    import torch

    from sfumato.attacks import align_reference, apply_attack, is_usable
    from sfumato.encoders.views import ai_view
    from sfumato.io.tensors import to_nchw
    from sfumato.metrics.quality import psnr

    inp, base = run.inputs, run.baseline
    x_p, x_o = inp.x_p, inp.x_o
    t0 = time.perf_counter()
    a_seed = attack_seed(run.seed, spec.name) if spec.random else None
    kw = {"seed": a_seed or 0, "autoencoder": run.autoencoder, "upscaler": run.upscaler, "models_dir": run.models_dir}
    y = apply_attack(spec, x_p, **kw)
    # quality of the attacked image, against references of the same framing
    ref_p = align_reference(spec, x_p)
    with torch.no_grad():
        ty, tp = to_nchw(y), to_nchw(ref_p)
        psnr_v = float(psnr(ty, tp)[0])
        lp_v = None
        if x_o is not None:
            lp_v = float(run.lpips(ty, to_nchw(align_reference(spec, x_o)))[0])
    q = {"psnr_vs_protected": psnr_v, "lpips_vs_original": lp_v}
    usable = is_usable(psnr_v, lp_v)
    lat, retained = measure_attack(base, spec, y, lambda: apply_attack(spec, x_o, **kw), align_reference)
    verdict = verdict_for(retained) if base.ok or base.measure == "none" else "no protection"
    explanation = explain(verdict, retained, usable, psnr_v, lp_v, base.measure)
    av_y = ai_view(y, run.autoencoder, resolution=inp.resolution)
    return AttackResult(
        name=spec.name, description=spec.description, params=spec.kwargs, seed=a_seed,
        seconds=round(time.perf_counter() - t0, 3), quality=q, usable=usable, latent=lat, retained=retained,
        verdict=verdict, explanation=explanation, judges=run.judges.read(av_y),
        images={"attacked": thumbnail(y, ATTACK_THUMB_SIDE), "ai_view": thumbnail(av_y, ATTACK_THUMB_SIDE)})


def _best_of_n(results: list[AttackResult]) -> dict[str, Any] | None:
    from sfumato.attacks import best_of_n

    best = best_of_n([{"name": r.name, "retained": r.retained, "usable": r.usable} for r in results])
    return None if best is None else {**best.to_dict(), "verdict": verdict_for(best.retained)}


def check(
    protected: ImageInput,
    *,
    original: ImageInput | None = None,
    manifest: dict[str, Any] | str | os.PathLike[str] | None = None,
    attacks: str | Sequence[Any] = "default",
    encoders: Sequence[str] = ("taef2",),
    models_dir: str | os.PathLike[str] | None = None,
    corpus_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    judges: bool = True,
    style_judge: Any = None,
    concept_judge: Any = None,
    crop_judge: Any = None,
    upscaler: Callable[[np.ndarray], np.ndarray] | None = None,
    progress: Callable[[str], None] | None = None,
    views: bool | Sequence[Any] = False,
) -> CheckReport:
    """Measure a protected image's protection and how much of it survives each attack (see module doc).

    ``protected``/``original``: file paths or float32 ``HxWx3`` arrays in [0, 1] of the same size.
    ``manifest``: the cloak manifest (dict or path); by default ``<stem>.sfumato.json`` beside a protected
    file is read when present. ``attacks``: ``"default"``, ``"all"``, or names/specs
    (:data:`sfumato.attacks.ATTACKS`). ``encoders``: encoder specs to measure (``load_encoder``).
    ``corpus_dir``: folder with ``art/<artist>/`` for the default style judge (or give ``style_judge``, a
    :class:`~sfumato.judges.StyleJudge` or a saved judge's path). ``crop_judge``: the crop-level style
    judge at the trainer's scale, read on the AI view of every bucket and native trainer view of >= 512 px
    when the protected image's long side is over 256 px: ``None`` (default) trains the ace judge when the
    corpus has ``art/<artist>/ace_*`` files (cached), ``False`` switches it off, or give a judge (anything
    with ``artists`` and ``predict_proba``; ``predict_proba_crops`` is used when present) or a saved
    :class:`~sfumato.judges.crop.CropStyleJudge`'s path. ``upscaler``: passed to
    ``noisy-upscale``. ``progress(message)`` reports each step. ``views``: measure at every trainer view
    (``True``: :func:`~sfumato.attacks.trainer_views.trainer_views` of the image, seeded by ``seed``; or a
    list of :class:`~sfumato.attacks.trainer_views.TrainerView`); off by default in the API (it costs a few
    encoder passes per view), on by default in ``sfumato check``.
    """
    from sfumato.attacks import resolve_attacks
    from sfumato.metrics.lpips import load_lpips

    t_start = time.perf_counter()
    say = progress or (lambda _m: None)
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not encoders:
        raise ValueError("encoders is empty: measure at least one, e.g. encoders=('taef2',)")
    specs = resolve_attacks(attacks)
    notes: list[str] = []
    inp = read_inputs(protected, original, manifest, notes)
    encs = [cached_encoder(s, models_dir) for s in encoders]
    ae = next((e for e in encs if e.has_decoder), None) or cached_encoder("taef2", models_dir)
    images: dict[str, np.ndarray] = {"protected": thumbnail(inp.x_p, THUMB_SIDE)}
    quality = _quality_step(inp, models_dir, images, say)
    target_view, target_info = _target_step(inp, models_dir, images, notes, say)
    base = measure_baseline(EncoderViews(inp.size, encs), inp.x_p, inp.x_o, target_view, inp.manifest, notes)
    av_p, av_o = _ai_views_step(inp, ae, images, say)
    say("judges")
    panel = setup_judges(judges, style_judge, concept_judge, corpus_dir, models_dir, notes, crop_judge=crop_judge,
                         long_side=max(inp.x_p.shape[:2]))
    judge_info = panel.read_baseline(ae.id, inp.x_p, inp.x_o, av_p, av_o)
    run = _Run(inputs=inp, seed=int(seed), autoencoder=ae, lpips=load_lpips("alex", models_dir=models_dir),
               baseline=base, judges=panel, upscaler=upscaler, models_dir=models_dir)
    results: list[AttackResult] = []
    for spec in specs:
        say(f"attack {spec.name}")
        results.append(_attack_step(run, spec))
    best_d = _best_of_n(results)
    view_info = views_step(inp, ae, target_view, panel, quality, int(seed), models_dir, views, notes, say)
    panel.read_crop_views(judge_info, view_info, notes)
    text = summary(results, best_d, base.measure, base.ok) + views_summary(view_info)
    from sfumato.verification.plain import check_verdict

    verdict = check_verdict(judges=judge_info, views=view_info, latent=base.latent, measure=base.measure,
                            base_ok=base.ok, manifest=inp.manifest, notes=notes)
    return CheckReport(
        protected=_file_entry(inp.p_path, inp.x_p),
        original=_file_entry(inp.o_path, inp.x_p) if inp.x_o is not None else None,
        manifest=_manifest_entry(inp),
        settings={"resolution": inp.resolution, "work_size": [inp.size[1], inp.size[0]],
                  "encoders": [e.id for e in encs], "ai_view_encoder": ae.id, "attacks": [s.name for s in specs],
                  "seed": int(seed), "lpips_net": "alex",
                  "upscaler": None if upscaler is None else getattr(upscaler, "__name__", "given")},
        thresholds=thresholds(),
        quality=quality, target=target_info, latent=base.latent, protection_measure=base.measure, judges=judge_info,
        attacks=results, best_of_n=best_d, summary=text, views=view_info,
        not_tested=list(NOT_TESTED), notes=notes, seconds=round(time.perf_counter() - t_start, 3), images=images,
        verdict=verdict,
    )


def _file_entry(path: Any, x: np.ndarray) -> dict[str, Any]:
    h, w = x.shape[:2]
    return {"file": str(path) if path else None, "size": [w, h]}


def _manifest_entry(inp: CheckInputs) -> dict[str, Any] | None:
    m = inp.manifest
    if m is None:
        return None
    return {"file": str(inp.man_path) if inp.man_path else None, "mode": m.get("mode"), "target": m.get("target"),
            "budget": m.get("budget"), "achieved": m.get("achieved"), "latent": m.get("latent")}
