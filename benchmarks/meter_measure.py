"""Measurement and report halves of ``benchmarks/meter.py`` (the protection meter benchmark).

Per (image, method), :func:`measure_image` returns one JSON-ready row:

* ``views``: per trainer view (:func:`sfumato.attacks.trainer_views.trainer_views` of the 128 px file, work
  size = the cloak's own), the latent measure of :func:`sfumato.verification.views.measure_views` (TAEF2):
  ``toward`` (share of the way from the original's latent to the target's, at that view), ``cosine`` and
  the ceiling control ``ceiling_toward`` (the budget-limited blend toward the target itself);
* ``judges``: per judge (``art128``: MobileNetV2 linear probe, ``gram``: AlexNet Gram statistics, both
  trained on the art128 training split only) and per view, the full probability vector of the judge on
  the AI view (TAEF2 decode of the view's latent, squashed to 128x128 as the judges were trained) of the
  file of that method (``clean`` rows hold the clean file's).

:func:`report` builds the markdown tables from the rows file: per method the latent measure per view and
at the worst view, and per judge the flip rate (of the images the judge recognises at that view clean,
the share not recognised protected; :func:`sfumato.judges.efficacy.flip_rate`) and the mean drop in
p(true artist), per view and at each image's judge-worst view (the view where the protected AI view's
p(true artist) is highest: the size a trainer would pick).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

LPIPS_MAX, LINF_MAX = 0.05, 24 / 255
_STATE: dict[str, Any] = {}


def _cached_encoder(enc: Any) -> Any:
    """``enc`` with its latents memoised by input bytes: the original's, the target's and the ceiling's
    views recur across methods, and the AI view re-encodes the view ``measure_views`` just encoded."""
    import hashlib

    import torch

    class Cached(torch.nn.Module):
        has_decoder = getattr(enc, "has_decoder", False)
        id = getattr(enc, "id", "taef2")

        def __init__(self) -> None:
            super().__init__()
            self.enc = enc
            self.memo: dict[str, torch.Tensor] = {}

        def encode(self, x: torch.Tensor) -> torch.Tensor:
            a = x.detach().float().cpu().contiguous()
            key = hashlib.sha1(a.numpy().tobytes()).hexdigest() + str(tuple(a.shape))
            if key not in self.memo:
                self.memo[key] = self.enc.encode(x)
            return self.memo[key]

        def decode(self, z: torch.Tensor) -> torch.Tensor:
            return self.enc.decode(z)

    return Cached()


def _models(corpus: Path, cache: Path) -> dict[str, Any]:
    """TAEF2, LPIPS-alex and the two art128 judges (trained once, cached as JSON under ``cache``)."""
    if not _STATE:
        from sfumato.encoders import load_encoder
        from sfumato.judges.reference import train_art128_judge, train_gram_judge
        from sfumato.metrics.lpips import load_lpips

        _STATE["taef2"] = _cached_encoder(load_encoder("taef2"))
        _STATE["lpips"] = load_lpips("alex")
        _STATE["judges"] = {"art128": train_art128_judge(corpus, cache_dir=cache / "judges"),
                            "gram": train_gram_judge(corpus, cache_dir=cache / "judges")}
    return _STATE


def ai_view(ae: Any, rgb: np.ndarray, view: Any) -> np.ndarray:
    """The autoencoder's decode of ``view``'s latent of ``rgb`` (what a latent-diffusion trainer learns)."""
    import torch

    from sfumato.attacks.trainer_views import apply_view
    from sfumato.io.tensors import to_hwc, to_nchw

    with torch.no_grad():
        x = apply_view(to_nchw(rgb), view)
        y = ae.decode(ae.encode(x))[..., : x.shape[-2], : x.shape[-1]].clamp(0, 1)
    return to_hwc(y)


def measure_image(clean: np.ndarray, protected: np.ndarray, *, artist: str, method: str,
                  target: np.ndarray | None, work_size: list[int] | None, corpus: Path, seed: int,
                  cache: Path) -> dict[str, Any]:
    """One row: per trainer view the latent measure (protected methods) and both judges' probabilities on
    the AI view of ``protected`` (for ``clean``, the clean file itself)."""
    from sfumato.attacks.trainer_views import trainer_views
    from sfumato.judges.reference import art128_view
    from sfumato.verification.views import measure_views, worst_views

    st = _models(corpus, cache)
    if _STATE.get("image_sum") != float(clean.sum()):
        st["taef2"].memo.clear()  # a new image: drop the previous one's latents
    _STATE["image_sum"] = float(clean.sum())
    h, w = clean.shape[:2]
    ws = tuple(work_size) if work_size else (h, w)
    views = trainer_views(h, w, work_size=ws, seed=seed)
    row: dict[str, Any] = {"view_names": [v.name for v in views], "view_sizes": [list(v.out_size) for v in views]}
    if method != "clean":
        lat = measure_views(clean, protected, target, st["taef2"], {"lpips": LPIPS_MAX, "linf": LINF_MAX}, views,
                            lpips=st["lpips"])
        row["views"] = [{k: r.get(k) for k in ("name", "size", "upscaled", "toward", "cosine", "shift_relative",
                                               "ceiling_toward", "ceiling_cosine", "share_of_ceiling")}
                        for r in lat]
        row["ceiling"] = lat[0].get("ceiling")
        row["worst"] = worst_views(lat)["view"]
    avs = art128_view([ai_view(st["taef2"], protected, v) for v in views])
    row["judges"] = {}
    for name, j in st["judges"].items():
        p = np.asarray(j.predict_proba(avs), dtype=np.float64)
        row["judges"][name] = {"artists": list(j.artists), "proba": [[round(float(x), 5) for x in r] for r in p]}
    return row


# ------------------------------------------------------------------------------------------------ report
def _rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _fmt(x: float | None, pct: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{100 * x:.0f} %" if pct else f"{x:.3f}"


def _flip(clean_p: list, prot_p: list, labels: list[int]) -> Any:
    from sfumato.judges.efficacy import flip_rate

    return flip_rate(np.array(clean_p), np.array(prot_p), labels)


def report(out: Path, keys: list[str], methods: list[str], *, ace: bool = False) -> str:
    """Markdown tables from ``out/protect.jsonl`` and ``out/measure.jsonl`` for the images ``keys``."""
    prot = {(r["key"], r["method"]): r for r in _rows(out / "protect.jsonl")}
    meas = {(r["key"], r["method"]): r for r in _rows(out / "measure.jsonl")}
    protected = [m for m in methods if m != "clean"]
    done = [k for k in keys if all((k, m) in meas for m in ["clean", *protected])]
    lines = [f"Images measured (all methods): {len(done)} of {len(keys)} art128 hold-out images.", ""]
    if not done:
        if ace:
            from meter_ace import ace_report

            lines += ace_report(out)
        return "\n".join(lines)
    views = meas[(done[0], "clean")]["view_names"]
    sizes = meas[(done[0], "clean")]["view_sizes"]
    # quality
    lines += ["**Budget and quality of the saved files** (LPIPS-alex ≤ 0.05, L∞ ≤ 24/255 = 0.094 required)", "",
              "| method | n | LPIPS mean | LPIPS max | L∞ max | PSNR mean | within budget | s / image |",
              "|---|---|---|---|---|---|---|---|"]
    for m in protected:
        q = [prot[(k, m)] for k in done]
        lp = [r["saved_quality"]["lpips_alex"] for r in q]
        lines.append(f"| {m} | {len(q)} | {np.mean(lp):.4f} | {max(lp):.4f} | "
                     f"{max(r['saved_quality']['linf'] for r in q):.4f} | "
                     f"{np.mean([r['saved_quality']['psnr'] for r in q]):.1f} dB | "
                     f"{sum(r['within_budget'] for r in q)}/{len(q)} | {np.mean([r['seconds'] for r in q]):.0f} |")
    if "noise-same-budget" in protected:
        nz = [prot[(k, "noise-same-budget")]["noise"] for k in done]
        sg = [n["sigma_levels"] for n in nz]
        lines += ["", f"noise-same-budget: seeded i.i.d. Gaussian noise clipped to ±24/255, σ bisected on the saved "
                  f"file's LPIPS: σ = {np.mean(sg):.1f}/255 mean ({min(sg):.1f}–{max(sg):.1f}); LPIPS-bound on "
                  f"{sum(n['bound'] == 'lpips' for n in nz)}/{len(nz)} images (the rest L∞-bound)."]
    # latent measure per view
    head = " | ".join(f"{v} ({s[1]}×{s[0]})" for v, s in zip(views, sizes, strict=True))
    lines += ["", "**Latent measure `toward` per trainer view** (TAEF2; mean over images; share of the way from "
              "the original's latent to the target's; ceiling = the budget-limited blend toward the same target)", "",
              f"| method | {head} | worst view (mean) | worst view (most often) |",
              "|---|" + "---|" * (len(views) + 2)]
    ceiling_src = "sfumato-default" if "sfumato-default" in protected else protected[0]
    for m in protected + ["ceiling"]:
        src = ceiling_src if m == "ceiling" else m
        key = "ceiling_toward" if m == "ceiling" else "toward"
        per = [[next(r[key] for r in meas[(k, src)]["views"] if r["name"] == v) for k in done] for v in views]
        cells = " | ".join(_fmt(float(np.mean(x))) for x in per)
        if m == "ceiling":
            worst = [min(r["ceiling_toward"] for r in meas[(k, src)]["views"]) for k in done]
            from meter_ace import SAME_TARGET

            owner = "sfumato-default" if src in (*SAME_TARGET, "noise-same-budget") else src
            lines.append(f"| ceiling control (toward {owner}'s target) | {cells} | {np.mean(worst):.3f} | – |")
            continue
        worst = [meas[(k, m)]["worst"] for k in done]
        names = [w["name"] for w in worst]
        common = max(set(names), key=names.count)
        lines.append(f"| {m} | {cells} | {np.mean([w['toward'] for w in worst]):.3f} | "
                     f"{common} ({names.count(common)}/{len(names)}) |")
    cos = {m: np.mean([[r["cosine"] for r in meas[(k, m)]["views"]] for k in done], axis=0) for m in protected}
    lines += ["", "Shift cosine toward the target per view (mean): " + "; ".join(
        f"{m}: " + ", ".join(f"{v} {c:.2f}" for v, c in zip(views, cos[m], strict=True)) for m in protected)]
    # judges
    for jname, label in (("art128", "art128 whole-image judge (MobileNetV2 linear probe)"),
                         ("gram", "AlexNet-Gram judge")):
        artists = meas[(done[0], "clean")]["judges"][jname]["artists"]
        labels = [artists.index(meas[(k, "clean")].get("artist", k.split("/")[0])) for k in done]
        cp = [meas[(k, "clean")]["judges"][jname]["proba"] for k in done]  # [img][view][artist]
        rec = [sum(int(np.argmax(cp[i][vi]) == labels[i]) for i in range(len(done))) for vi in range(len(views))]
        lines += ["", f"**{label}** on the AI view (TAEF2 decode) at each trainer view, squashed to 128×128. "
                  f"Recognised clean per view: " + ", ".join(f"{v} {r}/{len(done)}" for v, r in zip(views, rec,
                                                                                                      strict=True)),
                  "", f"| method | flip rate: {' | '.join(views)} | flip at judge-worst view | "
                  f"drop p(true): {' | '.join(views)} | drop at judge-worst view |",
                  "|---|" + "---|" * (2 * len(views) + 2)]
        for m in protected:
            pp = [meas[(k, m)]["judges"][jname]["proba"] for k in done]
            flips = [_flip([c[vi] for c in cp], [p[vi] for p in pp], labels) for vi in range(len(views))]
            worst_vi = [int(np.argmax([pp[i][vi][labels[i]] for vi in range(len(views))])) for i in range(len(done))]
            fw = _flip([cp[i][worst_vi[i]] for i in range(len(done))], [pp[i][worst_vi[i]] for i in range(len(done))],
                       labels)

            def cell(f: Any) -> str:
                return f"{_fmt(f.flip_rate, pct=True)} ({f.flipped}/{f.recognised_clean})"

            lines.append(f"| {m} | {' | '.join(cell(f) for f in flips)} | {cell(fw)} | "
                         f"{' | '.join(_fmt(f.mean_p_true_drop) for f in flips)} | {_fmt(fw.mean_p_true_drop)} |")
        pc = [float(np.mean([cp[i][vi][labels[i]] for i in range(len(done))])) for vi in range(len(views))]
        lines.append(f"| (clean mean p(true)) | {' | '.join('' for _ in views)} | | "
                     f"{' | '.join(f'{x:.3f}' for x in pc)} | |")
    if ace:
        from meter_ace import ace_report

        lines += ["", *ace_report(out)]
    return "\n".join(lines)
