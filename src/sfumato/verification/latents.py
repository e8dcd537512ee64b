"""Latent protection, as ``sfumato check`` measures it: encoder latents of views at the working size, the
protected image's baseline, and how much of it an attack leaves (``retained``).

With a target (the re-rendered style target T): ``relative_reduction = 1 − ‖E(x) − E(T)‖ / ‖E(original) −
E(T)‖``, and ``retained = relative_reduction(attacked) / relative_reduction(protected)``. Without one: the
share of the protection's latent shift ``u = E(protected) − E(original)`` that survives in its own
direction, ``⟨E(A(protected)) − E(A(original)), u⟩ / ‖u‖²`` (the same attack, same seed, on the
original). Geometric attacks compare with references reframed the same way. With several encoders the
smallest value counts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sfumato.verification.verdicts import MIN_PROTECTION

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from sfumato.attacks.registry import AttackSpec

__all__ = ["Baseline", "EncoderViews", "cached_encoder", "latent_distance", "measure_attack", "measure_baseline"]

_ENCODERS: dict[tuple[str, str], Any] = {}


def cached_encoder(spec: str, models_dir: Any) -> Any:
    """``load_encoder(spec)``, loaded once per process and models folder."""
    key = (spec, str(models_dir))
    if key not in _ENCODERS:
        from sfumato.encoders import load_encoder

        _ENCODERS[key] = load_encoder(spec, models_dir=models_dir)
    return _ENCODERS[key]


class EncoderViews:
    """Encoder views (NCHW at the working size) and latents, the same way the style cloak measures."""

    def __init__(self, size: tuple[int, int], encoders: list[Any]) -> None:
        self.size = size
        self.encoders = encoders

    def view(self, rgb: np.ndarray) -> torch.Tensor:
        from sfumato.io.tensors import resize, to_nchw

        return resize(to_nchw(rgb), self.size).contiguous()

    def latents(self, x: torch.Tensor) -> dict[str, Any]:
        import torch

        with torch.no_grad():
            out = {}
            for e in self.encoders:
                dev = next(e.parameters()).device
                out[e.id] = e.encode(x.to(dev)).float().cpu()
            return out

    def of(self, rgb: np.ndarray) -> dict[str, Any]:
        """Latents of ``rgb``'s view."""
        return self.latents(self.view(rgb))


def latent_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Euclidean distance between two latents."""
    return float((a - b).flatten().norm())


@dataclass
class Baseline:
    """The protected image's latent protection: ``measure`` is ``"target"``, ``"shift"`` or ``"none"`` (no
    original); ``latent`` the per-encoder entries of the report; ``ok``: enough protection to test."""

    views: EncoderViews
    measure: str
    latent: dict[str, dict[str, float | None]]
    ok: bool
    x_p: np.ndarray
    x_o: np.ndarray | None
    z_p: dict[str, Any]
    z_o: dict[str, Any] | None = None
    z_t: dict[str, Any] | None = None
    v_o: Any = None
    target_view: Any = None
    aligned: dict[str, tuple[Any, Any, Any]] = field(default_factory=dict)

    def value(self, eid: str) -> float | None:
        """The encoder's baseline: relative reduction with a target, relative shift without."""
        if self.measure == "target":
            return self.latent[eid]["relative_reduction"]
        if self.measure == "shift":
            return self.latent[eid]["shift_away_relative"]
        return None


def _baseline_entry(e: Any, z_p: dict[str, Any], z_o: dict[str, Any], z_t: dict[str, Any] | None,
                    manifest: dict[str, Any] | None) -> dict[str, float | None]:
    shift = latent_distance(z_p[e.id], z_o[e.id])
    entry: dict[str, float | None] = {"shift_away": shift,
                                      "shift_away_relative": shift / max(float(z_o[e.id].norm()), 1e-12)}
    if z_t is not None:
        c2t = latent_distance(z_o[e.id], z_t[e.id])
        p2t = latent_distance(z_p[e.id], z_t[e.id])
        entry.update({"clean_to_target": c2t, "protected_to_target": p2t,
                      "relative_reduction": 1 - p2t / max(c2t, 1e-12)})
    recorded = ((manifest or {}).get("latent") or {}).get(e.id) or {}
    if "relative_reduction" in recorded:
        entry["manifest_relative_reduction"] = float(recorded["relative_reduction"])
    return entry


