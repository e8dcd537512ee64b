"""Verification of a protected image: how much protection it carries and how much survives real attacks
(``sfumato check``).

What :func:`check` measures, at the encoder's working size (a cloak manifest's ``target.work_size``, else
long side ``config.effort.resolution`` from the manifest, else 512 px — the size the protection was
optimised for and a trainer resizes to):

* **quality** of the protected image against the original: LPIPS (AlexNet), PSNR, SSIM, L∞;
* **latent protection**, per encoder E. With a known target style (the manifest's), the target is
  re-rendered exactly as the style cloak did (:func:`sfumato.style_cloak.render_target` of the
  original at the working size, same style, strength and renderer) and, as in the manifest,
  ``relative_reduction = 1 − ‖E(x) − E(T)‖ / ‖E(original) − E(T)‖`` — the share of the way to the target
  the image's latent has moved. Always (with an original): the *shift away* ``‖E(x) − E(original)‖``;
* the **AI view** (TAEF2 decode of the latent) of the original and protected images;
* **independent judges** on the AI views (:mod:`sfumato.judges`): the style judge's probability for the
  artist the original is attributed to, and the concept judge's top concepts. They never took part in
  making the protection;
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
* **verdicts**: ``survives`` when ``retained`` >= 2/3, ``removed`` when < 1/3, else ``weakened``;
  **best-of-N**: the usable attack that leaves the least (usable: PSNR vs the protected image >= 25 dB
  or LPIPS vs the original <= 0.3, :func:`sfumato.attacks.is_usable`).

Without the original the latent protection cannot be measured (it needs the clean latent); the report
then holds the judges only and says so.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sfumato._version import __version__

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

SURVIVES_AT = 2 / 3
"""An attack leaves the protection *surviving* when at least this share of it is retained."""
REMOVED_BELOW = 1 / 3
"""... and *removes* it when less than this share is retained (in between: *weakened*)."""
MIN_PROTECTION = 0.02
"""Below this baseline (relative reduction, or shift relative to the clean latent's norm) there is no
protection worth testing; attack verdicts are then ``"no protection"``."""
DEFAULT_RESOLUTION = 512
THUMB_SIDE = 256
ATTACK_THUMB_SIDE = 192

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
"""What :func:`check` does not test, stated in every report."""


def verdict_for(retained: float | None) -> str:
    """``"survives"`` (>= 2/3), ``"weakened"``, ``"removed"`` (< 1/3) or ``"not measured"`` (None)."""
    if retained is None or not np.isfinite(retained):
        return "not measured"
    if retained >= SURVIVES_AT:
        return "survives"
    if retained >= REMOVED_BELOW:
        return "weakened"
    return "removed"


# ------------------------------------------------------------------------------------------- data model
@dataclass
class AttackResult:
    """One attack applied to the protected image and what was measured on the result."""

    name: str
    description: str
    params: dict[str, Any]
    seed: int | None
    seconds: float
    quality: dict[str, float | None]
    usable: bool
    latent: dict[str, dict[str, float | None]]
    retained: float | None
    verdict: str
    explanation: str
    judges: dict[str, Any] = field(default_factory=dict)
    images: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def to_dict(self, *, include_images: bool = False) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("name", "description", "params", "seed", "seconds", "quality", "usable",
                                           "latent", "retained", "verdict", "explanation", "judges")}
        if include_images:
            from sfumato.verification.report import encode_thumbnail

            d["images"] = {k: encode_thumbnail(v) for k, v in self.images.items()}
        return _jsonable(d)


@dataclass
class CheckReport:
    """Everything :func:`check` measured; :meth:`to_dict` is JSON-ready, :func:`sfumato.report.write_html`
    renders it. ``images`` holds small thumbnails (float arrays, <= 256 px) for the HTML report."""

    protected: dict[str, Any]
    original: dict[str, Any] | None
    manifest: dict[str, Any] | None
    settings: dict[str, Any]
    thresholds: dict[str, Any]
    quality: dict[str, float] | None
    target: dict[str, Any] | None
    latent: dict[str, dict[str, float | None]]
    protection_measure: str
    judges: dict[str, Any]
    attacks: list[AttackResult]
    best_of_n: dict[str, Any] | None
    summary: str
    not_tested: list[str]
    notes: list[str]
    seconds: float
    sfumato_version: str = __version__
    images: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def to_dict(self, *, include_images: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "sfumato_version": self.sfumato_version,
            "protected": self.protected,
            "original": self.original,
            "manifest": self.manifest,
            "settings": self.settings,
            "thresholds": self.thresholds,
            "quality": self.quality,
            "target": self.target,
            "latent": self.latent,
            "protection_measure": self.protection_measure,
            "judges": self.judges,
            "attacks": [a.to_dict(include_images=include_images) for a in self.attacks],
            "best_of_n": self.best_of_n,
            "summary": self.summary,
            "not_tested": self.not_tested,
            "notes": self.notes,
            "seconds": self.seconds,
        }
        if include_images:
            from sfumato.verification.report import encode_thumbnail

            d["images"] = {k: encode_thumbnail(v) for k, v in self.images.items()}
        return _jsonable(d)

    def to_json(self, *, include_images: bool = False) -> str:
        return json.dumps(self.to_dict(include_images=include_images), indent=2, ensure_ascii=False)

    def verdict_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for a in self.attacks:
            out[a.verdict] = out.get(a.verdict, 0) + 1
        return out


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return f if np.isfinite(f) else None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist())
    if isinstance(v, Path):
        return str(v)
    return v


# ---------------------------------------------------------------------------------------------- helpers
ImageInput = str | os.PathLike[str] | np.ndarray


def _load_rgb(x: ImageInput, what: str) -> tuple[np.ndarray, Path | None]:
    if isinstance(x, (str, os.PathLike)):
        from sfumato.io.image import load_image

        p = Path(x)
        return load_image(p).rgb, p
    a = np.asarray(x)
    if a.ndim != 3 or a.shape[2] != 3 or not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"{what}: give a file path or a float32 HxWx3 array in [0, 1], got {a.dtype} {a.shape}")
    if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
        raise ValueError(f"{what}: array values must lie in [0, 1]; divide 8-bit data by 255")
    return np.ascontiguousarray(a, dtype=np.float32), None


def find_manifest(protected: str | os.PathLike[str]) -> Path | None:
    """The ``<stem>.sfumato.json`` written beside a protected file by ``sfumato cloak``, if present."""
    p = Path(protected)
    m = p.with_name(f"{p.stem}.sfumato.json")
    return m if m.is_file() else None


def _attack_seed(seed: int, name: str) -> int:
    """A per-attack seed derived from the check seed and the attack's name (stable if the suite changes)."""
    ss = np.random.SeedSequence([int(seed), zlib.crc32(name.encode("utf-8"))])
    return int(ss.generate_state(1)[0] % (2**31 - 1))


def _thumb(rgb: np.ndarray, side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    s = side / max(h, w)
    if s >= 1:
        return np.ascontiguousarray(rgb, dtype=np.float32)
    from PIL import Image

    im = Image.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8))
    im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.LANCZOS)
    return np.asarray(im, dtype=np.float32) / 255.0


