"""Self-contained HTML rendering of a check report, :class:`sfumato.verification.results.CheckReport`
(``sfumato check --report``).

One file, no external CSS, JavaScript, fonts or images: thumbnails (at most 256 px on a side) are embedded
as base64 JPEG data URIs, so a report can be mailed, archived or committed as an example and stays small.
The JSON form of the same report is :meth:`CheckReport.to_dict`. (``encode_thumbnail`` is re-exported from
:mod:`sfumato.verification.thumbnails`.)
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sfumato.verification.thumbnails import encode_thumbnail

if TYPE_CHECKING:  # pragma: no cover
    from sfumato.verification.results import AttackResult, CheckReport

__all__ = ["encode_thumbnail", "render_html", "write_html"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;
color:#222;line-height:1.45;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ddd;padding:.3em .55em;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.summary{padding:.8em 1em;border-radius:6px;background:#f3f6fb;border:1px solid #c9d6ea}
.summary.yes{background:#e8f5ec;border-color:#93c9a3}.summary.no{background:#fcebea;border-color:#e2a49c}
.v-survives{background:#e3f4e1}.v-weakened{background:#fff4d6}.v-removed{background:#fbe1e1}
.v-other{background:#eee}.small{font-size:.85em;color:#555}
figure{display:inline-block;margin:.3em .6em .3em 0;text-align:center}
figure img{display:block;border:1px solid #ccc;max-width:256px;max-height:256px}
figcaption{font-size:.8em;color:#444;max-width:256px}
td img{max-width:128px;max-height:128px;display:block}
"""


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _img(rgb: np.ndarray | None, caption: str) -> str:
    if rgb is None:
        return ""
    return (f'<figure><img alt="{_e(caption)}" src="{encode_thumbnail(rgb)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _f(v: Any, fmt: str = "{:.3f}") -> str:
    if v is None:
        return "–"
    if isinstance(v, float) and not np.isfinite(v):
        return "∞" if v > 0 else "–"
    return fmt.format(v)


def _pct(v: Any) -> str:
    return "–" if v is None else f"{v:.0%}"


def _vclass(verdict: str) -> str:
    return f"v-{verdict}" if verdict in ("survives", "weakened", "removed") else "v-other"


def _table(header: list[str], rows: list[list[str]], *, raw: bool = False) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c if raw else _e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _judges_section(r: CheckReport) -> str:
    j = r.judges
    out = ["<h2>Independent judges</h2>",
           "<p>The judges never took part in making the protection; they only look at images. They are run on "
           "the <b>AI view</b>: the image as the model's autoencoder "
           f"({_e(j.get('ai_view_encoder', ''))}) encodes and decodes it, i.e. what a generative model learns "
           "from.</p>"]
    st = j.get("style")
    if st:
        artist = st["reference_artist"]
        out.append(
            "<p><b>Style judge</b>: an artist classifier (logistic regression on MobileNetV2 image features) "
            f"trained on reference paintings of {len(st['artists'])} artists ({_e(', '.join(st['artists']))}). "
            + (f"It attributes what a model sees of the {_e(st['reference_from'])} (its AI view) to "
               f"<b>{_e(artist)}</b>; the verdict compares against that reading. "
               if st.get("reference_read_on") == "ai_view" else
               f"It attributes the {_e(st['reference_from'])} image to <b>{_e(artist)}</b>. ")
            + "A working style "
            f"protection lowers the probability of {_e(artist)} in the AI view of the protected image. Artists "
            "outside this list are mapped to the closest one, so read it as a relative measure.</p>")
        rows = []
        for key, label in (("reference_image", f"{st['reference_from']} image (pixels)"),
                           ("ai_view_original", "AI view of the original"),
                           ("ai_view_protected", "AI view of the protected image")):
            if key in st:
                rows.append([label, st[key]["prediction"], _pct(st[key]["p_artist"])])
        out.append(_table(["image", "judge's prediction", f"p({artist})"], rows))
    out.append(_crop_judge_part(j.get("crop_style")))
    ct = j.get("concept")
    if ct:
        out.append("<p><b>Concept judge</b>: an ImageNet classifier (MobileNetV2) whose classes are grouped into "
                   "concepts (dog, cat, landscape...). For a style cloak the content should stay the same; "
                   "a concept poison aims to change it.</p>")
        rows = []
        for key, label in (("original", "original (pixels)"), ("ai_view_original", "AI view of the original"),
                           ("ai_view_protected", "AI view of the protected image")):
            if key in ct:
                rows.append([label, ct[key]["label"], ", ".join(f"{c} {p:.0%}" for c, p in ct[key]["top"]),
                             ", ".join(f"{c} {p:.0%}" for c, p in ct[key].get("top_classes", []))])
        out.append(_table(["image", "concept", "top concepts", "top ImageNet classes"], rows))
    if not st and not ct and not j.get("crop_style"):
        out.append("<p>No judge was run (see the notes).</p>")
    return "".join(out)


def _crop_judge_part(cr: dict[str, Any] | None) -> str:
    """The crop judge's paragraph and table: its reading of each trainer view of >= 512 px."""
    if not cr:
        return ""
    artist = cr["reference_artist"]
    out = [f"<p><b>Crop judge</b> (the trainer's scale): the same kind of classifier on 224 px crops of the "
           f"trainer's views, trained on full-resolution paintings of {len(cr['artists'])} painters "
           f"({_e(', '.join(cr['artists']))}) — it knows only these. It attributes the "
           f"{_e(cr['reference_from'])} image to <b>{_e(artist)}</b> (p {_pct(cr['reference_image']['p_artist'])})"
           f" and reads the AI view of every bucket and native view of at least {_e(cr['view_min_side'])} px.</p>"]
    rows = [[_e(v["view"]) + (" ↑" if v.get("upscaled") else ""), f"{v['size'][0]}x{v['size'][1]}",
             _e(v["prediction"]), "yes" if v["still_attributed"] else "no", _pct(v.get("p_original")),
             _pct(v["p_artist"])] for v in cr.get("views") or []]
    if rows:
        out.append(_table(["trainer view", "size (px)", "prediction (protected)", f"still {artist}?",
                           f"p({artist}) original's AI view", f"p({artist}) protected's AI view"], rows, raw=True))
    return "".join(out)


def _views_section(r: CheckReport) -> str:
    v = r.views
    if not v:
        return ""
    rows_in = v.get("rows") or []
    judges = sorted({n for row in rows_in for n in (row.get("judges") or {})})
    target = v.get("measure") == "target"
    out = ["<h2>Trainer views</h2>",
           "<p>A trainer does not encode the image at the size the protection was optimised at (the <i>work</i> "
           "view): it resizes it to a bucket (512, 768 or 1024 px long side), keeps its native size, or takes a "
           f"random crop. Each view below is encoded with {_e(v.get('encoder', ''))}. "]
    if target:
        out.append("<i>Toward</i>: the share of the way from the original's latent to the target's that the "
                   "protected file's latent moved at that view; <i>cosine</i>: how straight that move points at "
                   "the target. <i>Ceiling control</i>: the same measure for the naive move toward the target "
                   "itself within the same budget (the target blended into the original up to the LPIPS budget, "
                   "L∞-capped) — a control, not a bound: the optimised cloak may beat it where it was optimised.")
    else:
        out.append("No target is known: the latent shift away from the original is shown, relative to the "
                   "original latent's norm.")
    out.append(" Views marked ↑ enlarge a small image, as a trainer does. The <b>worst view</b> is the "
               "protection a trainer gets by choosing the size.</p>")
    header = ["view", "size (px)"] + (["toward", "cosine", "ceiling control", "of ceiling"] if target else
                                      ["shift / |latent|"])
    for n in judges:
        header.append(f"{n} judge p(artist) original → protected")
    worst = (v.get("worst") or {}).get("view") or {}
    rows = []
    for row in rows_in:
        name = _e(row["name"]) + (" ↑" if row.get("upscaled") else "")
        if row["name"] == worst.get("name"):
            name = f"<b>{name}</b> (worst)"
        cells = [name, f"{row['size'][0]}x{row['size'][1]}"]
        if target:
            cells += [_pct(row.get("toward")), _f(row.get("cosine"), "{:.2f}"), _pct(row.get("ceiling_toward")),
                      _pct(row.get("share_of_ceiling"))]
        else:
            cells.append(_pct(row.get("shift_relative")))
        for n in judges:
            j = (row.get("judges") or {}).get(n)
            cell = "–" if not j else f"{_e(j['artist'])}: {_pct(j['p_original'])} → {_pct(j['p_protected'])}"
            if j and j.get("prediction") != j["artist"]:
                cell += f"<br><span class=small>now {_e(j['prediction'])}</span>"
            cells.append(cell)
        rows.append(cells)
    out.append(_table(header, rows, raw=True))
    if worst:
        text = (f"<p><b>Worst view</b>: {_e(worst['name'])} ({_e(worst['size'][0])}x{_e(worst['size'][1])} px), "
                + (f"toward {_pct(worst.get('toward'))}" if target else f"shift {_pct(worst.get('value'))}"))
        for n, j in ((v.get("worst") or {}).get("judges") or {}).items():
            text += (f"; {_e(n)} judge's worst view: {_e(j['name'])}, p({_e(j['artist'])}) "
                     f"{_pct(j['p_original'])} → {_pct(j['p_protected'])}")
        out.append(text + ".</p>")
    c, b = v.get("ceiling"), v.get("budget")
    if c and b:
        out.append(f"<p class=small>Ceiling control: blend scale {c['scale']:.3f} of the target, LPIPS "
                   f"{c['lpips']:.4f} (budget {b['lpips']}, from the {_e(b.get('source', ''))}), L∞ "
                   f"{c['linf'] * 255:.1f}/255. Time for all views: {v.get('seconds', 0):.0f} s.</p>")
    return "".join(out)


def _attack_rows(r: CheckReport) -> list[list[str]]:
    artist = (r.judges.get("style") or {}).get("reference_artist")
    rows = []
    a: AttackResult
    for a in r.attacks:
        q = a.quality
        usable = ("yes" if a.usable else "no") + f"<br><span class=small>PSNR {_f(q.get('psnr_vs_protected'), '{:.1f}')} dB"
        if q.get("lpips_vs_original") is not None:
            usable += f", LPIPS {_f(q['lpips_vs_original'])}"
        usable += "</span>"
        judge = ""
        if "style" in a.judges and artist:
            judge += f"{_e(a.judges['style']['prediction'])}<br><span class=small>p({_e(artist)}) {_pct(a.judges['style']['p_artist'])}</span>"
        if "concept" in a.judges:
            judge += f"<br><span class=small>concept: {_e(a.judges['concept']['label'])}</span>"
        imgs = "".join(f'<img alt="{_e(k)}" src="{encode_thumbnail(v, max_side=128)}">'
                       for k, v in a.images.items())
        rows.append([f"<b>{_e(a.name)}</b><br><span class=small>{_e(a.description)}</span>", usable,
                     _pct(a.retained), f'<span class="{_vclass(a.verdict)}">&nbsp;{_e(a.verdict)}&nbsp;</span>'
                     f"<br><span class=small>{_e(a.explanation)}</span>", judge or "–", imgs])
    return rows


def _verdict_html(r: CheckReport) -> list[str]:
    """The report's lead: the plain verdict (green only when protected), then the attacks' summary."""
    v = r.verdict or {}
    if not v.get("sentence"):
        return [f"<div class=summary><b>Verdict.</b> {_e(r.summary)}</div>"]
    cls = {True: "summary yes", False: "summary no"}.get(v.get("protected"), "summary")
    head = {True: "Protected.", False: "Not protected."}.get(v.get("protected"), "Cannot tell.")
    return [f'<div class="{cls}"><b>{head}</b> {_e(v["sentence"])}</div>', f"<p>{_e(r.summary)}</p>"]


def render_html(report: CheckReport) -> str:
    """The report as one self-contained HTML page (no external resources)."""
    r = report
    title = Path(r.protected["file"]).name if r.protected.get("file") else "protected image"
    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        '<meta name=viewport content="width=device-width, initial-scale=1">',
        f"<title>Sfumato check: {_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Sfumato check: {_e(title)}</h1>",
        f"<p class=small>sfumato {_e(r.sfumato_version)} · working size {_e(r.settings['work_size'][0])}x"
        f"{_e(r.settings['work_size'][1])} px · encoders {_e(', '.join(r.settings['encoders']))} · seed "
        f"{_e(r.settings['seed'])} · {r.seconds:.0f} s</p>",
        *_verdict_html(r),
    ]
    # images
    im = r.images
    parts.append("<h2>Images</h2><p>The <b>AI view</b> is what the generative model's autoencoder keeps of an "
                 "image (encode, then decode). The protection is meant to change the AI view while the image "
                 "itself looks unchanged.</p><div>")
    for key, cap in (("original", "original"), ("protected", "protected"), ("target", "target the cloak aims at"),
                     ("ai_view_original", "AI view of the original"), ("ai_view_protected", "AI view of the protected")):
        parts.append(_img(im.get(key), cap))
    parts.append("</div>")
    # quality
    if r.quality:
        q = r.quality
        parts.append("<h2>Visual change (protected vs original)</h2>")
        parts.append(_table(["LPIPS (AlexNet)", "PSNR", "SSIM", "L∞"],
                            [[_f(q.get("lpips_alex")), _f(q.get("psnr"), "{:.2f} dB"), _f(q.get("ssim"), "{:.4f}"),
                              f"{_f((q.get('linf') or 0) * 255, '{:.1f}')}/255"]]))
    # latent
    parts.append("<h2>Latent protection</h2>")
    if r.latent:
        if r.target:
            parts.append(f"<p>Target style <b>{_e(r.target['style'])}</b> (strength {_e(r.target['strength'])}), "
                         "re-rendered from the original as the cloak did. <i>Relative reduction</i>: the share of "
                         "the way from the original's latent to the target's that the protected image's latent has "
                         "moved (1 = reached the target).</p>")
        else:
            parts.append("<p>No target style known: the protection is measured as the shift of the protected "
                         "image's latent away from the original's.</p>")
        rows = []
        for enc, d in r.latent.items():
            rows.append([enc, _f(d.get("shift_away")), _pct(d.get("shift_away_relative")),
                         _f(d.get("clean_to_target")), _f(d.get("protected_to_target")),
                         _pct(d.get("relative_reduction")), _pct(d.get("manifest_relative_reduction"))])
        parts.append(_table(["encoder", "shift away", "shift / |latent|", "original→target", "protected→target",
                             "relative reduction", "manifest said"], rows))
    else:
        parts.append("<p>Not measured (needs the original).</p>")
    parts.append(_views_section(r))
    parts.append(_judges_section(r))
    # attacks
    parts.append("<h2>Attacks</h2><p>Each attack is a real operation applied to the protected image (the "
                 "operations a scraper or a mimic uses). <i>Retained</i> is the share of the protection that is "
                 "left afterwards.</p>")
    parts.append(_table(["attack", "usable?", "retained", "verdict", "style judge on the AI view",
                         "attacked / its AI view"], _attack_rows(r), raw=True))
    if r.best_of_n:
        b = r.best_of_n
        parts.append(f"<p><b>Best-of-N</b> (the strongest attack that keeps the image usable, out of "
                     f"{_e(b['n_usable'])} usable of {_e(b['n_total'])}): <b>{_e(b['name'])}</b>, retained "
                     f"{_pct(b['retained'])} → <span class=\"{_vclass(b['verdict'])}\">&nbsp;{_e(b['verdict'])}"
                     "&nbsp;</span>.</p>")
    # thresholds
    t = r.thresholds
    parts.append("<h2>Thresholds</h2><ul>"
                 f"<li><b>Verdict</b>: {_e(t['verdict'])}.</li>"
                 f"<li><b>Retained</b>: {_e(t['retained'])}.</li>"
                 f"<li><b>Usable</b> attacked image: {_e(t['usable'])}.</li>"
                 f"<li>A baseline protection below {_pct(t['min_protection'])} counts as none.</li></ul>")
    parts.append("<h2>What is not tested</h2><ul>" + "".join(f"<li>{_e(x)}</li>" for x in r.not_tested) + "</ul>")
    if r.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{_e(x)}</li>" for x in r.notes) + "</ul>")
    parts.append("<h2>Settings</h2>" + _table(["setting", "value"], [[k, v] for k, v in r.settings.items()]))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html(report: CheckReport, path: str | os.PathLike[str]) -> Path:
    """Write :func:`render_html` of ``report`` to ``path`` (UTF-8); returns the path."""
    p = Path(path)
    p.write_text(render_html(report), encoding="utf-8")
    return p