def measure_baseline(views: EncoderViews, x_p: np.ndarray, x_o: np.ndarray | None, target_view: Any,
                     manifest: dict[str, Any] | None, notes: list[str]) -> Baseline:
    """Latents of the protected image, the original and the target, and the protection they show."""
    z_p = views.latents(views.view(x_p))
    base = Baseline(views=views, measure="none", latent={}, ok=False, x_p=x_p, x_o=x_o, z_p=z_p,
                    target_view=target_view)
    if x_o is not None:
        base.v_o = views.view(x_o)
        base.z_o = views.latents(base.v_o)
        base.z_t = views.latents(target_view) if target_view is not None else None
        base.measure = "target" if base.z_t is not None else "shift"
        for e in views.encoders:
            base.latent[e.id] = _baseline_entry(e, z_p, base.z_o, base.z_t, manifest)
    else:
        notes.append("No original given: latent protection (which needs the clean image's latent) is not "
                     "measured; only the judges' view of the AI views is reported. Pass original= / --original.")
    base.ok = base.measure != "none" and all((base.value(e.id) or 0.0) > MIN_PROTECTION for e in views.encoders)
    if base.measure != "none" and not base.ok:
        notes.append(f"The protected image carries (almost) no latent protection (baseline <= {MIN_PROTECTION:.0%} "
                     "for at least one encoder); attack verdicts are 'no protection'.")
    return base


def _references(base: Baseline, spec: AttackSpec,
                align: Callable[[AttackSpec, np.ndarray], np.ndarray]) -> tuple[Any, Any, Any]:
    """Latents of the original, the target and the protected image, reframed as ``spec`` reframes."""
    from sfumato.io.tensors import to_hwc, to_nchw

    if not spec.geometric:
        return base.z_o, base.z_t, base.z_p
    if spec.name not in base.aligned:
        views = base.views
        assert base.x_o is not None
        if base.measure == "target":
            zo_a = views.of(align(spec, to_hwc(base.v_o)))
            zt_a = views.latents(to_nchw(align(spec, to_hwc(base.target_view))))
            base.aligned[spec.name] = (zo_a, zt_a, None)
        else:
            base.aligned[spec.name] = (views.of(align(spec, base.x_o)), None, views.of(align(spec, base.x_p)))
    return base.aligned[spec.name]


def measure_attack(base: Baseline, spec: AttackSpec, y: np.ndarray, attack_original: Callable[[], np.ndarray],
                   align: Callable[[AttackSpec, np.ndarray], np.ndarray]
                   ) -> tuple[dict[str, dict[str, float | None]], float | None]:
    """Per-encoder latent measures of the attacked image ``y`` and the share of protection retained.
    ``attack_original()`` applies the same attack (same seed) to the original (the shift measure needs it)."""
    if base.measure == "none":
        return {}, None
    views = base.views
    zo_r, zt_r, zp_r = _references(base, spec, align)
    z_y = views.of(y)
    z_yo = views.of(attack_original()) if base.measure == "shift" else None
    lat: dict[str, dict[str, float | None]] = {}
    vals = []
    for e in views.encoders:
        d: dict[str, float | None] = {"shift_away": latent_distance(z_y[e.id], zo_r[e.id])}
        r: float | None
        if base.measure == "target":
            assert zt_r is not None
            c2t = latent_distance(zo_r[e.id], zt_r[e.id])
            rr = 1 - latent_distance(z_y[e.id], zt_r[e.id]) / max(c2t, 1e-12)
            d["relative_reduction"] = rr
            r = rr / base.latent[e.id]["relative_reduction"] if base.ok else None  # type: ignore[operator]
        else:
            assert z_yo is not None and zp_r is not None
            ref_dir = (zp_r[e.id] - zo_r[e.id]).flatten()
            att = (z_y[e.id] - z_yo[e.id]).flatten()
            norm = max(float(ref_dir.norm()), 1e-12)
            along = float(att @ ref_dir) / norm
            d["perturbation_shift"] = float(att.norm())
            d["along_protection"] = along
            r = along / norm if base.ok else None
        d["retained"] = r
        lat[e.id] = d
        if r is not None:
            vals.append(r)
    retained = min(vals) if vals and len(vals) == len(views.encoders) else None
    return lat, retained
