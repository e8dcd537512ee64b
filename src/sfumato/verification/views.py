"""Latent protection at every trainer view (:mod:`sfumato.attacks.trainer_views`), with a ceiling control and
the judges on each view's AI view: what ``sfumato check`` reports under ``views``.

A cloak is optimised at one working size, and the latent encoder is not scale-equivariant, so the figure at
the work size is a best case: a trainer picks the size (a bucket, the native size, a random crop). For each
view ``v`` (resize, then crop), with ``x_o`` the original, ``x_p`` the protected file, ``t`` the cloak's
target (re-rendered at the work size, as ``check`` does) and ``E`` the encoder:

* ``toward = 1 − ‖E(v(x_p)) − E(v(t))‖ / ‖E(v(x_o)) − E(v(t))‖``: the share of the way from the original's
  latent to the target's that the protected file's latent has moved *at that view* (1 = reached the target,
  0 = no closer than the original, negative = farther). ``v(t)`` resizes the target straight from the size
  it was rendered at (one interpolation), so at the work view it is the very target the cloak aimed at and
  ``toward`` equals ``check``'s ``relative_reduction``; a target given at the file's size is viewed like
  the files;
* ``cosine``: cosine between the latent shift ``E(v(x_p)) − E(v(x_o))`` and the way to the target
  ``E(v(t)) − E(v(x_o))`` (1 = straight at the target; near 0 = a shift that goes nowhere in particular);
* ``shift_relative = ‖E(v(x_p)) − E(v(x_o))‖ / ‖E(v(x_o))‖`` (also the only measure without a target);
* **ceiling control**: the same ``toward``/``cosine`` of the *budget-limited move toward the target itself*,
  ``x_c = quantise(x_o + clip(s·(t↑ − x_o), ±L∞))`` with ``t↑`` the target upsampled to the file's size,
  ``L∞`` the manifest's cap and ``s`` the largest scale (bisection on [0, 1]) whose LPIPS against ``x_o``
  at the file's size stays within the manifest's LPIPS budget. It is the naive way to spend the same
  budget on the same target — the target's own content, so it moves the latent much the same at every
  scale. It is a *control*, not a bound: an optimised perturbation can beat it (``share_of_ceiling`` > 1),
  notably at the size it was optimised at; where the cloak falls below it, the naive blend would have
  protected more at that view;
* ``worst``: the view with the smallest ``toward`` — the protection a trainer gets by choosing the size.

Judges (anything with ``predict_proba(list of HxWx3 float arrays) -> (n, classes)`` and ``.artists`` or
``.classes``) read the AI view (the autoencoder's decode of the view's latent) of the original and of the
protected file at every view: ``p_original``/``p_protected`` are their probabilities for the true artist
(the given artist when the judge knows it, else the judge's own attribution of the original file),
``prediction`` the judge's top class on the protected file's AI view and ``still_attributed`` whether that
is the true artist; the worst view for a judge is where ``p_protected`` is highest. A judge may read only
some views (``judge_views``: the crop judge of ``sfumato check`` reads buckets and the native size of at
least 512 px).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from sfumato.attacks.trainer_views import TrainerView, apply_view

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["CEILING_STEPS", "ceiling_blend", "judge_classes", "measure_views", "view_toward", "worst_views"]

CEILING_STEPS = 7
"""Bisection steps on the ceiling control's blend scale ``s`` (resolution 1/128)."""


def _nchw(x: Any) -> torch.Tensor:
    import torch

    from sfumato.io.tensors import to_nchw

    if isinstance(x, torch.Tensor):
        return (x if x.ndim == 4 else x[None]).detach().float().cpu()
    return to_nchw(np.asarray(x, dtype=np.float32))


def view_toward(z_x: torch.Tensor, z_o: torch.Tensor, z_t: torch.Tensor) -> tuple[float, float]:
    """``(toward, cosine)`` of latent ``z_x`` against the original's ``z_o`` and the target's ``z_t``."""
    a, o, t = z_x.flatten().double(), z_o.flatten().double(), z_t.flatten().double()
    c2t = float((o - t).norm())
    toward = 1.0 - float((a - t).norm()) / max(c2t, 1e-12)
    shift, way = a - o, t - o
    den = float(shift.norm()) * float(way.norm())
    return toward, (float(shift @ way) / den if den > 1e-12 else 0.0)


