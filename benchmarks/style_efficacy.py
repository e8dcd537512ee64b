"""Cloak efficacy judged independently: does the AI view of a cloaked painting still look like its artist?

For every artist of the shared art corpus, a stratified split (``--test-size``, ``--split-seed``) trains the
independent style judge (:class:`sfumato.judges.StyleJudge`: logistic regression on MobileNetV2 TFLite
embeddings) on the *train* part only; the *held-out* paintings (``--per-artist`` of them per artist) are
cloaked by each method and judged. The judge never enters any loss: perturbations are optimised against
TAEF2 only (madebyollin/taesd, FLUX.2 latent space). Target styles for every method: the other artists'
train-split paintings (a folder per artist, ≤ ``--exemplars`` each), chosen per painting by Glaze's
50th–75th-percentile rule.

Per painting and method the saved (8-bit) file is measured: LPIPS-alex against the original, then, for the
unattacked file and after every attack of ``--attacks`` (real Pillow/numpy operations, :mod:`sfumato.attacks`),
the AI view (TAEF2 encode→decode at ≤ 512 px, as ``sfumato check`` does) is judged. Reported per method and
per artist: the share whose AI view the judge assigns to the true artist and the mean probability of the
true artist, plus best-of-N (per painting, the usable attack that gives the true artist the highest
probability back; usable = PSNR ≥ 25 dB against the protected file). For the Sfumato presets the target
image the cloak aimed at is judged too (its own TAEF2 AI view, nothing optimised): a cloak moves the latent
only part of the way to its target, so a target still judged the true artist caps what the cloak can show.

    python benchmarks/style_efficacy.py --per-artist 2 -o docs/benchmarks-style.md
    python benchmarks/style_efficacy.py --per-artist 1 --methods clean sfumato-default --attacks none
    python benchmarks/style_efficacy.py --speed-only --speed-sides 512 1024
    python benchmarks/style_efficacy.py --targets-only --per-artist 1 --side 384

``--targets-only``: no cloak; for every held-out painting, the Gatys target (as the cloak renders it, at the
``slow`` preset's work size) toward *each* other artist's style, judged through TAEF2. A cloak moves the
latent only part of the way to its target, so an artist whose every target is still judged that artist
cannot be protected (against this judge) by any cloak toward these targets.

Methods: ``clean`` (no cloak), ``glaze-naive`` (Glaze's objective, Adam 100 steps, α 30, p 0.05, latent-WCT
target; :mod:`sfumato.baselines.glaze`), ``sfumato-fast`` / ``sfumato-default`` / ``sfumato-slow`` (presets;
Gatys target, :mod:`sfumato.targets.gatys`), ``sfumato-default-wct`` (the default preset with the earlier
target: latent WCT at strength 0.35, for comparison). Budget for all: LPIPS-alex ≤ 0.05 and L∞ ≤ 24/255 on the saved
file. Paintings larger than ``--side`` px on their long side are downscaled to it first (Lanczos) — that
is the "published" image every method protects.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import emit
from _common import load_downscaled as load

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SFUMATO_SHARED_DIR", ROOT.parent / "shared"))
METHODS = ("clean", "glaze-naive", "sfumato-fast", "sfumato-default", "sfumato-slow", "sfumato-default-wct")


def split(art: Path, test_size: float, seed: int) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    from sklearn.model_selection import train_test_split

    from sfumato.judges.style import reference_from_folders

    ref = reference_from_folders(art)
    items, labels = [], []
    for a, its in ref.items():
        items += [str(i) for i in its]
        labels += [a] * len(its)
    tr, te = train_test_split(np.arange(len(items)), test_size=test_size, stratify=labels, random_state=seed)
    train: dict[str, list[str]] = {}
    test: dict[str, list[str]] = {}
    for i in tr:
        train.setdefault(labels[i], []).append(items[i])
    for i in te:
        test.setdefault(labels[i], []).append(items[i])
    return train, test


def style_folders(train: dict[str, list[str]], exclude: str, n: int, root: Path) -> Path:
    """A folder of folders (one per other artist, ≤ n train-split paintings each, as symlinks)."""
    d = root / f"styles-not-{exclude}"
    if not d.exists():
        for artist, files in sorted(train.items()):
            if artist == exclude:
                continue
            (d / artist).mkdir(parents=True)
            for f in sorted(files)[:n]:
                (d / artist / Path(f).name).symlink_to(Path(f).resolve())
    return d


def protect(method: str, rgb: np.ndarray, styles: Path, seed: int) -> tuple[np.ndarray, float, np.ndarray | None]:
    """(saved image, seconds, the target image the cloak aimed at, or None for methods without one)."""
    from sfumato.config import Budget, CloakConfig

    budget = Budget(lpips=0.05, linf=24 / 255)
    t = time.perf_counter()
    if method == "clean":
        return rgb, 0.0, None
    if method == "glaze-naive":
        from sfumato.baselines.glaze import glaze_style_cloak

        r = glaze_style_cloak(rgb, target=str(styles), steps=100, matched_budget=budget, seed=seed)
        return r.image, time.perf_counter() - t, None
    if method.startswith("sfumato-"):
        from sfumato.protections.cloak import cloak_array

        quality = method.split("-")[1]
        extra = {"target_renderer": "latent-wct", "style_strength": 0.35} if method.endswith("-wct") else {}
        cfg = CloakConfig.preset(quality=quality, target_style=str(styles), seed=seed, **extra)
        r = cloak_array(rgb, cfg, keep_target_image=True)
        return r.image, time.perf_counter() - t, r.target_image
    raise ValueError(f"unknown method {method!r}; choose from {METHODS}")


def targets_table(judge, tae, train, test, artists, args, tmp: Path) -> list[str]:  # noqa: ANN001
    """``--targets-only``: the judge's verdict on each candidate target's own AI view (no cloak)."""
    from sfumato.config import CloakConfig
    from sfumato.encoders.views import ai_view
    from sfumato.io.tensors import resize, to_hwc, to_nchw, work_size
    from sfumato.targets.style_target import render_target
    from sfumato.targets.styles import resolve_style_option

    cfg = CloakConfig.preset(quality="slow", seed=args.seed)
    res_px = cfg.effort.resolution
    others = sorted(train)
    lines = ["Each cell: P(true artist) of the target's AI view, and the judge's verdict (✓ = still the true artist).",
             "", "| artist | painting | " + " | ".join(f"target {o}" for o in others) + " | targets judged true |",
             "|---|---|" + "---|" * (len(others) + 1)]
    total = {a: [0, 0] for a in artists}
    for artist in artists:
        cands = {c.name: c for c in resolve_style_option(str(style_folders(train, artist, args.exemplars, tmp)))}
        for path in sorted(test[artist])[: args.per_artist]:
            rgb = load(Path(path), args.side)
            x0 = resize(to_nchw(rgb), work_size(*rgb.shape[:2], res_px))
            cells, hits = [], 0
            for o in others:
                if o not in cands:
                    cells.append("–")
                    continue
                img, _, _ = render_target(x0, tae, [cands[o]], cfg, seed=args.seed)  # as the cloak renders it
                p = judge.predict_proba([ai_view(to_hwc(img), tae)])[0]
                true = judge.artists[int(p.argmax())] == artist
                hits += true
                cells.append(f"{p[judge.artists.index(artist)]:.2f} {'✓' if true else '✗'}")
            total[artist][0] += hits
            total[artist][1] += len(cands)
            lines.append(f"| {artist} | {Path(path).name[:40]} | " + " | ".join(cells) + f" | {hits}/{len(cands)} |")
            print(lines[-1], flush=True)
    lines += ["", "| artist | targets still judged the true artist |", "|---|---|"]
    lines += [f"| {a} | {h}/{n} |" for a, (h, n) in total.items()]
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=str(SHARED / "corpus" / "art"))
    ap.add_argument("--methods", nargs="+", default=["clean", "glaze-naive", "sfumato-fast", "sfumato-default"],
                    choices=METHODS)
    ap.add_argument("--per-artist", type=int, default=2, help="held-out paintings per artist")
    ap.add_argument("--artists", nargs="+", default=None)
    ap.add_argument("--test-size", type=float, default=0.3)
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--exemplars", type=int, default=4, help="train-split paintings per target-style folder")
    ap.add_argument("--side", type=int, default=512, help="long side of the published painting (downscale)")
    ap.add_argument("--attacks", default="all-but-impress",
                    help="'all-but-impress' (default; IMPRESS costs minutes per image), 'all', 'default', 'none' "
                         "or comma-separated names")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--speed-sides", type=int, nargs="*", default=[],
                    help="also time sfumato-default on one Van Gogh painting at these long sides")
    ap.add_argument("--speed-only", action="store_true")
    ap.add_argument("--targets-only", action="store_true", help="judge every candidate target, no cloak (see above)")
    ap.add_argument("--json", default=None, help="write per-painting rows here")
    ap.add_argument("-o", "--out", default=None, help="write the markdown report here too")
    args = ap.parse_args(argv)

    os.environ.setdefault("SFUMATO_MODELS_DIR", str(SHARED / "models"))
    import torch

    from sfumato.attacks import apply_attack, resolve_attacks
    from sfumato.encoders import load_encoder
    from sfumato.encoders.views import ai_view
    from sfumato.judges import StyleJudge

    art = Path(args.corpus)
    train, test = split(art, args.test_size, args.split_seed)
    artists = args.artists or sorted(test)
    tmp = Path(tempfile.mkdtemp(prefix="sfumato-style-eff-"))
    lines = [f"Machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
             f"threads {torch.get_num_threads()}. Command: `python benchmarks/style_efficacy.py "
             f"{' '.join(argv if argv is not None else sys.argv[1:])}`", ""]

    if args.speed_sides:
        from sfumato.config import CloakConfig
        from sfumato.protections.cloak import cloak_array

        vg = sorted(test["vincent_van_gogh"])[0]
        styles = style_folders(train, "vincent_van_gogh", args.exemplars, tmp)
        lines += ["| long side | preset | seconds | LPIPS-alex | L∞ ×255 |", "|---|---|---|---|---|"]
        for side in args.speed_sides:
            rgb = load(Path(vg), side)
            t = time.perf_counter()
            r = cloak_array(rgb, CloakConfig.preset(quality="default", target_style=str(styles), seed=args.seed))
            dt = time.perf_counter() - t
            lines.append(f"| {max(rgb.shape[:2])} ({rgb.shape[1]}×{rgb.shape[0]}) | default | {dt:.1f} | "
                         f"{r.achieved['lpips_alex']:.4f} | {r.achieved['linf'] * 255:.1f} |")
            print(lines[-1], flush=True)
        lines.append(f"\nImage: `{Path(vg).name}` (held-out Van Gogh), TAEF2, target styles = the other artists.")
        if args.speed_only:
            return emit(lines, args.out)

    judge = StyleJudge.train({a: train[a] for a in sorted(train)})
    tae = load_encoder("taef2")
    if args.targets_only:
        return emit(lines + targets_table(judge, tae, train, test, artists, args, tmp), args.out)
    if args.attacks == "all-but-impress":
        from sfumato.attacks import SUITES

        args.attacks = ",".join(a for a in SUITES["all"] if a != "impress")
    attacks = [] if args.attacks == "none" else resolve_attacks(args.attacks)
    conditions = ["none"] + [a.name for a in attacks]
    rows = []
    for artist in artists:
        styles = style_folders(train, artist, args.exemplars, tmp)
        for path in sorted(test[artist])[: args.per_artist]:
            rgb = load(Path(path), args.side)
            for method in args.methods:
                img, secs, target_img = protect(method, rgb, styles, args.seed)
                target_judged = None
                if target_img is not None:  # the target itself, seen through TAEF2: the most a cloak toward it can show
                    pt = judge.predict_proba([ai_view(target_img, tae)])[0]
                    target_judged = {"p_true": float(pt[judge.artists.index(artist)]),
                                     "pred": judge.artists[int(pt.argmax())]}
                from sfumato.metrics.saved import protected_quality

                q = protected_quality(img, rgb) if method != "clean" else {"lpips_alex": 0.0, "linf": 0.0}
                probs, usable = {}, {}
                for cond in conditions:
                    x = img if cond == "none" else apply_attack(cond, img, seed=args.seed, autoencoder=tae)
                    if x.shape != img.shape:
                        usable[cond] = True
                    else:
                        usable[cond] = bool(cond == "none" or 10 * np.log10(
                            1 / max(float(np.mean((x - img) ** 2)), 1e-12)) >= 25.0)
                    p = judge.predict_proba([ai_view(x, tae)])[0]
                    probs[cond] = {"p_true": float(p[judge.artists.index(artist)]),
                                   "pred": judge.artists[int(p.argmax())]}
                best = max((c for c in conditions if c != "none" and usable[c]),
                           key=lambda c: probs[c]["p_true"], default=None)
                row = {"artist": artist, "painting": Path(path).name, "method": method, "seconds": round(secs, 1),
                       "lpips_alex": round(float(q["lpips_alex"]), 4), "linf_255": round(float(q["linf"]) * 255, 1),
                       "judged": probs, "usable": usable, "best_of_n": best, "target_judged": target_judged}
                rows.append(row)
                print(f"{artist:17s} {Path(path).name[:40]:40s} {method:16s} P(true) {probs['none']['p_true']:.2f} "
                      f"pred {probs['none']['pred']:12s} LPIPS {row['lpips_alex']:.4f} {secs:6.1f}s"
                      + (f" best-of-N {best} {probs[best]['p_true']:.2f}" if best else "")
                      + (f" target P(true) {target_judged['p_true']:.2f} pred {target_judged['pred']}"
                         if target_judged else ""), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=float))

    def agg(sel: list[dict], cond: str) -> tuple[str, str]:
        if not sel:
            return "–", "–"
        vals = []
        hits = []
        for r in sel:
            c = r["best_of_n"] if cond == "best" else cond
            j = r["judged"][c] if c else r["judged"]["none"]
            vals.append(j["p_true"])
            hits.append(j["pred"] == r["artist"])
        return f"{sum(hits)}/{len(hits)}", f"{np.mean(vals):.2f}"

    n = len({r["painting"] for r in rows})
    lines += [f"Held-out paintings: {n} ({args.per_artist} per artist where available; split seed "
              f"{args.split_seed}, test size {args.test_size}); judge trained on the train split only "
              f"({sum(len(v) for v in train.values())} paintings). Published size ≤ {args.side} px.", "",
              "### Unattacked saved files", "",
              "| method | AI view judged true artist | mean P(true artist) | target's own AI view judged true artist "
              "| its mean P(true) | max LPIPS-alex | mean s/image |",
              "|---|---|---|---|---|---|---|"]
    for m in args.methods:
        sel = [r for r in rows if r["method"] == m]
        share, mean = agg(sel, "none")
        tj = [(r["target_judged"], r["artist"]) for r in sel if r.get("target_judged")]
        tshare = f"{sum(t['pred'] == a for t, a in tj)}/{len(tj)}" if tj else "–"
        tmean = f"{np.mean([t['p_true'] for t, _ in tj]):.2f}" if tj else "–"
        lines.append(f"| {m} | {share} | {mean} | {tshare} | {tmean} | {max(r['lpips_alex'] for r in sel):.4f} | "
                     f"{np.mean([r['seconds'] for r in sel]):.1f} |")
    lines += ["", "### Per artist (unattacked): share judged true artist / mean P(true)", "",
              "| method | " + " | ".join(artists) + " |", "|---|" + "---|" * len(artists)]
    for m in args.methods:
        cells = []
        for a in artists:
            share, mean = agg([r for r in rows if r["method"] == m and r["artist"] == a], "none")
            cells.append(f"{share} / {mean}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
        if any(r.get("target_judged") for r in rows if r["method"] == m):
            cells = []
            for a in artists:
                tj = [r["target_judged"] for r in rows if r["method"] == m and r["artist"] == a and r.get("target_judged")]
                cells.append(f"{sum(t['pred'] == a for t in tj)}/{len(tj)} / {np.mean([t['p_true'] for t in tj]):.2f}"
                             if tj else "–")
            lines.append(f"| {m}: its target itself | " + " | ".join(cells) + " |")
    if attacks:
        lines += ["", "### After each attack: share judged true artist / mean P(true)", "",
                  "| attack | " + " | ".join(args.methods) + " |", "|---|" + "---|" * len(args.methods)]
        for cond in conditions[1:] + ["best"]:
            cells = []
            for m in args.methods:
                share, mean = agg([r for r in rows if r["method"] == m], cond)
                cells.append(f"{share} / {mean}")
            lines.append(f"| {'best-of-N' if cond == 'best' else cond} | " + " | ".join(cells) + " |")
    return emit(lines, args.out)


if __name__ == "__main__":
    sys.exit(main())
