"""Python API over files: cloak, poison or protect an image file, save it safely, measure the *saved* file,
write its manifest.

The budget is a contract on the file as written: a file is written only when, re-read from disk, it has
LPIPS ≤ p · (1 − :data:`~sfumato.optimise.calibrate.LPIPS_SAFETY_MARGIN`) and L∞ ≤ the cap; otherwise the
image fails with a one-line :class:`OverBudget` error and nothing is written. Each candidate is first
written to a temporary folder, re-read and measured, and only a passing one is written to the output
folder (atomically) and checked once more there.

Lossless outputs store exactly the pixels that calibration measured. Lossy ones (JPEG, AVIF) do not: the
codec is not idempotent, so writing the calibrated pixels encodes them a second time and moves LPIPS a
little (up to about 1 % on 64-128 px paintings at JPEG quality 98) and moves single pixels by several
levels (JPEG's block quantisation: 27-32/255 against a 24/255 cap before this check existed). They are
therefore calibrated against :data:`LOSSY_CALIBRATION_MARGIN` of the LPIPS ceiling; while a trial file is
over the LPIPS ceiling the perturbation is shrunk (:data:`LOSSY_SHRINK`), and while it is over the L∞ cap
the codec's excess is pushed back and the perturbation's own cap is tightened by the excess, at most
:data:`LOSSY_TRIES` times.

An image that could not be protected — calibration found no scale > 0 (the output would be the original),
or the saved perturbation spends under :data:`NEGLIGIBLE_LPIPS_SHARE` of the budget — fails with
:class:`NotProtected`; it is never written or reported as done.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sfumato._version import __version__
from sfumato.config import CloakConfig
from sfumato.io.atomic import sha256_bytes_of, write_json_atomic, write_png_atomic, write_text_atomic
from sfumato.io.outputs import (
    LOSSLESS_DEFAULTS,
    LOSSY_FORMATS,
    check_jpeg_quality,
    make_quantiser,
    manifest_path_for,
)
from sfumato.optimise.calibrate import LPIPS_SAFETY_MARGIN, lpips_ceiling
from sfumato.preview import PreviewResult as PreviewResult  # re-exported: the API's preview
from sfumato.preview import preview as preview
from sfumato.preview import preview_config as preview_config
from sfumato.preview import preview_downscale as preview_downscale
from sfumato.protections.device import DeviceUnavailable as DeviceUnavailable  # re-exported: the API's error
from sfumato.protections.device import resolve_device

#: Lossy outputs are calibrated against this share of the LPIPS ceiling (see the module docstring).
LOSSY_CALIBRATION_MARGIN = 0.97
#: Each retry scales the perturbation of a file that is still over the LPIPS ceiling by this factor...
LOSSY_SHRINK = 0.9
#: ...at most this many times before the image fails (the same count bounds the L∞ retries).
LOSSY_TRIES = 6
#: Rounds of pushing a codec's L∞ excess back into its input, per trial file.
PUSHBACK_ROUNDS = 3
#: A saved perturbation whose LPIPS is below this share of the budget protects nothing: the image fails
#: with :class:`NotProtected` (a scale-0 calibration gives LPIPS 0; greyscale art projected after a colour
#: optimisation gave 0.7 % of the colour latent shift).
NEGLIGIBLE_LPIPS_SHARE = 0.02


class OverBudget(ValueError):
    """The saved file would break the budget (LPIPS over the ceiling or L∞ over the cap); nothing was
    written."""


class NotProtected(ValueError):
    """The image could not be protected within the budget (no perturbation survived calibration, or a
    negligible one); nothing was written."""


@dataclass
class FileResult:
    source: Path
    output: Path
    manifest_path: Path
    manifest: dict[str, Any]
    extra_outputs: list[Path] = field(default_factory=list)


def cloak(image: Any, config: CloakConfig | None = None, *, models_dir=None, device: Any = None,  # noqa: ANN001
          **kw: Any):  # noqa: ANN201
    """Cloak an image given as an HxWx3 float array in [0, 1], an :class:`sfumato.io.ArtImage` or a path.
    Returns a :class:`sfumato.cloak.CloakResult` (nothing is written). ``device``: ``"auto"``, ``"cpu"``,
    ``"cuda"``/``"cuda:N"`` or a ``torch.device`` (default ``$SFUMATO_DEVICE``, else the CPU; see
    :func:`resolve_device`)."""
    import sfumato.io as sio
    from sfumato.protections.cloak import cloak_array

    device = resolve_device(device)  # a bad or missing device fails before the image is read

    if isinstance(image, (str, os.PathLike)):
        image = sio.load_image(image)
    rgb = image.rgb if hasattr(image, "rgb") else np.asarray(image, dtype=np.float32)
    return cloak_array(rgb, config, models_dir=models_dir, device=device, **kw)




def _with_lpips(config: Any, share: float) -> Any:
    return dataclasses.replace(config, budget=dataclasses.replace(config.budget, lpips=config.budget.lpips * share))


@dataclass
class _Saved:
    path: Path
    image: Any
    achieved: dict[str, float]
    shrink: float
    linf_cap: float  # the cap the perturbation written was clipped to (≤ the budget's; lower after codec excess)


def _fails(achieved: dict[str, float], budget: Any) -> str | None:
    """Why ``achieved`` breaks the budget's contract (None when it holds)."""
    lp, ceiling = achieved[f"lpips_{budget.lpips_net}"], lpips_ceiling(budget.lpips)
    why = []
    if lp > ceiling:
        why.append(f"LPIPS {lp:.4f} > {ceiling:.4f} (budget {budget.lpips} less the {LPIPS_SAFETY_MARGIN:.0%} "
                   "safety margin)")
    if achieved["linf"] > budget.linf + 1e-6:
        why.append(f"L∞ {achieved['linf'] * 255:.1f}/255 > cap {budget.linf * 255:.1f}/255")
    return " and ".join(why) or None


