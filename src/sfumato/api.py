"""Python API over files: cloak, poison or protect an image file, save it safely, measure the *saved* file,
write its manifest.

The budget holds on the file as written. Lossless outputs store exactly the pixels that calibration
measured. Lossy ones (JPEG, AVIF) do not: the codec is not idempotent, so writing the calibrated pixels
encodes them a second time and moves LPIPS a little (up to about 1 % on 64-128 px paintings at JPEG
quality 98). They are therefore calibrated against :data:`LOSSY_CALIBRATION_MARGIN` of the LPIPS budget,
and the file a result would become is written to a temporary folder and measured first; while it is
over the budget the perturbation is shrunk, and when it cannot be brought under, the image fails with a
one-line :class:`OverBudget` error and nothing is written.
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

#: Lossy outputs are calibrated against this share of the LPIPS budget (see the module docstring).
LOSSY_CALIBRATION_MARGIN = 0.97
#: Each retry scales the perturbation of a lossy output that is still over budget by this factor...
LOSSY_SHRINK = 0.9
#: ...at most this many times before the image fails.
LOSSY_TRIES = 6


class OverBudget(ValueError):
    """The saved file would exceed the LPIPS budget (a lossy codec's error); nothing was written."""


@dataclass
class FileResult:
    source: Path
    output: Path
    manifest_path: Path
    manifest: dict[str, Any]
    extra_outputs: list[Path] = field(default_factory=list)


def cloak(image: Any, config: CloakConfig | None = None, *, models_dir=None, **kw: Any):  # noqa: ANN001, ANN201
    """Cloak an image given as an HxWx3 float array in [0, 1], an :class:`sfumato.io.ArtImage` or a path.
    Returns a :class:`sfumato.cloak.CloakResult` (nothing is written)."""
    import sfumato.io as sio
    from sfumato.protections.cloak import cloak_array

    if isinstance(image, (str, os.PathLike)):
        image = sio.load_image(image)
    rgb = image.rgb if hasattr(image, "rgb") else np.asarray(image, dtype=np.float32)
    return cloak_array(rgb, config, models_dir=models_dir, **kw)


def _with_lpips(config: Any, share: float) -> Any:
    return dataclasses.replace(config, budget=dataclasses.replace(config.budget, lpips=config.budget.lpips * share))


@dataclass
class _Saved:
    path: Path
    image: Any
    achieved: dict[str, float]
    shrink: float


def _save_within_budget(img: Any, rgb: np.ndarray, out_path: Path, *, fmt: str, budget: Any, models_dir: Any,
                        **save_kw: Any) -> _Saved:
    """Write ``rgb`` to ``out_path``, re-read the file and measure it. A lossy format is first written to a
    temporary folder and measured, shrinking the perturbation while the file would be over the LPIPS
    budget; :class:`OverBudget` when it stays over (nothing written)."""
    import sfumato.io as sio
    from sfumato.metrics.saved import protected_quality

    key = f"lpips_{budget.lpips_net}"

    def measure(pixels: np.ndarray) -> dict[str, float]:
        return protected_quality(pixels, img.rgb, lpips_net=budget.lpips_net, models_dir=models_dir)

    trial: tuple[np.ndarray, dict[str, float]] | None = None
    shrink = 1.0
    if fmt in LOSSY_FORMATS:
        with tempfile.TemporaryDirectory(prefix="sfumato-save-") as d:
            for i in range(LOSSY_TRIES + 1):
                shrink = LOSSY_SHRINK ** i
                cand = rgb if i == 0 else np.clip(img.rgb + (rgb - img.rgb) * shrink, 0, 1).astype(rgb.dtype)
                p = sio.save_image(img, cand, Path(d) / f"t{i}{sio.output_suffix(fmt)}", format=fmt, **save_kw)
                pixels = sio.load_image(p).rgb
                achieved = measure(pixels)
                if achieved[key] <= budget.lpips:
                    rgb, trial = cand, (pixels, achieved)
                    break
        if trial is None:
            raise OverBudget(f"{fmt} re-encoding keeps the image over the LPIPS budget {budget.lpips} "
                             f"({achieved[key]:.4f} after {LOSSY_TRIES} smaller tries); nothing written: "
                             "save as PNG or raise --lpips")
    final = sio.save_image(img, rgb, out_path, format=fmt, **save_kw)
    saved = sio.load_image(final)  # the truth is the file on disk: re-read and measure it
    if trial is not None and np.array_equal(saved.rgb, trial[0]):
        return _Saved(final, saved, trial[1], shrink)
    achieved = measure(saved.rgb)
    if trial is not None and achieved[key] > budget.lpips:  # the codec gave other pixels than on trial
        final.unlink()
        raise OverBudget(f"the written {fmt} file measured LPIPS {achieved[key]:.4f}, over the budget "
                         f"{budget.lpips}; removed it")
    return _Saved(final, saved, achieved, shrink)


def _process_file(src: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, mode: str, config: Any,
                  compute: Callable[[Any, Callable[[np.ndarray], np.ndarray], Any], Any],
                  output_format: str | None, jpeg_quality: int, overwrite: bool, ai_view: bool, models_dir: Any,
                  xmp: bytes | Callable[[bytes | None], bytes] | None, rel_stem: str | None,
                  extra: Callable[[Any, Any, Any, Path, str], dict[str, Any]] | None = None) -> FileResult:
    """Load → compute (with the output codec's quantiser) → save atomically → re-read the saved file and
    measure it → manifest. Shared by cloak, poison and protect. ``compute(img, quantise, config)`` gets the
    config to calibrate against (a lossy output's has the margin taken off its LPIPS budget)."""
    import sfumato.io as sio
    from sfumato.encoders.cache import load_encoders
    from sfumato.encoders.views import ai_view as render_ai_view

    check_jpeg_quality(jpeg_quality)
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
    out = _save_within_budget(img, res.image, out_path, fmt=fmt, budget=budget, models_dir=models_dir,
                              jpeg_quality=jpeg_quality, overwrite=overwrite, xmp=xmp)
    final, saved, achieved = out.path, out.image, out.achieved
    extra_files: list[Path] = []
    if ai_view:
        enc = next((e for e, _ in load_encoders(config, models_dir=models_dir) if e.has_decoder), None)
        if enc is not None:
            for tag, arr in (("before", img.rgb), ("after", saved.rgb)):
                p = out_dir / f"{stem}.ai_view.{tag}.png"
                write_png_atomic(p, render_ai_view(arr, enc, resolution=config.effort.resolution))
                extra_files.append(p)
    optimisation: dict[str, Any] = {"steps_run": res.steps_run, "scale": res.scale}
    if lossy:
        optimisation.update(calibrated_lpips=budget.lpips * LOSSY_CALIBRATION_MARGIN, save_shrink=out.shrink)
    manifest: dict[str, Any] = {
        "sfumato_version": __version__,
        "mode": mode,
        "source": {"file": src.name, "sha256": sha256_bytes_of(src), "format": img.format,
                   "size": list(img.size), "bit_depth": img.bit_depth, "mode": img.mode},
        "output": {"file": final.name, "format": fmt, "bit_depth": sio.output_bit_depth(img, fmt),
                   "jpeg_quality": jpeg_quality if fmt == "JPEG" else None, "sha256": sha256_bytes_of(final)},
        "encoders": [_encoder_entry(spec, w, models_dir) for spec, w in config.encoders],
        "seed": config.seed,
        "budget": {"lpips": budget.lpips, "lpips_net": budget.lpips_net, "linf": budget.linf},
        "achieved": achieved,
        "within_budget": bool(achieved[f"lpips_{budget.lpips_net}"] <= budget.lpips + 1e-6
                              and achieved["linf"] <= budget.linf + 1e-6),
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
               rel_stem: str | None = None, progress: Callable[[int, int], None] | None = None) -> FileResult:
    """Cloak one image file into ``out_dir``: the protected file (same format by default, atomic write,
    metadata/alpha/bit depth kept) and ``<stem>.sfumato.json``. Budget figures are measured on the file
    as saved (re-read from disk). ``config`` defaults to ``CloakConfig()`` (the default preset)."""
    from sfumato.protections.cloak import cloak_array

    config = config or CloakConfig()

    def compute(img, quantise, cfg):  # noqa: ANN001, ANN202
        return cloak_array(img.rgb, cfg, quantise=quantise, models_dir=models_dir, progress=progress)

    return _process_file(src, out_dir, mode="cloak", config=config, compute=compute, output_format=output_format,
                         jpeg_quality=jpeg_quality, overwrite=overwrite, ai_view=ai_view, models_dir=models_dir,
                         xmp=xmp, rel_stem=rel_stem, extra=lambda img, saved, res, od, stem: {"target": res.target})


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
                  progress: Callable[[int, int], None] | None, **file_kw: Any) -> FileResult:
    """Poison or protect one file: candidate check, ``array_fn`` (``poison_array`` or ``protect_array``)
    on the pixels with the anchors, then the manifest entries shared by both: concept, target
    (``target_of(result)``), anchor, candidate, caption file, judged effect."""
    from sfumato.protections.poison import caption_for

    candidate = check_candidate(src, config.concept, scorer, force=force)

    def compute(img, quantise, cfg):  # noqa: ANN001, ANN202
        return array_fn(img.rgb, cfg, anchors.images, anchor_names=anchors.names, quantise=quantise,
                        models_dir=models_dir, progress=progress)

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
                         extra=extra, **file_kw)