_ENCODERS: dict[tuple[str, str], Any] = {}


def _encoder(spec: str, models_dir: Any) -> Any:
    key = (spec, str(models_dir))
    if key not in _ENCODERS:
        from sfumato.encoders import load_encoder

        _ENCODERS[key] = load_encoder(spec, models_dir=models_dir)
    return _ENCODERS[key]


class _Views:
    """Encoder views (NCHW at the working size) and latents, the same way the style cloak measures."""

    def __init__(self, size: tuple[int, int], encoders: list[Any]) -> None:
        self.size = size
        self.encoders = encoders

    def view(self, rgb: np.ndarray):  # noqa: ANN201
        from sfumato.io.tensors import resize, to_nchw

        return resize(to_nchw(rgb), self.size).contiguous()

    def latents(self, x) -> dict[str, Any]:  # noqa: ANN001
        import torch

        with torch.no_grad():
            out = {}
            for e in self.encoders:
                dev = next(e.parameters()).device
                out[e.id] = e.encode(x.to(dev)).float().cpu()
            return out


def _dist(a, b) -> float:  # noqa: ANN001
    return float((a - b).flatten().norm())


def _judge_setup(judges: bool, style_judge: Any, concept_judge: Any, corpus_dir: Any, models_dir: Any,
                 notes: list[str]) -> tuple[Any, Any]:
    if not judges:
        notes.append("Judges were switched off (judges=False).")
        return None, None
    if importlib.util.find_spec("ai_edge_litert") is None:
        notes.append("Judges skipped: they need the 'judges' extra (pip install 'sfumato[judges]').")
        return None, None
    from sfumato.judges.concept import ConceptJudge
    from sfumato.judges.style import ENV_CORPUS_DIR, StyleJudge

    if style_judge is None:
        if corpus_dir is not None or os.environ.get(ENV_CORPUS_DIR):
            if importlib.util.find_spec("sklearn") is None:
                notes.append("Style judge skipped: training it needs scikit-learn (the 'judges' extra).")
            else:
                style_judge = StyleJudge.default(corpus_dir=corpus_dir, models_dir=models_dir)
        else:
            notes.append(f"Style judge skipped: no corpus of reference paintings (pass corpus_dir / --corpus-dir "
                         f"or set {ENV_CORPUS_DIR}).")
    elif isinstance(style_judge, (str, os.PathLike)):
        style_judge = StyleJudge.load(style_judge, models_dir=models_dir)
    if concept_judge is None:
        concept_judge = ConceptJudge(models_dir=models_dir)
    return style_judge, concept_judge