def _save_within_budget(img: Any, rgb: np.ndarray, out_path: Path, *, fmt: str, budget: Any, models_dir: Any,
                        device: Any = None, **save_kw: Any) -> _Saved:
    """Write ``rgb`` to ``out_path`` only if the file, re-read, keeps the budget's contract (see the module
    docstring); :class:`OverBudget` when no candidate does (nothing written, an existing file untouched),
    :class:`NotProtected` when the passing file's perturbation is negligible."""
    import sfumato.io as sio
    from sfumato.metrics.saved import protected_quality

    ref = img.rgb
    delta = rgb.astype(np.float32) - ref
    key = f"lpips_{budget.lpips_net}"
    lossy = fmt in LOSSY_FORMATS

    def measure(pixels: np.ndarray) -> dict[str, float]:
        return protected_quality(pixels, ref, lpips_net=budget.lpips_net, models_dir=models_dir, device=device)

    shrink, cap = 1.0, float(budget.linf)
    found: tuple[np.ndarray, np.ndarray, dict[str, float]] | None = None
    why = ""
    with tempfile.TemporaryDirectory(prefix="sfumato-save-") as d:
        def trial(cand: np.ndarray, k: int) -> np.ndarray:
            p = sio.save_image(img, cand, Path(d) / f"t{k}{sio.output_suffix(fmt)}", format=fmt,
                               **{**save_kw, "overwrite": True})
            return sio.load_image(p).rgb

        for _ in range(LOSSY_TRIES + 1):
            cand = np.clip(ref + np.clip(delta * shrink, -cap, cap), 0, 1).astype(np.float32)
            pixels = trial(cand, 0)
            for r in range(PUSHBACK_ROUNDS if lossy else 0):  # push a codec's L∞ excess back into its input
                e = pixels - ref
                excess = e - np.clip(e, -budget.linf, budget.linf)
                if not np.any(excess):
                    break
                cand = np.clip(cand - excess, 0, 1).astype(np.float32)
                pixels = trial(cand, r + 1)
            achieved = measure(pixels)
            why = _fails(achieved, budget) or ""
            if not why:
                found = (cand, pixels, achieved)
                break
            if achieved[key] > lpips_ceiling(budget.lpips):
                shrink *= LOSSY_SHRINK
            if achieved["linf"] > budget.linf + 1e-6:  # tighten the perturbation's own cap by the excess
                cap = max(0.0, min(cap, float(np.abs(cand - ref).max())) - (achieved["linf"] - budget.linf) - 0.5 / 255)
    if found is None:
        raise OverBudget(f"the saved {fmt} file would break the budget: {why}, even after {LOSSY_TRIES} "
                         "smaller tries; nothing written — save as PNG, or raise --lpips / --linf")
    cand, pixels, achieved = found
    _refuse_negligible(achieved, budget)
    final = sio.save_image(img, cand, out_path, format=fmt, **save_kw)
    saved = sio.load_image(final)  # the truth is the file on disk: re-read it
    if not np.array_equal(saved.rgb, pixels):  # the codec gave other pixels than on trial: measure again
        achieved = measure(saved.rgb)
        why = _fails(achieved, budget) or ""
        if why:
            final.unlink()
            raise OverBudget(f"the written {fmt} file broke the budget ({why}) although its trial "
                             "passed; removed it, nothing written — save as PNG")
    return _Saved(final, saved, achieved, shrink, cap)