def poison_file(src: str | os.PathLike[str], out_dir: str | os.PathLike[str], config: Any, anchors: Any, *,
                scorer: Any = None, force: bool = False, caption: bool = True, output_format: str | None = None,
                jpeg_quality: int = 98, overwrite: bool = False, ai_view: bool = False, models_dir=None,  # noqa: ANN001
                xmp: bytes | None = None, rel_stem: str | None = None, judge: bool = True,
                progress: Callable[[int, int], None] | None = None) -> FileResult:
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
                         rel_stem=rel_stem)


def protect_file(src: str | os.PathLike[str], out_dir: str | os.PathLike[str], config: Any, anchors: Any, *,
                 scorer: Any = None, force: bool = False, caption: bool = True, output_format: str | None = None,
                 jpeg_quality: int = 98, overwrite: bool = False, ai_view: bool = False, models_dir=None,  # noqa: ANN001
                 xmp: bytes | None = None, rel_stem: str | None = None, judge: bool = True,
                 progress: Callable[[int, int], None] | None = None) -> FileResult:
    """Cloak and poison one image jointly (one optimisation under one budget); outputs as
    :func:`poison_file` plus the style target."""
    from sfumato.protections.protect import protect_array

    return _concept_file(src, out_dir, config, anchors, mode="protect", array_fn=protect_array,
                         target_of=lambda res: {"style": res.target, "concept": config.target},
                         scorer=scorer, force=force, caption=caption, judge=judge,
                         models_dir=models_dir, progress=progress, output_format=output_format,
                         jpeg_quality=jpeg_quality, overwrite=overwrite, ai_view=ai_view, xmp=xmp,
                         rel_stem=rel_stem)


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