def _style_entry(judge: Any, img: np.ndarray, artist: str) -> dict[str, Any]:
    p = judge.predict_proba([img])[0]
    pred = judge.artists[int(np.argmax(p))]
    return {"prediction": pred, "still_attributed": pred == artist, "p_artist": float(p[judge.artists.index(artist)]),
            "proba": {a: float(v) for a, v in zip(judge.artists, p, strict=True)}}


def _concept_entry(judge: Any, img: np.ndarray, k: int = 3) -> dict[str, Any]:
    probs = judge.probabilities([img])
    s = judge.scores([img], probs=probs)[0]
    top = np.argsort(-s)[:k]
    labels = judge.model.labels
    return {"label": judge.classify([img], probs=probs)[0],
            "top": [[judge.concepts[int(i)], float(s[int(i)])] for i in top],
            "top_classes": [[labels[int(i)], float(probs[0, int(i)])] for i in np.argsort(-probs[0])[:k]]}


# ------------------------------------------------------------------------------------------------- check
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
    upscaler: Callable[[np.ndarray], np.ndarray] | None = None,
    progress: Callable[[str], None] | None = None,
) -> CheckReport:
    """Measure a protected image's protection and how much of it survives each attack (see module doc).

    ``protected``/``original``: file paths or float32 ``HxWx3`` arrays in [0, 1] of the same size.
    ``manifest``: the cloak manifest (dict or path); by default ``<stem>.sfumato.json`` beside a protected
    file is read when present. ``attacks``: ``"default"``, ``"all"``, or names/specs
    (:data:`sfumato.attacks.ATTACKS`). ``encoders``: encoder specs to measure (``load_encoder``).
    ``corpus_dir``: folder with ``art/<artist>/`` for the default style judge (or give ``style_judge``, a
    :class:`~sfumato.judges.StyleJudge` or a saved judge's path). ``upscaler``: passed to
    ``noisy-upscale``. ``progress(message)`` reports each step.
    """
    import torch

    from sfumato.attacks import align_reference, apply_attack, best_of_n, is_usable, resolve_attacks
    from sfumato.encoders.views import ai_view
    from sfumato.io.tensors import to_hwc, to_nchw, work_size
    from sfumato.metrics.quality import psnr
    from sfumato.metrics.saved import protected_quality

    t_start = time.perf_counter()
    say = progress or (lambda _m: None)
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not encoders:
        raise ValueError("encoders is empty: measure at least one, e.g. encoders=('taef2',)")
    specs = resolve_attacks(attacks)
    notes: list[str] = []

    # ---- inputs
    x_p, p_path = _load_rgb(protected, "protected")
    x_o, o_path = (None, None) if original is None else _load_rgb(original, "original")
    if x_o is not None and x_o.shape != x_p.shape:
        raise ValueError(f"original is {x_o.shape[1]}x{x_o.shape[0]} but protected is {x_p.shape[1]}x{x_p.shape[0]}; "
                         "give the exact original the protected file was made from")
    man_path: Path | None = None
    if manifest is None and p_path is not None:
        man_path = find_manifest(p_path)
    elif isinstance(manifest, (str, os.PathLike)):
        man_path = Path(manifest)
    if man_path is not None:
        manifest = json.loads(man_path.read_text(encoding="utf-8"))
    if manifest is not None and not isinstance(manifest, dict):
        raise ValueError(f"manifest must be a dict or the path of a .sfumato.json file, got {type(manifest).__name__}")
    mode = manifest.get("mode", "cloak") if manifest is not None else None
    conf = manifest.get("config") if manifest is not None and isinstance(manifest.get("config"), dict) else None
    resolution = int(((conf or {}).get("effort") or {}).get("resolution", DEFAULT_RESOLUTION))
    cfg = None
    if mode == "cloak" and conf is not None:
        from sfumato.config import CloakConfig

        cfg = CloakConfig.from_dict(conf)
    target_entry = manifest.get("target") if manifest is not None else None
    style_name = target_entry.get("style") if isinstance(target_entry, dict) else None
    if manifest is not None and mode != "cloak":
        notes.append(f"Manifest mode {mode!r}: only a style cloak's target is re-rendered here; the protection is "
                     "measured as the shift away from the original's latent.")
    h, w = x_p.shape[:2]
    size = work_size(h, w, resolution)
    recorded = target_entry.get("work_size") if isinstance(target_entry, dict) else None
    if mode == "cloak" and isinstance(recorded, list | tuple) and len(recorded) == 2:
        # the cloak's own working size (its anti-fingerprint jitter moves it off `resolution`); the target is
        # re-rendered and every latent measured there, or the measure aims at a differently drawn target
        rh, rw = int(recorded[0]), int(recorded[1])
        if rh >= 8 and rw >= 8 and abs(rh / rw - h / w) <= 0.02 * (h / w) and max(rh, rw) <= max(h, w):
            size = (rh, rw)
        else:
            notes.append(f"The manifest's working size {rw}x{rh} does not fit this {w}x{h} image; measuring at "
                         f"{size[1]}x{size[0]} instead, where the re-rendered target may differ from the cloak's.")

    # ---- models
    encs = [_encoder(s, models_dir) for s in encoders]
    ae = next((e for e in encs if e.has_decoder), None) or _encoder("taef2", models_dir)
    views = _Views(size, encs)
    images: dict[str, np.ndarray] = {"protected": _thumb(x_p, THUMB_SIDE)}

    # ---- quality
    quality = None
    if x_o is not None:
        say("quality")
        quality = protected_quality(x_p, x_o, models_dir=models_dir)
        images["original"] = _thumb(x_o, THUMB_SIDE)

    # ---- target (re-rendered as the cloak did)
    target_info: dict[str, Any] | None = None
    target_view = None
    if mode == "cloak" and style_name:
        if x_o is None:
            notes.append("The manifest names a target style, but without the original the target cannot be "
                         "re-rendered (it is the original rendered in that style).")
        elif cfg is None:
            notes.append("The manifest has no 'config'; the target cannot be re-rendered.")
        else:
            say("target")
            target_view, target_info = _render_target(manifest, cfg, x_o, size, models_dir, notes)
            if target_view is not None:
                images["target"] = _thumb(to_hwc(target_view), THUMB_SIDE)

    # ---- baseline latents
    v_p = views.view(x_p)
    z_p = views.latents(v_p)
    latent: dict[str, dict[str, float | None]] = {}
    z_o = z_t = None
    measure = "none"
    if x_o is not None:
        v_o = views.view(x_o)
        z_o = views.latents(v_o)
        z_t = views.latents(target_view) if target_view is not None else None
        measure = "target" if z_t is not None else "shift"
        for e in encs:
            shift = _dist(z_p[e.id], z_o[e.id])
            entry: dict[str, float | None] = {"shift_away": shift,
                                              "shift_away_relative": shift / max(float(z_o[e.id].norm()), 1e-12)}
            if z_t is not None:
                c2t = _dist(z_o[e.id], z_t[e.id])
                p2t = _dist(z_p[e.id], z_t[e.id])
                entry.update({"clean_to_target": c2t, "protected_to_target": p2t,
                              "relative_reduction": 1 - p2t / max(c2t, 1e-12)})
            recorded = ((manifest or {}).get("latent") or {}).get(e.id) or {}
            if "relative_reduction" in recorded:
                entry["manifest_relative_reduction"] = float(recorded["relative_reduction"])
            latent[e.id] = entry
    else:
        notes.append("No original given: latent protection (which needs the clean image's latent) is not "
                     "measured; only the judges' view of the AI views is reported. Pass original= / --original.")

    def baseline(eid: str) -> float | None:
        if measure == "target":
            return latent[eid]["relative_reduction"]
        if measure == "shift":
            return latent[eid]["shift_away_relative"]
        return None

    base_ok = measure != "none" and all((baseline(e.id) or 0.0) > MIN_PROTECTION for e in encs)
    if measure != "none" and not base_ok:
        notes.append(f"The protected image carries (almost) no latent protection (baseline <= {MIN_PROTECTION:.0%} "
                     "for at least one encoder); attack verdicts are 'no protection'.")

    # ---- AI views and judges
    say("AI views")
    av_p = ai_view(x_p, ae, resolution=resolution)
    images["ai_view_protected"] = _thumb(av_p, THUMB_SIDE)
    av_o = None
    if x_o is not None:
        av_o = ai_view(x_o, ae, resolution=resolution)
        images["ai_view_original"] = _thumb(av_o, THUMB_SIDE)
    say("judges")
    sj, cj = _judge_setup(judges, style_judge, concept_judge, corpus_dir, models_dir, notes)
    judge_info: dict[str, Any] = {"ai_view_encoder": ae.id}
    artist = None
    if sj is not None:
        ref_img, ref_from = (x_o, "original") if x_o is not None else (x_p, "protected")
        artist = sj.predict([ref_img])[0]
        judge_info["style"] = {"artists": list(sj.artists), "reference_artist": artist, "reference_from": ref_from,
                               "reference_image": _style_entry(sj, ref_img, artist),
                               "ai_view_protected": _style_entry(sj, av_p, artist)}
        if av_o is not None:
            judge_info["style"]["ai_view_original"] = _style_entry(sj, av_o, artist)
    if cj is not None:
        judge_info["concept"] = {"ai_view_protected": _concept_entry(cj, av_p)}
        if av_o is not None:
            judge_info["concept"]["ai_view_original"] = _concept_entry(cj, av_o)
            judge_info["concept"]["original"] = _concept_entry(cj, x_o)

    # ---- attacks
    from sfumato.metrics.lpips import load_lpips

    lp = load_lpips("alex", models_dir=models_dir)
    results: list[AttackResult] = []
    aligned_cache: dict[str, tuple[Any, Any, Any]] = {}
    for spec in specs:
        say(f"attack {spec.name}")
        t0 = time.perf_counter()
        a_seed = _attack_seed(seed, spec.name) if spec.random else None
        kw = {"seed": a_seed or 0, "autoencoder": ae, "upscaler": upscaler, "models_dir": models_dir}
        y = apply_attack(spec, x_p, **kw)
        # quality of the attacked image, against references of the same framing
        ref_p = align_reference(spec, x_p)
        with torch.no_grad():
            ty, tp = to_nchw(y), to_nchw(ref_p)
            psnr_v = float(psnr(ty, tp)[0])
            lp_v = None
            if x_o is not None:
                lp_v = float(lp(ty, to_nchw(align_reference(spec, x_o)))[0])
        q = {"psnr_vs_protected": psnr_v, "lpips_vs_original": lp_v}
        usable = is_usable(psnr_v, lp_v)
        # latent measures
        lat: dict[str, dict[str, float | None]] = {}
        retained: float | None = None
        if measure != "none":
            assert z_o is not None
            if spec.geometric:  # references reframed the same way as the attacked image
                if spec.name not in aligned_cache:
                    if measure == "target":
                        zo_a = views.latents(views.view(align_reference(spec, to_hwc(v_o))))
                        zt_a = views.latents(to_nchw(align_reference(spec, to_hwc(target_view))))
                        aligned_cache[spec.name] = (zo_a, zt_a, None)
                    else:
                        aligned_cache[spec.name] = (views.latents(views.view(align_reference(spec, x_o))), None,
                                                    views.latents(views.view(align_reference(spec, x_p))))
                zo_r, zt_r, zp_r = aligned_cache[spec.name]
            else:
                zo_r, zt_r, zp_r = z_o, z_t, z_p
            z_y = views.latents(views.view(y))
            z_yo = None
            if measure == "shift":
                z_yo = views.latents(views.view(apply_attack(spec, x_o, **kw)))
            vals = []
            for e in encs:
                d: dict[str, float | None] = {"shift_away": _dist(z_y[e.id], zo_r[e.id])}
                r: float | None
                if measure == "target":
                    assert zt_r is not None
                    c2t = _dist(zo_r[e.id], zt_r[e.id])
                    rr = 1 - _dist(z_y[e.id], zt_r[e.id]) / max(c2t, 1e-12)
                    d["relative_reduction"] = rr
                    r = rr / latent[e.id]["relative_reduction"] if base_ok else None  # type: ignore[operator]
                else:
                    assert z_yo is not None and zp_r is not None
                    ref_dir = (zp_r[e.id] - zo_r[e.id]).flatten()
                    att = (z_y[e.id] - z_yo[e.id]).flatten()
                    norm = max(float(ref_dir.norm()), 1e-12)
                    along = float(att @ ref_dir) / norm
                    d["perturbation_shift"] = float(att.norm())
                    d["along_protection"] = along
                    r = along / norm if base_ok else None
                d["retained"] = r
                lat[e.id] = d
                if r is not None:
                    vals.append(r)
            retained = min(vals) if vals and len(vals) == len(encs) else None
        verdict = verdict_for(retained) if base_ok or measure == "none" else "no protection"
        explanation = _explain(verdict, retained, usable, psnr_v, lp_v, measure)
        # AI view and judges on the attacked image
        av_y = ai_view(y, ae, resolution=resolution)
        jd: dict[str, Any] = {}
        if sj is not None and artist is not None:
            jd["style"] = _style_entry(sj, av_y, artist)
        if cj is not None:
            jd["concept"] = _concept_entry(cj, av_y)
        results.append(AttackResult(
            name=spec.name, description=spec.description, params=spec.kwargs, seed=a_seed,
            seconds=round(time.perf_counter() - t0, 3), quality=q, usable=usable, latent=lat, retained=retained,
            verdict=verdict, explanation=explanation, judges=jd,
            images={"attacked": _thumb(y, ATTACK_THUMB_SIDE), "ai_view": _thumb(av_y, ATTACK_THUMB_SIDE)}))

    best = best_of_n([{"name": r.name, "retained": r.retained, "usable": r.usable} for r in results])
    best_d = None
    if best is not None:
        best_d = {**best.to_dict(), "verdict": verdict_for(best.retained)}
    summary = _summary(results, best_d, measure, base_ok)
    return CheckReport(
        protected={"file": str(p_path) if p_path else None, "size": [w, h]},
        original={"file": str(o_path) if o_path else None, "size": [w, h]} if x_o is not None else None,
        manifest=({"file": str(man_path) if man_path else None, "mode": manifest.get("mode"),
                   "target": manifest.get("target"), "budget": manifest.get("budget"),
                   "achieved": manifest.get("achieved"), "latent": manifest.get("latent")}
                  if manifest is not None else None),
        settings={"resolution": resolution, "work_size": [size[1], size[0]], "encoders": [e.id for e in encs],
                  "ai_view_encoder": ae.id, "attacks": [s.name for s in specs], "seed": int(seed),
                  "lpips_net": "alex", "upscaler": None if upscaler is None else getattr(upscaler, "__name__", "given")},
        thresholds=_thresholds(),
        quality=quality, target=target_info, latent=latent, protection_measure=measure, judges=judge_info,
        attacks=results, best_of_n=best_d, summary=summary, not_tested=list(NOT_TESTED), notes=notes,
        seconds=round(time.perf_counter() - t_start, 3), images=images,
    )