def _refuse_negligible(achieved: dict[str, float], budget: Any) -> None:
    lp = achieved[f"lpips_{budget.lpips_net}"]
    if lp < NEGLIGIBLE_LPIPS_SHARE * budget.lpips:
        raise NotProtected(f"not protected: the perturbation that fits the budget is negligible (LPIPS "
                           f"{lp:.4f}, under {NEGLIGIBLE_LPIPS_SHARE:.0%} of {budget.lpips}); nothing written — "
                           "try more --steps or a higher --lpips")


def _process_file(src: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, mode: str, config: Any,
                  compute: Callable[[Any, Callable[[np.ndarray], np.ndarray], Any], Any],
                  output_format: str | None, jpeg_quality: int, overwrite: bool, ai_view: bool, models_dir: Any,
                  xmp: bytes | Callable[[bytes | None], bytes] | None, rel_stem: str | None,
                  extra: Callable[[Any, Any, Any, Path, str], dict[str, Any]] | None = None,
                  device: Any = None) -> FileResult:
    """Load → compute (with the output codec's quantiser) → save atomically → re-read the saved file and
    measure it → manifest. Shared by cloak, poison and protect. ``compute(img, quantise, config)`` gets the
    config to calibrate against (a lossy output's has the margin taken off its LPIPS budget); it computes
    on ``device`` (resolved by the caller, :func:`resolve_device`), which the saved file is measured on too.
    The pixels come back to the CPU before anything is saved."""
    import sfumato.io as sio
    from sfumato.encoders.cache import load_encoders
    from sfumato.encoders.views import ai_view as render_ai_view

    check_jpeg_quality(jpeg_quality)
    dev = resolve_device(device)
    t0 = time.perf_counter()
    src = Path(src)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    img = sio.load_image(src)
    fmt = (output_format or LOSSLESS_DEFAULTS.get(img.format) or sio.default_output_format(img.format)).upper()
    stem = rel_stem or src.stem
    out_path = out_dir / f"{stem}{sio.output_suffix(fmt)}"
    man_path = manifest_path_for(out_dir, stem)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if not overwrite:
        for p in (out_path, man_path):
            if p.exists():
                raise FileExistsError(f"{p} already exists; use --overwrite to replace it or --resume to skip done images")
    budget = config.budget
    if callable(xmp):  # rights options: merge the reservation into the source's own XMP
        xmp = xmp(img.xmp)
    quantise = make_quantiser(img, fmt, jpeg_quality=jpeg_quality, linf=budget.linf)
    lossy = fmt in LOSSY_FORMATS
    res = compute(img, quantise, _with_lpips(config, LOSSY_CALIBRATION_MARGIN) if lossy else config)
    if not res.scale > 0:  # calibration kept nothing: the output would be the original
        raise NotProtected(f"not protected: no perturbation fits the budget (LPIPS {budget.lpips}, "
                           f"L∞ {budget.linf * 255:.0f}/255) after calibration; nothing written — "
                           "raise --lpips, or try more --steps")
    out = _save_within_budget(img, res.image, out_path, fmt=fmt, budget=budget, models_dir=models_dir,
                              device=dev, jpeg_quality=jpeg_quality, overwrite=overwrite, xmp=xmp)
    final, saved, achieved = out.path, out.image, out.achieved
    extra_files: list[Path] = []
    if ai_view:
        enc = next((e.to(dev) for e, _ in load_encoders(config, models_dir=models_dir) if e.has_decoder), None)
        if enc is not None:
            for tag, arr in (("before", img.rgb), ("after", saved.rgb)):
                p = out_dir / f"{stem}.ai_view.{tag}.png"
                write_png_atomic(p, render_ai_view(arr, enc, resolution=config.effort.resolution))
                extra_files.append(p)
    optimisation: dict[str, Any] = {"steps_run": res.steps_run, "scale": res.scale, "device": dev.type}
    optimisation["calibrated_lpips"] = lpips_ceiling(budget.lpips) * (LOSSY_CALIBRATION_MARGIN if lossy else 1)
    if out.shrink < 1 or out.linf_cap < budget.linf:
        optimisation.update(save_shrink=out.shrink, save_linf_cap=out.linf_cap)
    elif lossy:
        optimisation["save_shrink"] = out.shrink
    manifest: dict[str, Any] = {
        "sfumato_version": __version__,
        "mode": mode,
        "source": {"file": src.name, "sha256": sha256_bytes_of(src), "format": img.format,
                   "size": list(img.size), "bit_depth": img.bit_depth, "mode": img.mode},
        "output": {"file": final.name, "format": fmt, "bit_depth": sio.output_bit_depth(img, fmt),
                   "jpeg_quality": jpeg_quality if fmt == "JPEG" else None, "sha256": sha256_bytes_of(final)},
        "encoders": [_encoder_entry(spec, w, models_dir) for spec, w in config.encoders],
        "seed": config.seed,
        "budget": {"lpips": budget.lpips, "lpips_net": budget.lpips_net, "linf": budget.linf,
                   "lpips_safety_margin": LPIPS_SAFETY_MARGIN, "lpips_ceiling": lpips_ceiling(budget.lpips)},
        "achieved": achieved,
        "within_budget": _fails(achieved, budget) is None,  # always true: a file that breaks it is not written
        "latent": {(f"{d['target']}/" if "target" in d else "") + d["encoder"]:
                   {k: v for k, v in d.items() if k not in ("encoder", "target")} for d in res.latent},
        "optimisation": optimisation,
    }
    if extra is not None:
        manifest.update(extra(img, saved, res, out_dir, stem))
    manifest["timing_s"] = {**res.timing_s, "file_total": round(time.perf_counter() - t0, 3)}
    manifest["config"] = config.to_dict()
    write_json_atomic(man_path, manifest, overwrite=True)
    return FileResult(src, final, man_path, manifest, extra_files + manifest.pop("_files", []))