def ceiling_blend(original: np.ndarray, target: Any, budget: Mapping[str, Any], lpips: Callable[..., Any],
                  *, steps: int = CEILING_STEPS) -> tuple[np.ndarray, dict[str, float]]:
    """The ceiling control's image: ``quantise(x_o + clip(s·(t↑ − x_o), ±linf))`` with the largest ``s`` in
    [0, 1] (bisection, ``steps`` halvings) whose ``lpips(x_c, x_o)`` stays within ``budget["lpips"]``.
    ``target``: any size with the original's aspect ratio (upsampled to it). Returns the image and
    ``{"scale", "lpips", "linf"}``."""
    import torch

    from sfumato.io.tensors import quantize, resize, to_hwc, to_nchw
    from sfumato.optimise.calibrate import calibrate

    h, w = original.shape[:2]
    t = to_hwc(resize(_nchw(target), (h, w))).clip(0, 1)
    cap, limit = float(budget["linf"]), float(budget["lpips"])

    def on_grid(x: np.ndarray) -> np.ndarray:  # rounding may not add to the cap (on-grid for k/255)
        return np.clip(quantize(x), original - cap, original + cap)

    def lpips_fn(a: np.ndarray, b: np.ndarray) -> float:
        with torch.no_grad():
            return float(lpips(to_nchw(a), to_nchw(b))[0])

    # the same search the protections' budget calibration runs, on the perturbation t - x_o, scale <= 1
    best, scale, best_lp = calibrate(original, t - original, lpips_p=limit, linf=cap, quantise=on_grid,
                                     lpips_fn=lpips_fn, max_scale=1.0, iters=steps)
    return best, {"scale": scale, "lpips": best_lp, "linf": float(np.abs(best - original).max())}


def judge_classes(judge: Any) -> list[str]:
    """A judge's class names (``.artists``, else ``.classes``)."""
    names = getattr(judge, "artists", None)
    if names is None:
        names = getattr(judge, "classes", None)
    if names is None:
        raise TypeError(f"judge {type(judge).__name__} has neither .artists nor .classes")
    return [str(c) for c in names]


def _true_artists(judges: Mapping[str, Any], artist: str | Mapping[str, str] | None,
                  original: np.ndarray) -> dict[str, str]:
    out = {}
    for name, j in judges.items():
        classes = judge_classes(j)
        given = artist.get(name) if isinstance(artist, Mapping) else artist
        if given is not None and given in classes:
            out[name] = given
        else:
            out[name] = classes[int(np.argmax(np.asarray(j.predict_proba([original]))[0]))]
    return out


def _encode(encoder: Any, x: torch.Tensor) -> torch.Tensor:
    import torch

    dev = next(encoder.parameters()).device
    with torch.no_grad():
        return encoder.encode(x.to(dev)).float().cpu()