def _thresholds() -> dict[str, Any]:
    from sfumato.attacks import USABLE_LPIPS, USABLE_PSNR_DB

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


def _render_target(manifest: dict[str, Any], cfg: Any, x_o: np.ndarray, size: tuple[int, int], models_dir: Any,
                   notes: list[str]) -> tuple[Any, dict[str, Any] | None]:
    """The cloak's target Ω(original, T) at the working size, exactly as :func:`cloak_array` renders it."""
    import dataclasses

    import torch

    from sfumato.io.tensors import resize, to_nchw
    from sfumato.targets.style_target import render_target
    from sfumato.targets.styles import STYLE_FAMILIES, builtin_style, resolve_style_option

    name = str(manifest["target"]["style"])
    if name in STYLE_FAMILIES:
        style = builtin_style(name)
    else:
        option = cfg.target_style
        if option == "auto" or not Path(option).is_dir():
            notes.append(f"Target style {name!r} is not built in and its folder {option!r} is not available here; "
                         "the target cannot be re-rendered, so the shift away from the original is used instead.")
            return None, None
        style = next((s for s in resolve_style_option(option) if s.name == name), None)
        if style is None:
            notes.append(f"Target style {name!r} was not found under {option!r}; using the shift away instead.")
            return None, None
    renderer = None
    for spec, _w in cfg.encoders:
        enc = _encoder(spec, models_dir)
        if enc.has_decoder:
            renderer = enc
            break
    if renderer is None:
        notes.append("None of the manifest's encoders has a decoder to render the target; using the shift away.")
        return None, None
    x0 = resize(to_nchw(x_o), size).contiguous(memory_format=torch.channels_last)
    dev = next(renderer.parameters()).device
    t, _style, _report = render_target(x0.to(dev), renderer, [style], dataclasses.replace(cfg, target_tries=1),
                                       seed=0, models_dir=models_dir)
    return t.float().cpu(), {"style": name, "strength": cfg.style_strength, "renderer": renderer.id,
                             "target_renderer": cfg.target_renderer, "resolution": cfg.effort.resolution}


def _explain(verdict: str, retained: float | None, usable: bool, psnr_v: float, lp_v: float | None,
             measure: str) -> str:
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


def _summary(results: list[AttackResult], best: dict[str, Any] | None, measure: str, base_ok: bool) -> str:
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