def rights_xmp(rights: Any) -> Callable[[bytes | None], bytes]:
    """An ``xmp=`` value that merges the IPTC/XMP "do not train" reservation of ``rights``
    (:class:`sfumato.optout.xmp.RightsOptions`) into each source image's existing XMP."""
    from sfumato.optout.xmp import build_xmp

    return lambda existing: build_xmp(existing, rights)


def cloak_file(src: str | os.PathLike[str], out_dir: str | os.PathLike[str], config: CloakConfig | None = None, *,
               output_format: str | None = None, jpeg_quality: int = 98, overwrite: bool = False,
               ai_view: bool = False, models_dir=None, xmp: bytes | None = None,  # noqa: ANN001
               rel_stem: str | None = None, progress: Callable[[int, int], None] | None = None,
               device: Any = None) -> FileResult:
    """Cloak one image file into ``out_dir``: the protected file (same format by default, atomic write,
    metadata/alpha/bit depth kept) and ``<stem>.sfumato.json``. Budget figures are measured on the file
    as saved (re-read from disk). ``config`` defaults to ``CloakConfig()`` (the default preset).
    ``device``: where to compute (``"auto"``, ``"cpu"``, ``"cuda[:N]"``, a ``torch.device``; default
    ``$SFUMATO_DEVICE``, else the CPU — :func:`resolve_device`)."""
    from sfumato.protections.cloak import cloak_array

    config = config or CloakConfig()
    dev = resolve_device(device)  # a bad or missing device fails before the file is read

    def compute(img, quantise, cfg):  # noqa: ANN001, ANN202
        return cloak_array(img.rgb, cfg, quantise=quantise, models_dir=models_dir, progress=progress, device=dev)

    return _process_file(src, out_dir, mode="cloak", config=config, compute=compute, output_format=output_format,
                         jpeg_quality=jpeg_quality, overwrite=overwrite, ai_view=ai_view, models_dir=models_dir,
                         xmp=xmp, rel_stem=rel_stem, extra=lambda img, saved, res, od, stem: {"target": res.target},
                         device=dev)


class NotACandidate(ValueError):
    """The image does not clearly show the concept to poison (skipped unless forced)."""


