"""The lab's report: ``lab.json`` (the full :class:`~sfumato.lab.result.LabResult`), ``lab.html`` (summary
tables, per-class tables, loss curves and sample grids) and one grid PNG per run, written atomically."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

from sfumato.lab.result import LabResult
from sfumato.lab.tables import concept_markdown, style_markdown

__all__ = ["markdown", "sample_grid", "write_report"]


def sample_grid(samples: np.ndarray, *, per_class: int = 8, pad: int = 2) -> np.ndarray:
    """``(classes, n, H, W, 3)`` uint8 samples as one uint8 image: a row per class, ``per_class`` columns."""
    c, n, h, w, _ = samples.shape
    k = min(per_class, n)
    out = np.full((c * (h + pad) + pad, k * (w + pad) + pad, 3), 255, np.uint8)
    for i in range(c):
        for j in range(k):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            out[y:y + h, x:x + w] = samples[i, j]
    return out


def _md_table_to_html(md: str) -> str:
    """The markdown of :mod:`sfumato.lab.tables` as HTML (bold captions and pipe tables only)."""
    out, rows = [], []

    def flush() -> None:
        if rows:
            head, body = rows[0], rows[2:]
            out.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body)
                       + "</table>")
            rows.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip("|").split("|")])
            continue
        flush()
        if line.strip():
            out.append(f"<p><b>{html.escape(line.strip('* '))}</b></p>")
    flush()
    return "\n".join(out)


def markdown(result: LabResult) -> str:
    """The summary tables of ``result`` as markdown."""
    if result.kind == "style":
        return style_markdown(result.summary, artist=result.focus, source=f"style lab, {result.focus}")
    summaries = result.summaries or {"": result.summary}
    return "\n".join(concept_markdown(sm, concept=result.focus, target=str(result.target),
                                      source=f"concept lab, {result.focus} → {result.target}"
                                             + (f" — judge `{name}`" if name else ""))
                     for name, sm in summaries.items())


def write_report(result: LabResult, out_dir: str | Path, *, overwrite: bool = True) -> dict[str, Path]:
    """Write ``lab.json``, ``lab.html`` and ``grids/<variant>-seed<seed>.png`` under ``out_dir``
    (``…-g<guidance>.png`` for a run sampled at another guidance than the config's)."""
    from sfumato.io.atomic import write_json_atomic, write_png_atomic, write_text_atomic

    out = Path(out_dir).expanduser()
    (out / "grids").mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = result.to_dict()
    grids = []
    for run, rd in zip(result.runs, data["runs"], strict=True):
        if run.samples is None:
            continue
        g = out / "grids" / f"{run.variant}-seed{run.seed}{run.guidance_tag}.png"
        write_png_atomic(g, sample_grid(run.samples).astype(np.float32) / 255)
        rd["grid"] = str(g.relative_to(out))
        grids.append((run, rd["grid"]))
    write_json_atomic(out / "lab.json", data, overwrite=overwrite)
    classes = list(result.runs[0].counts) if result.runs else []
    parts = [f"<h1>Sfumato mimicry lab — {html.escape(result.kind)}: {html.escape(result.focus)}"
             + (f" → {html.escape(result.target)}" if result.target else "") + "</h1>",
             "<p>A small class-conditional latent generator (rectified flow) was trained from scratch on each "
             "variant of the dataset, sampled per class, decoded, and judged. Judges never trained or steered the "
             "generator.</p>",
             "<h2>Summary</h2>", _md_table_to_html(markdown(result)),
             "<h2>Judges</h2><ul>" + "".join(f"<li><b>{html.escape(r['name'])}</b>: {html.escape(r['description'])}</li>"
                                            for r in result.readers) + "</ul>",
             "<h2>Runs</h2><table><tr><th>variant</th><th>seed</th><th>files replaced</th><th>training seconds</th>"
             "<th>loss (first → last)</th></tr>"
             + "".join(f"<tr><td>{html.escape(r.variant)}</td><td>{r.seed}</td><td>{r.replaced}</td>"
                       f"<td>{r.train_seconds:.0f}</td><td>{r.loss[0]:.3f} → {r.loss[-1]:.3f}</td></tr>"
                       for r in result.runs) + "</table>",
             "<h2>Samples</h2><p>One row per class, in this order: " + html.escape(", ".join(classes)) + ".</p>"]
    for run, rel in grids:
        at = "" if run.guidance is None else f", guidance {run.guidance:g}"
        parts.append(f"<h3>{html.escape(run.variant)}, seed {run.seed}{at}</h3><img src='{html.escape(rel)}' "
                     f"alt='samples of {html.escape(run.variant)} seed {run.seed}' style='max-width:100%'>")
    parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in result.notes) + "</ul>")
    page = ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Sfumato lab</title>"
            "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:2px 6px}</style></head><body>" + "\n".join(parts) + "</body></html>")
    write_text_atomic(out / "lab.html", page)
    return {"json": out / "lab.json", "html": out / "lab.html"}
