"""The plain verdict of one protected image, as the protecting commands print it and write it into the
manifest (``verdict``): one sentence, ``protected`` (true, false, or ``None`` when nothing here can tell)
and the numbers behind it (:mod:`~sfumato.verification.verdicts` words them).

What it reads: the AI views (TAEF2 decode of the latent) of the original and the protected file at the
size the protection was made for; for a style cloak the style judge on both (whenever a reference corpus
is found: :func:`~sfumato.verification.discovery.find_corpus_dir`) and the manifest's latent shift toward
the target; for a concept poison the concept judge on the protected file's AI view. A protection is never
called protected on the latent shift alone, nor when the judge still sees the artist or the concept.
``sfumato check`` goes further (every trainer view, attacks).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from sfumato.verification.verdicts import (
    combine_verdicts,
    concept_verdict,
    latent_verdict,
    make_verdict,
    style_verdict,
)

__all__ = ["check_verdict", "file_verdict", "image_verdict", "latent_toward", "style_judge_for", "verdict_resolution"]

_STYLE_JUDGES: dict[tuple[str, str], tuple[Any, str]] = {}
_CONCEPT_JUDGES: dict[str, Any] = {}


def latent_toward(manifest: dict[str, Any]) -> float | None:
    """The style cloak's share of the way to its target (smallest over encoders), from the manifest's
    ``latent`` entries (``taef2`` for a cloak, ``style/taef2`` for a joint protect)."""
    vals = [v.get("relative_reduction") for k, v in (manifest.get("latent") or {}).items()
            if isinstance(v, dict) and ("/" not in k or k.startswith("style/"))]
    vals = [float(v) for v in vals if v is not None and np.isfinite(v)]
    return min(vals) if vals else None


def verdict_resolution(manifest: dict[str, Any], default: int = 512) -> int:
    """The long side the protection was made for: the target's work size, else the config's effort."""
    target = manifest.get("target")
    for t in (target, (target or {}).get("style") if isinstance(target, dict) else None):
        if isinstance(t, dict) and isinstance(t.get("work_size"), list) and t["work_size"]:
            return int(max(t["work_size"]))
    eff = ((manifest.get("config") or {}).get("effort") or {}).get("resolution")
    return int(eff) if eff else default


def _target_style(manifest: dict[str, Any]) -> str | None:
    t = manifest.get("target")
    if isinstance(t, dict) and isinstance(t.get("style"), dict):
        t = t["style"]
    return t.get("style") if isinstance(t, dict) else None


def style_judge_for(corpus_dir: Any, models_dir: Any) -> tuple[Any, str] | tuple[None, str]:
    """The style judge (cached per process) and its name, or ``(None, why not)``."""
    import importlib.util

    from sfumato.verification.discovery import find_corpus_dir

    corpus = find_corpus_dir(corpus_dir, models_dir=models_dir)
    if corpus is None:
        return None, ("no style judge was found (run 'sfumato config set corpus_dir FOLDER' with reference "
                      "paintings, art128/ or art/<artist>/, to get one)")
    if importlib.util.find_spec("ai_edge_litert") is None or importlib.util.find_spec("scipy") is None:
        return None, "the style judge needs the 'judges' extra (pip install 'sfumato[judges]')"
    key = (str(corpus), str(models_dir))
    if key not in _STYLE_JUDGES:
        from sfumato.judges.concept import quiet_tflite
        from sfumato.verification.judging import default_style_judge

        notes: list[str] = []
        with quiet_tflite():
            judge = default_style_judge(corpus, models_dir, notes)
        name = "style judge" if (corpus / "art128").is_dir() else "style judge (5 painters, confounded by source)"
        _STYLE_JUDGES[key] = (judge, name)
    return _STYLE_JUDGES[key]


def _concept_judge(models_dir: Any) -> Any:
    key = str(models_dir)
    if key not in _CONCEPT_JUDGES:
        from sfumato.judges.concept import ConceptJudge

        _CONCEPT_JUDGES[key] = ConceptJudge(models_dir=models_dir)
    return _CONCEPT_JUDGES[key]


def _style_part(av_o: np.ndarray, av_p: np.ndarray, manifest: dict[str, Any], *,
                corpus_dir: Any, models_dir: Any, judges: bool, resolution: int) -> dict[str, Any]:
    toward, style = latent_toward(manifest), _target_style(manifest)
    if not judges:
        return latent_verdict(toward, style, why_no_judge="the judges were switched off")
    judge, name = style_judge_for(corpus_dir, models_dir)
    if judge is None:
        return latent_verdict(toward, style, why_no_judge=name)
    from sfumato.judges.concept import quiet_tflite

    with quiet_tflite():  # the judge's interpreter may be created on its first reading
        p = np.asarray(judge.predict_proba([av_o, av_p]), dtype=np.float64)
    artists = list(judge.artists)
    # the artist is the judge's reading of what a model sees of the original: the same kind of image as
    # the protected file's AI view, so the comparison is like for like
    k = int(np.argmax(p[0]))
    artist = artists[k]
    reading = {"view": f"AI view at {resolution} px", "p_original": float(p[0, k]), "p_protected": float(p[1, k]),
               "prediction": artists[int(np.argmax(p[1]))], "original_attributed": True}
    return style_verdict(artist=artist, p_reference=float(p[0, k]), readings=[reading], toward=toward,
                         target_style=style, judge=name,
                         scope=f"at the size it was made for ({resolution} px; 'sfumato check' tests every trainer "
                               "view)")


def _concept_part(av_p: np.ndarray, manifest: dict[str, Any], *, models_dir: Any, judges: bool) -> dict[str, Any]:
    concept, target = str(manifest.get("concept") or "?"), manifest.get("target")
    if isinstance(target, dict):
        target = target.get("concept")
    target = str(target or "?")
    if not judges:
        return make_verdict(None, "Cannot tell whether the poison took: the judges were switched off.",
                            concept=concept, target=target)
    import importlib.util

    if importlib.util.find_spec("ai_edge_litert") is None:
        return make_verdict(None, "Cannot tell whether the poison took: the concept judge needs the 'judges' extra.",
                            concept=concept, target=target)
    from sfumato.judges.concept import quiet_tflite

    with quiet_tflite():
        judge = _concept_judge(models_dir)
        probs = judge.probabilities([av_p])
    known = concept in judge.concepts and target in judge.concepts
    s = judge.scores([av_p], probs=probs)[0]
    scores = {c: float(v) for c, v in zip(judge.concepts, s, strict=True) if c in (concept, target)}
    return concept_verdict(concept=concept, target=target, scores=scores if known else None,
                           label=judge.classify([av_p], probs=probs)[0], known=known)


def image_verdict(original: np.ndarray, protected: np.ndarray, manifest: dict[str, Any], *,
                  models_dir: str | os.PathLike[str] | None = None, corpus_dir: str | os.PathLike[str] | None = None,
                  judges: bool = True, resolution: int | None = None,
                  ai_views: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """The verdict of a protected image (``HxWx3`` float arrays in [0, 1]) from its manifest's mode
    (``cloak``: style; ``poison``: concept; ``protect``: both); see the module doc. ``ai_views``: the
    (original, protected) AI views at ``resolution`` when the caller already has them (the preview shows
    them too): an AI view is a TAEF2 encode and decode, not free."""
    from sfumato.encoders.cache import cached_encoder
    from sfumato.encoders.views import ai_view

    mode = str(manifest.get("mode") or "cloak")
    res = int(resolution or verdict_resolution(manifest))
    ae = None if ai_views is not None else cached_encoder("taef2", models_dir)
    av_p = ai_views[1] if ai_views is not None else ai_view(protected, ae, resolution=res)
    parts: dict[str, dict[str, Any]] = {}
    if mode in ("cloak", "protect"):
        av_o = ai_views[0] if ai_views is not None else ai_view(original, ae, resolution=res)
        parts["style"] = _style_part(av_o, av_p, manifest, corpus_dir=corpus_dir, models_dir=models_dir,
                                     judges=judges, resolution=res)
    if mode in ("poison", "protect"):
        parts["concept"] = _concept_part(av_p, manifest, models_dir=models_dir, judges=judges)
    if len(parts) == 1:
        return next(iter(parts.values()))
    return combine_verdicts(parts)


def file_verdict(source: str | os.PathLike[str], output: str | os.PathLike[str], manifest: dict[str, Any], *,
                 manifest_path: str | os.PathLike[str] | None = None,
                 models_dir: str | os.PathLike[str] | None = None, corpus_dir: str | os.PathLike[str] | None = None,
                 judges: bool = True) -> dict[str, Any]:
    """The verdict of a written output (:func:`image_verdict` of the source and the file as saved), put
    into ``manifest["verdict"]`` and, with ``manifest_path``, into the manifest file (rewritten
    atomically). Never raises for the reading itself: a verdict that cannot be made says why
    (``protected`` None), since it is never a reason to lose a protected file."""
    from pathlib import Path

    try:
        import sfumato.io as sio

        v = image_verdict(sio.load_image(source).rgb, sio.load_image(output).rgb, manifest, models_dir=models_dir,
                          corpus_dir=corpus_dir, judges=judges)
    except Exception as e:  # noqa: BLE001 - a reading, never a failure of the image
        why = str(e).strip().splitlines()[0] if str(e).strip() else "an unexpected failure"
        v = make_verdict(None, f"No verdict: {why}.")
    manifest["verdict"] = v
    if manifest_path is not None:
        from sfumato.io.atomic import write_json_atomic

        write_json_atomic(Path(manifest_path), manifest, overwrite=True)
    return v


def check_verdict(*, judges: dict[str, Any], views: dict[str, Any] | None, latent: dict[str, Any],
                  measure: str, base_ok: bool, manifest: dict[str, Any] | None, notes: list[str]) -> dict[str, Any]:
    """The verdict of ``sfumato check``, from what it measured: the style judge on the AI view at the work
    size and at every trainer view (and the crop judge's views), else the latent shift alone; for a poison
    (the manifest's mode), the concept judge on the protected file's AI view."""
    m = manifest or {}
    mode = str(m.get("mode") or "cloak")
    parts: dict[str, dict[str, Any]] = {}
    if mode in ("cloak", "protect"):
        parts["style"] = _check_style(judges, views, latent, measure, base_ok, m, notes)
    if mode in ("poison", "protect"):
        c = (judges.get("concept") or {}).get("ai_view_protected")
        concept, target = str(m.get("concept") or "?"), m.get("target")
        target = str((target.get("concept") if isinstance(target, dict) else target) or "?")
        if c is None:
            parts["concept"] = make_verdict(None, "Cannot tell whether the poison took: the concept judge did not run.",
                                            concept=concept, target=target)
        else:
            top = {str(k): float(v) for k, v in c.get("top", [])}
            parts["concept"] = concept_verdict(concept=concept, target=target,
                                               scores={k: top.get(k, 0.0) for k in (concept, target)},
                                               label=c.get("label"))
    if len(parts) == 1:
        return next(iter(parts.values()))
    return combine_verdicts(parts)


def _check_style(judges: dict[str, Any], views: dict[str, Any] | None, latent: dict[str, Any], measure: str,
                 base_ok: bool, m: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    style = _target_style(m)
    worst = ((views or {}).get("worst") or {}).get("view") or {}
    toward = worst.get("toward") if worst.get("measure") == "toward" else None
    if toward is None:
        vals = [v.get("relative_reduction") for v in latent.values() if isinstance(v, dict)]
        vals = [float(v) for v in vals if v is not None and np.isfinite(v)]
        toward = min(vals) if vals else None
    js = judges.get("style")
    if measure == "none" and not js:
        return make_verdict(None, "Cannot tell: without the original (--original) neither the latent shift nor the "
                                  "judges can be compared.")
    if not js or "ai_view_original" not in js:
        why = next((n.split(": ", 1)[1].rstrip(".") for n in notes if n.startswith("Style judge skipped")),
                   "no style judge ran")
        if js and "ai_view_original" not in js:
            why = "the style judge needs the original (--original) to compare with"
        if measure == "shift" and toward is None:
            return make_verdict(None, f"Cannot tell: the image has no target style to measure against and {why}.")
        return latent_verdict(toward, style, why_no_judge=why)
    artist = js["reference_artist"]
    readings = [{"view": "work size", "p_original": js["ai_view_original"]["p_artist"],
                 "p_protected": js["ai_view_protected"]["p_artist"],
                 "prediction": js["ai_view_protected"]["prediction"],
                 "original_attributed": js["ai_view_original"]["prediction"] == artist}]
    for r in (views or {}).get("rows") or []:
        j = (r.get("judges") or {}).get("style")
        if j:
            readings.append({"view": f"{r['name']} ({r['size'][0]}x{r['size'][1]})", "p_original": j["p_original"],
                             "p_protected": j["p_protected"], "prediction": j["prediction"]})
    crop = judges.get("crop_style") or {}
    for r in crop.get("views") or []:
        readings.append({"view": f"{r['view']} ({r['size'][0]}x{r['size'][1]})", "judge": "crop judge",
                         "p_original": r["p_original"], "p_protected": r["p_artist"],
                         "prediction": r["prediction"] if r["prediction"] != crop.get("reference_artist") else artist})
    n = len(readings)
    scope = f"at every trainer view we tested ({n})" if n > 1 else "at the work size"
    return style_verdict(artist=artist, p_reference=js["ai_view_original"]["p_artist"], readings=readings,
                         scope=scope, toward=toward, target_style=style)