def concept_report(original: np.ndarray, saved: np.ndarray, *, concept: str, target: str,
                   models_dir=None, resolution: int = 512) -> dict[str, Any]:  # noqa: ANN001
    """Stealth and effect of a poison, judged independently (MobileNetV2, never in the loss): do the saved
    pixels still show C (top-5)? does the AI view (TAEF2 decode of the latent) show A (top-5)?"""
    from sfumato.encoders.cache import cached_encoder
    from sfumato.encoders.views import ai_view as render_ai_view

    judge = _concept_judge(models_dir)
    enc = cached_encoder("taef2", models_dir)
    views = [render_ai_view(a, enc, resolution=resolution) for a in (original, saved)]
    imgs = [original, saved, *views]
    out: dict[str, Any] = {"judge": "MobileNetV2 ImageNet (int8 TFLite), concept = group of classes, top-5",
                           "ai_view_encoder": enc.id}
    for c in (concept, target):
        if c not in judge.concepts:
            out[f"note_{c}"] = f"concept {c!r} has no ImageNet class group; not judged"
    for c, name in ((concept, "concept"), (target, "target")):
        if c in judge.concepts:
            hits = judge.top_k_hits(imgs, c, k=5)
            out[f"pixels_show_{name}"] = {"before": bool(hits[0]), "after": bool(hits[1])}
            out[f"ai_view_shows_{name}"] = {"before": bool(hits[2]), "after": bool(hits[3])}
    out["ai_view_class_after"] = judge.classify([views[1]])[0]
    return out


_JUDGES: dict[str, Any] = {}


def _concept_judge(models_dir):  # noqa: ANN001, ANN202
    from sfumato.judges.concept import ConceptJudge

    key = str(models_dir)
    if key not in _JUDGES:
        _JUDGES[key] = ConceptJudge(models_dir=models_dir)
    return _JUDGES[key]


def check_candidate(src: str | os.PathLike[str], concept: str, scorer: Any, *, force: bool) -> dict[str, Any]:
    """Nightshade's candidate selection: does the image clearly show ``concept``? Raises
    :class:`NotACandidate` when not (unless ``force``); returns the manifest entry."""
    import sfumato.io as sio

    if scorer is None:
        return {"checked": False}
    rgb = sio.load_image(src).rgb
    score = float(scorer.score([rgb], concept)[0])
    shows = bool(scorer.shows([rgb], concept)[0])
    if not shows and not force:
        raise NotACandidate(f"does not clearly show {concept!r} ({scorer.name} score {score:.3f}); "
                            "skipped — pass --force to use it anyway")
    return {"checked": True, "scorer": scorer.describe(), "score": score, "shows_concept": shows,
            "forced": bool(force and not shows)}


def _concept_file(src: str | os.PathLike[str], out_dir: str | os.PathLike[str], config: Any, anchors: Any, *,
                  mode: str, array_fn: Callable[..., Any], target_of: Callable[[Any], Any], scorer: Any,
                  force: bool, caption: bool, judge: bool, models_dir: Any,
                  progress: Callable[[int, int], None] | None, device: Any = None, **file_kw: Any) -> FileResult:
    """Poison or protect one file: candidate check, ``array_fn`` (``poison_array`` or ``protect_array``)
    on the pixels with the anchors, then the manifest entries shared by both: concept, target
    (``target_of(result)``), anchor, candidate, caption file, judged effect."""
    from sfumato.protections.poison import caption_for

    dev = resolve_device(device)  # a bad or missing device fails before the file is read
    candidate = check_candidate(src, config.concept, scorer, force=force)

    def compute(img, quantise, cfg):  # noqa: ANN001, ANN202
        return array_fn(img.rgb, cfg, anchors.images, anchor_names=anchors.names, quantise=quantise,
                        models_dir=models_dir, progress=progress, device=dev)

    def extra(img, saved, res, od, stem):  # noqa: ANN001, ANN202
        e: dict[str, Any] = {"concept": config.concept, "target": target_of(res),
                             "anchor": {**res.anchor, "source": anchors.source}, "candidate": candidate}
        if caption:
            text = caption_for(config.concept, seed=config.seed)
            cp = od / f"{stem}.txt"
            write_text_atomic(cp, text + "\n")
            e["caption"] = {"file": cp.name, "text": text}
            e["_files"] = [cp]
        if judge:
            e["judged"] = concept_report(img.rgb, saved.rgb, concept=config.concept, target=config.target,
                                         models_dir=models_dir, resolution=config.effort.resolution)
        return e

    return _process_file(src, out_dir, mode=mode, config=config, compute=compute, models_dir=models_dir,
                         extra=extra, device=dev, **file_kw)


