"""Robustness measurements: EOT vs none, anti-fingerprint vs deterministic, masking on flat-colour art.

Three parts, each writing one markdown table (all from the shared corpus; TAEF2; LPIPS-alex budget on the
saved 8-bit file):

``--part eot``: Van Gogh paintings (``--limit``, long side ``--side``), default preset with ``eot="none"``
and with ``eot="default"`` at the same budget; then :func:`sfumato.verify.check` (no manifest, so
``retained`` is the share of the cloak's own latent shift that survives, in its own direction, after the
same attack is applied to the original too) for the whole ``all`` attack suite; mean retained per attack
side by side, their ratio, and best-of-N.

``--part fingerprint``: can a detector trained on our outputs spot them? Monet paintings (256 px) are
cloaked by the ``fast`` preset twice: with the per-image anti-fingerprint seed (random start and
work-resolution jitter) and deterministically (``anti_fingerprint=False``). For each variant a
logistic-regression detector on high-pass residual spectra (log-magnitude FFT of ``img − blur(img)``,
binned; clean originals vs cloaked) is trained on the first half of the images and tested on the other
half (no image on both sides): ROC AUC on the test half. A trained *remover* is not part of this script.

``--part masking``: flat-vector illustrations, ``fast`` preset with and without adaptive masking at the
same budget: flat-region energy (RMS change over the flat regions of the original), LPIPS, PSNR and the
latent reduction toward the target.

    python benchmarks/robustness.py --part eot --limit 3 -o docs/benchmarks-robustness-eot.md
    python benchmarks/robustness.py --part fingerprint --limit 24
    python benchmarks/robustness.py --part masking --limit 4
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from _common import load_downscaled as load

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SFUMATO_SHARED_DIR", ROOT.parent / "shared"))


def images(folder: Path, limit: int) -> list[Path]:
    exts = {".png", ".jpg", ".jpeg", ".webp"}
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in exts)[:limit]


def part_eot(args: argparse.Namespace) -> list[str]:
    from sfumato.config import CloakConfig, Robustness
    from sfumato.style_cloak import cloak_array
    from sfumato.verify import check

    variants = {"no EOT": "none", "EOT default": "default"}
    retained: dict[str, dict[str, list[float]]] = {v: {} for v in variants}
    best: dict[str, list[float]] = {v: [] for v in variants}
    extra = []
    for path in images(SHARED / "corpus/art/vincent_van_gogh", args.limit):
        rgb = load(path, args.side)
        for name, eot in variants.items():
            cfg = CloakConfig.preset(quality=args.quality, seed=args.seed, robustness=Robustness(eot=eot))
            t = time.perf_counter()
            r = cloak_array(rgb, cfg)
            secs = time.perf_counter() - t
            rep = check(r.image, original=rgb, attacks=args.attacks, judges=False, seed=args.seed)
            for a in rep.attacks:
                if a.retained is not None and a.usable:
                    retained[name].setdefault(a.name, []).append(float(a.retained))
            if rep.best_of_n:
                best[name].append(float(rep.best_of_n["retained"]))
            extra.append(f"| {path.name[:48]} | {name} | {r.achieved['lpips_alex']:.4f} | "
                         f"{r.latent[0]['relative_reduction'] * 100:.1f}% | {secs:.0f} |")
            print(extra[-1], flush=True)
    lines = [f"### EOT vs no EOT ({args.quality} preset, {args.limit} Van Gogh paintings at ≤ {args.side} px)", "",
             "| painting | variant | LPIPS-alex | latent reduction | s |", "|---|---|---|---|---|", *extra, "",
             "Mean share of the cloak's latent shift retained after each usable attack (1 = all of it):", "",
             "| attack | no EOT | EOT default | ratio |", "|---|---|---|---|"]
    names = sorted(set(retained["no EOT"]) | set(retained["EOT default"]))
    for n in names:
        a, b = (np.mean(retained[v].get(n, [np.nan])) for v in variants)
        lines.append(f"| {n} | {a:.2f} | {b:.2f} | {b / a if a > 0 else float('nan'):.2f} |")
    a, b = (np.mean(best[v]) if best[v] else np.nan for v in variants)
    lines.append(f"| **best-of-N** | {a:.2f} | {b:.2f} | {b / a if a > 0 else float('nan'):.2f} |")
    return lines


def residual_features(rgb: np.ndarray, size: int = 256, bins: int = 24) -> np.ndarray:
    """Log-magnitude spectrum of the high-pass residual (grey), centre-cropped to ``size``, binned radially
    and by angle, plus the energy at the 8-px and 16-px periodic frequencies (the TAE's stride)."""
    from PIL import Image, ImageFilter

    img = Image.fromarray((np.clip(rgb, 0, 1) * 255).round().astype(np.uint8))
    blur = np.asarray(img.filter(ImageFilter.GaussianBlur(1.0)), dtype=np.float32) / 255
    r = (np.asarray(img, dtype=np.float32) / 255 - blur).mean(axis=2)
    h, w = r.shape
    s = min(size, h, w)
    r = r[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    f = np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(r))))
    yy, xx = np.mgrid[0:s, 0:s] - s // 2
    rad = np.sqrt(yy**2 + xx**2) / (s / 2)
    ang = (np.arctan2(yy, xx) % np.pi) / np.pi
    feats = []
    for i in range(bins):
        m = (rad >= i / bins) & (rad < (i + 1) / bins)
        feats.append(f[m].mean() if m.any() else 0.0)
    for j in range(8):
        m = (rad > 0.25) & (ang >= j / 8) & (ang < (j + 1) / 8)
        feats.append(f[m].mean())
    for period in (8, 16):
        k = s // period
        idx = [(s // 2 + a * k) % s for a in range(-period // 2, period // 2)]
        feats.append(f[np.ix_(idx, idx)].mean())
    feats += [float(r.std()), float(np.abs(r).mean())]
    return np.array(feats, dtype=np.float64)


def part_fingerprint(args: argparse.Namespace) -> list[str]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    from sfumato.config import CloakConfig, Robustness
    from sfumato.style_cloak import cloak_array

    paths = images(SHARED / "corpus/art/claude_monet", 10_000)
    paths = [p for p in paths if p.name.startswith("cyclegan")][: args.limit]
    clean = [load(p, 256) for p in paths]
    half = len(paths) // 2
    lines = [f"### Anti-fingerprint: detector AUC ({len(paths)} Monet paintings, 256 px; train on the first "
             f"{half}, test on the other {len(paths) - half}; {args.quality} preset, "
             f"target renderer {args.renderer})", "",
             "| variant | detector test AUC (clean vs cloaked) | mean LPIPS-alex |", "|---|---|---|"]
    for name, anti in (("anti-fingerprint (default)", True), ("deterministic", False)):
        prot, lp = [], []
        for rgb in clean:
            cfg = CloakConfig.preset(quality=args.quality, seed=args.seed, target_renderer=args.renderer,
                                     robustness=Robustness(anti_fingerprint=anti))
            r = cloak_array(rgb, cfg)
            prot.append(r.image)
            lp.append(r.achieved["lpips_alex"])
        x_c = np.stack([residual_features(c) for c in clean])
        x_p = np.stack([residual_features(p) for p in prot])
        xtr = np.concatenate([x_c[:half], x_p[:half]])
        ytr = np.r_[np.zeros(half), np.ones(half)]
        xte = np.concatenate([x_c[half:], x_p[half:]])
        yte = np.r_[np.zeros(len(paths) - half), np.ones(len(paths) - half)]
        sc = StandardScaler().fit(xtr)
        det = LogisticRegression(C=1.0, max_iter=2000).fit(sc.transform(xtr), ytr)
        auc = roc_auc_score(yte, det.predict_proba(sc.transform(xte))[:, 1])
        lines.append(f"| {name} | {auc:.3f} | {np.mean(lp):.4f} |")
        print(lines[-1], flush=True)
    return lines


def part_masking(args: argparse.Namespace) -> list[str]:
    from sfumato.config import CloakConfig, Robustness
    from sfumato.masking import visible_noise_metric
    from sfumato.perturb import to_nchw
    from sfumato.style_cloak import cloak_array

    lines = [f"### Adaptive masking on flat-colour illustrations ({args.quality} preset, ≤ {args.side} px)", "",
             "| image | masking | flat-region energy (×255) | LPIPS-alex | PSNR dB | latent reduction |",
             "|---|---|---|---|---|---|"]
    agg: dict[bool, list[float]] = {False: [], True: []}
    for path in images(SHARED / "corpus/illustration/flat_vector", args.limit):
        rgb = load(path, args.side)
        for masking in (False, True):
            cfg = CloakConfig.preset(quality=args.quality, seed=args.seed, robustness=Robustness(masking=masking))
            r = cloak_array(rgb, cfg)
            m = visible_noise_metric(to_nchw(rgb), to_nchw(r.image))
            agg[masking].append(m["flat_region_energy"])
            lines.append(f"| {path.name[:40]} | {'on' if masking else 'off'} | {m['flat_region_energy'] * 255:.2f} | "
                         f"{m['lpips']:.4f} | {m['psnr']:.1f} | {r.latent[0]['relative_reduction'] * 100:.1f}% |")
            print(lines[-1], flush=True)
    lines.append(f"| **mean** | off / on | {np.mean(agg[False]) * 255:.2f} / {np.mean(agg[True]) * 255:.2f} | | | |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", required=True, choices=["eot", "fingerprint", "masking"])
    ap.add_argument("--limit", type=int, default=3)
    ap.add_argument("--side", type=int, default=512)
    ap.add_argument("--quality", default=None, help="preset (default: default for eot, fast otherwise)")
    ap.add_argument("--renderer", default="gatys", choices=["gatys", "latent-wct"])
    ap.add_argument("--attacks", default="all-but-impress",
                    help="'all-but-impress' (default; IMPRESS costs minutes per image), 'all', 'default' or names")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--out", default=None)
    args = ap.parse_args(argv)
    args.quality = args.quality or ("default" if args.part == "eot" else "fast")
    if args.attacks == "all-but-impress":
        from sfumato.attacks import SUITES

        args.attacks = [a for a in SUITES["all"] if a != "impress"]
    os.environ.setdefault("SFUMATO_MODELS_DIR", str(SHARED / "models"))
    import torch

    head = [f"Machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, threads "
            f"{torch.get_num_threads()}. Command: `python benchmarks/robustness.py "
            f"{' '.join(argv if argv is not None else sys.argv[1:])}`", ""]
    body = {"eot": part_eot, "fingerprint": part_fingerprint, "masking": part_masking}[args.part](args)
    text = "\n".join(head + body)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
