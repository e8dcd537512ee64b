"""Make the protected files a lab run trains on, at the trainer's view.

A trainer of a ``size`` px model sees each file as its square view (:func:`sfumato.lab.data.square_view`);
the protection is made on exactly that view (``protected at 128 px`` in issue 17's words) with the
shipped presets, and written as a lossless 8-bit PNG ``<stem>.png`` in ``out_dir`` (atomically; an
existing file is reused, so a run resumes). Each file's saved budget is measured after quantisation;
one that misses it is an error. :func:`match_protected` pairs originals with protected files made
elsewhere (``sfumato cloak``/``poison`` outputs, ``benchmarks/lab_protect.py``), by file stem.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sfumato.lab.data import IMAGE_SUFFIXES, square_view

__all__ = ["MissedBudget", "match_protected", "protect_views"]


class MissedBudget(RuntimeError):
    """A protected view misses its budget after quantisation (nothing was written for it)."""


def match_protected(originals: Sequence[Path], folder: str | Path, *, method: str | None = None) -> dict[Path, Path]:
    """``{original: protected}`` for every original with a file in ``folder`` (recursive) named
    ``<stem>.<ext>`` or ``<stem>.<method>.<ext>``. Raises ``ValueError`` when none matches."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder of protected images")
    found = {p.name: p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES}
    out = {}
    for o in originals:
        o = Path(o)
        names = [f"{o.stem}.{method}{ext}" for ext in IMAGE_SUFFIXES] if method else []
        names += [f"{o.stem}{ext}" for ext in IMAGE_SUFFIXES]
        hit = next((found[n] for n in names if n in found), None)
        if hit is not None:
            out[o] = hit
    if not out:
        raise ValueError(f"no protected versions of the {len(originals)} files in {folder} (expected "
                         f"<stem>.png{' or <stem>.' + method + '.png' if method else ''})")
    return out


def protect_views(paths: Sequence[Path], out_dir: str | Path, protect: Callable[[np.ndarray], Any], *,
                  size: int, budget: Any, models_dir: Any = None,
                  log: Callable[[str], None] | None = None) -> dict[Path, Path]:
    """Protect the square view of every path with ``protect(rgb) -> result with .image``, save
    ``<out_dir>/<stem>.png`` and a ``<stem>.json`` record (saved quality), and return ``{path: png}``.
    ``budget`` (a :class:`sfumato.config.Budget`) is checked on the saved pixels."""
    from sfumato.io.atomic import write_json_atomic, write_png_atomic
    from sfumato.metrics.saved import protected_quality

    out_dir = Path(out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    say = log or (lambda s: None)
    made = {}
    for p in paths:
        p = Path(p)
        png = out_dir / f"{p.stem}.png"
        if not png.exists():
            rgb = square_view(p, size)
            res = protect(rgb)
            u8 = (np.clip(res.image, 0, 1) * 255 + 0.5).astype(np.uint8)
            q = protected_quality(u8.astype(np.float32) / 255, rgb, lpips_net=budget.lpips_net, models_dir=models_dir)
            lp = q[f"lpips_{budget.lpips_net}"]
            if lp > budget.lpips + 1e-6 or (budget.linf is not None and q["linf"] > budget.linf + 1e-6):
                raise MissedBudget(f"{p.name}: the saved view misses the budget (LPIPS {lp:.4f} > {budget.lpips} "
                                   f"or L-inf {q['linf'] * 255:.1f}/255); nothing written")
            write_png_atomic(png, u8.astype(np.float32) / 255)
            write_json_atomic(out_dir / f"{p.stem}.json",
                              {"source": str(p), "size": size, "saved_quality": {k: float(v) for k, v in q.items()},
                               **({"anchor": res.anchor} if getattr(res, "anchor", None) else {})},
                              overwrite=True)
            say(f"[protect] {p.name} -> {png.name}: LPIPS {lp:.4f}, L-inf {q['linf'] * 255:.1f}/255")
        made[p] = png
    return made


def read_records(out_dir: str | Path) -> list[dict[str, Any]]:
    """The ``<stem>.json`` records :func:`protect_views` wrote."""
    return [json.loads(f.read_text()) for f in sorted(Path(out_dir).glob("*.json"))]
