"""What ``sfumato check`` returns: :class:`AttackResult` per attack and the whole :class:`CheckReport`,
both JSON-ready (:meth:`CheckReport.to_dict`, :meth:`CheckReport.to_json`); the HTML form is
:func:`sfumato.verification.report.write_html`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sfumato._version import __version__
from sfumato.verification.thumbnails import encode_thumbnail

__all__ = ["AttackResult", "CheckReport", "jsonable"]


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
            d["images"] = {k: encode_thumbnail(v) for k, v in self.images.items()}
        return jsonable(d)


@dataclass
class CheckReport:
    """Everything :func:`sfumato.verification.check.check` measured; :meth:`to_dict` is JSON-ready,
    :func:`sfumato.verification.report.write_html`
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
    """``style`` (whole image), ``crop_style`` (crop judge at the trainer's scale, with its reading of each
    trainer view >= 512 px), ``concept`` (keys in docs/threat-model.md); a judge not run is absent."""
    attacks: list[AttackResult]
    best_of_n: dict[str, Any] | None
    summary: str
    not_tested: list[str]
    notes: list[str]
    seconds: float
    sfumato_version: str = __version__
    images: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    views: dict[str, Any] | None = None
    """Trainer views (:mod:`sfumato.verification.views`): ``rows`` per view, ``worst``, ``ceiling``,
    ``budget``; ``None`` when not measured."""
    verdict: dict[str, Any] | None = None
    """The plain verdict (:func:`sfumato.verification.plain.check_verdict`): ``protected`` (true, false, or
    ``None`` when nothing measured can tell), one ``sentence`` and the numbers behind it (``basis``)."""

    def to_dict(self, *, include_images: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "sfumato_version": self.sfumato_version,
            "verdict": self.verdict,
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
            "views": self.views,
            "summary": self.summary,
            "not_tested": self.not_tested,
            "notes": self.notes,
            "seconds": self.seconds,
        }
        if include_images:
            d["images"] = {k: encode_thumbnail(v) for k, v in self.images.items()}
        return jsonable(d)

    def to_json(self, *, include_images: bool = False) -> str:
        return json.dumps(self.to_dict(include_images=include_images), indent=2, ensure_ascii=False)

    def verdict_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for a in self.attacks:
            out[a.verdict] = out.get(a.verdict, 0) + 1
        return out


def jsonable(v: Any) -> Any:
    """``v`` with numpy scalars/arrays and paths turned into plain JSON values (non-finite floats → None)."""
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return f if np.isfinite(f) else None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.ndarray):
        return jsonable(v.tolist())
    if isinstance(v, Path):
        return str(v)
    return v