def _ai_view(autoencoder: Any, z: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    import torch

    from sfumato.io.tensors import to_hwc

    dev = next(autoencoder.parameters()).device
    with torch.no_grad():
        y = autoencoder.decode(z.to(dev))[..., : size[0], : size[1]]
    return to_hwc(y.clamp(0, 1))


def measure_views(original: np.ndarray, protected: np.ndarray, target: Any, encoder: Any,
                  budget: Mapping[str, Any] | None, views: Sequence[TrainerView], *, lpips: Any = None,
                  models_dir: Any = None, autoencoder: Any = None, judges: Mapping[str, Any] | None = None,
                  artist: str | Mapping[str, str] | None = None, ceiling: bool = True,
                  ceiling_steps: int = CEILING_STEPS, progress: Callable[[str], None] | None = None,
                  judge_views: Mapping[str, Callable[[TrainerView], bool]] | None = None) -> list[dict[str, Any]]:
    """Latent protection of ``protected`` at every view (see the module docstring), one dict per view.

    ``original``/``protected``: ``HxWx3`` float arrays in [0, 1] of the same size. ``target``: the cloak's
    target (``HxWx3`` array or NCHW tensor, any size with the same aspect ratio) or ``None`` (then only
    ``shift_relative``). ``encoder``: an :class:`~sfumato.encoders.base.Encoder`. ``budget``: a mapping with
    ``lpips`` and ``linf`` (and optionally ``lpips_net``, default ``alex``) for the ceiling control, or
    ``None`` (no ceiling). ``lpips``: a loaded LPIPS (else loaded from ``models_dir``). ``judges``: name →
    judge; they read the AI views made by ``autoencoder`` (default: ``encoder`` when it has a decoder).
    ``artist``: the true artist for every judge, or one per judge name. ``judge_views``: judge name → which
    views it reads (a predicate on the :class:`TrainerView`; judges not named read every view).

    Each dict: ``name``, ``kind``, ``size`` ([w, h] the encoder sees), ``upscaled``, ``view`` (the
    :class:`TrainerView` parameters), ``toward``, ``cosine``, ``shift_relative``, ``ceiling_toward``,
    ``ceiling_cosine``, ``share_of_ceiling``, ``judges`` ({name: {artist, p_original, p_protected,
    prediction, still_attributed}}, the judges that read the view), ``seconds``; and on the first,
    ``ceiling`` (the blend's ``scale``, ``lpips``, ``linf``).
    """
    if original.shape != protected.shape:
        raise ValueError(f"original {original.shape} and protected {protected.shape} differ in size")
    say = progress or (lambda _m: None)
    x_o, x_p = _nchw(original), _nchw(protected)
    t = _nchw(target) if target is not None else None
    x_c, c_info = None, None
    if t is not None and ceiling and budget is not None:
        if lpips is None:
            from sfumato.metrics.lpips import load_lpips

            lpips = load_lpips(str(budget.get("lpips_net", "alex")), models_dir=models_dir)
        say("trainer views: ceiling control")
        xc_arr, c_info = ceiling_blend(original, t, budget, lpips, steps=ceiling_steps)
        x_c = _nchw(xc_arr)
    ae = autoencoder if autoencoder is not None else (encoder if getattr(encoder, "has_decoder", False) else None)
    judges = dict(judges or {}) if ae is not None else {}
    truth = _true_artists(judges, artist, original) if judges else {}
    rows: list[dict[str, Any]] = []
    for view in views:
        say(f"trainer view {view.name}")
        t0 = time.perf_counter()
        z_o, z_p = _encode(encoder, apply_view(x_o, view)), _encode(encoder, apply_view(x_p, view))
        oh, ow = view.out_size
        row: dict[str, Any] = {"name": view.name, "kind": view.kind, "size": [ow, oh], "upscaled": view.upscaled,
                               "view": view.to_dict(), "toward": None, "cosine": None,
                               "shift_relative": float((z_p - z_o).norm()) / max(float(z_o.norm()), 1e-12),
                               "ceiling_toward": None, "ceiling_cosine": None, "share_of_ceiling": None}
        if t is not None:
            z_t = _encode(encoder, apply_view(t, view))
            row["toward"], row["cosine"] = view_toward(z_p, z_o, z_t)
            if x_c is not None:
                row["ceiling_toward"], row["ceiling_cosine"] = view_toward(_encode(encoder, apply_view(x_c, view)),
                                                                           z_o, z_t)
                if row["ceiling_toward"] > 1e-6:
                    row["share_of_ceiling"] = row["toward"] / row["ceiling_toward"]
        readers = {n: j for n, j in judges.items() if n not in (judge_views or {}) or judge_views[n](view)}
        if readers:
            av_o, av_p = _ai_view(ae, z_o, (oh, ow)), _ai_view(ae, z_p, (oh, ow))
            row["judges"] = {}
            for name, j in readers.items():
                classes = judge_classes(j)
                p = np.asarray(j.predict_proba([av_o, av_p]), dtype=np.float64)
                k = classes.index(truth[name])
                pred = classes[int(np.argmax(p[1]))]
                row["judges"][name] = {"artist": truth[name], "p_original": float(p[0, k]),
                                       "p_protected": float(p[1, k]), "prediction": pred,
                                       "still_attributed": pred == truth[name]}
        row["seconds"] = round(time.perf_counter() - t0, 3)
        rows.append(row)
    if rows and c_info is not None:
        rows[0]["ceiling"] = c_info
    return rows


def worst_views(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The worst view overall (smallest ``toward``; without a target, smallest ``shift_relative``) and, per
    judge, the view where its ``p_protected`` is highest: ``{"view": {...}, "judges": {name: {...}}}``."""
    out: dict[str, Any] = {"view": None, "judges": {}}
    key = "toward" if any(r.get("toward") is not None for r in rows) else "shift_relative"
    scored = [r for r in rows if r.get(key) is not None]
    if scored:
        r = min(scored, key=lambda r: r[key])
        out["view"] = {"name": r["name"], "measure": key, "value": r[key], "toward": r.get("toward"),
                       "cosine": r.get("cosine"), "ceiling_toward": r.get("ceiling_toward"), "size": r["size"]}
    names = sorted({n for r in rows for n in (r.get("judges") or {})})
    for n in names:
        jr = [r for r in rows if n in (r.get("judges") or {})]
        r = max(jr, key=lambda r: r["judges"][n]["p_protected"])
        out["judges"][n] = {"name": r["name"], **r["judges"][n]}
    return out