def poison_file(src: str | os.PathLike[str], out_dir: str | os.PathLike[str], config: Any, anchors: Any, *,
                scorer: Any = None, force: bool = False, caption: bool = True, output_format: str | None = None,
                jpeg_quality: int = 98, overwrite: bool = False, ai_view: bool = False, models_dir=None,  # noqa: ANN001
                xmp: bytes | None = None, rel_stem: str | None = None, judge: bool = True,
                progress: Callable[[int, int], None] | None = None, device: Any = None) -> FileResult:
    """Poison one image of ``config.concept`` toward ``config.target`` using ``anchors`` (an
    :class:`sfumato.targets.anchors.AnchorSet`); writes the image, ``<stem>.txt`` (a caption naming C) and
    the manifest with stealth/effect figures. Raises :class:`NotACandidate` when the scorer says the image
    does not clearly show C (unless ``force``). See :mod:`sfumato.plans` for configs, anchors and mapping
    files."""
    from sfumato.protections.poison import poison_array

    return _concept_file(src, out_dir, config, anchors, mode="poison", array_fn=poison_array,
                         target_of=lambda res: config.target, scorer=scorer, force=force, caption=caption, judge=judge,
                         models_dir=models_dir, progress=progress, output_format=output_format,
                         jpeg_quality=jpeg_quality, overwrite=overwrite, ai_view=ai_view, xmp=xmp,
                         rel_stem=rel_stem, device=device)


def protect_file(src: str | os.PathLike[str], out_dir: str | os.PathLike[str], config: Any, anchors: Any, *,
                 scorer: Any = None, force: bool = False, caption: bool = True, output_format: str | None = None,
                 jpeg_quality: int = 98, overwrite: bool = False, ai_view: bool = False, models_dir=None,  # noqa: ANN001
                 xmp: bytes | None = None, rel_stem: str | None = None, judge: bool = True,
                 progress: Callable[[int, int], None] | None = None, device: Any = None) -> FileResult:
    """Cloak and poison one image jointly (one optimisation under one budget); outputs as
    :func:`poison_file` plus the style target."""
    from sfumato.protections.protect import protect_array

    return _concept_file(src, out_dir, config, anchors, mode="protect", array_fn=protect_array,
                         target_of=lambda res: {"style": res.target, "concept": config.target},
                         scorer=scorer, force=force, caption=caption, judge=judge,
                         models_dir=models_dir, progress=progress, output_format=output_format,
                         jpeg_quality=jpeg_quality, overwrite=overwrite, ai_view=ai_view, xmp=xmp,
                         rel_stem=rel_stem, device=device)


def _encoder_entry(spec: str, weight: float, models_dir) -> dict[str, Any]:  # noqa: ANN001
    from sfumato.encoders.cache import cached_encoder

    e = cached_encoder(spec, models_dir)
    return {"id": e.id, "weight": weight, "weights_sha256": dict(e.weights_sha256)}


def lab_style(root: Any, *, artist: str, protected: Any, **kw: Any) -> Any:
    """The mimicry lab's style experiment (:func:`sfumato.lab.style.style_lab`, same arguments): train a
    small generator on the clean dataset and on each protected variant, and judge how much of ``artist``'s
    style it learnt. Returns a :class:`sfumato.lab.result.LabResult` (write it with
    :func:`sfumato.lab.report.write_report`)."""
    from sfumato.lab.style import style_lab

    return style_lab(root, artist=artist, protected=protected, **kw)


def lab_poison(root: Any, *, concept: str, target: str, poisoned: Any, **kw: Any) -> Any:
    """The mimicry lab's concept experiment (:func:`sfumato.lab.concept.concept_lab`, same arguments):
    train with the first N files of ``concept`` replaced by their poisoned versions, and judge whether the
    generator draws ``target`` instead. Returns a :class:`sfumato.lab.result.LabResult`."""
    from sfumato.lab.concept import concept_lab

    return concept_lab(root, concept=concept, target=target, poisoned=poisoned, **kw)
