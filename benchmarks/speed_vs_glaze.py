"""Sfumato's default cloak against the Glaze-objective baseline (500 Adam steps), side by side in one run.

    python benchmarks/speed_vs_glaze.py [--size 1024] [--methods sfumato-default glaze] [--glaze-steps 500]

Image: a held-out Van Gogh painting from the shared corpus (``--image``; default the 2168×1840
*Orchard in blossom bordered by cypresses*), centre-cropped to a square and Lanczos-resized to
``--size``² (the benchmark's input; the product itself never crops). Encoder TAEF2, LPIPS AlexNet,
fp32, channels_last, torch threads = all cores, budget LPIPS-alex ≤ 0.05 and L∞ ≤ 24/255 on the saved
8-bit image for both methods (Glaze: α = 30, p = 0.05, calibrated to the same budget). Models and the
models' caches are warmed before anything is timed; each method's seconds cover target rendering,
optimisation and calibration.

Protection is reported three ways for each result: the relative latent reduction toward the method's own
target, the shift of the latent away from the clean one (relative to its norm; the same yardstick for
both), and the independent style judge (MobileNetV2 features + logistic regression, trained on every
shared painting except this one; it never enters any loss) on the TAEF2 AI view: P(Van Gogh).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import judge_without  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SFUMATO_SHARED_DIR", ROOT.parent / "shared"))
DEFAULT_IMAGE = "vincent-van-gogh_orchard-in-blossom-bordered-by-cypresses-1888-1.jpg"


def square(path: Path, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        s = min(im.size)
        left, top = (im.size[0] - s) // 2, (im.size[1] - s) // 2
        im = im.crop((left, top, left + s, top + s)).resize((size, size), Image.Resampling.LANCZOS)
        return np.asarray(im, dtype=np.float32) / 255


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--image", default=None)
    ap.add_argument("--methods", nargs="+", default=["sfumato-default", "glaze"],
                    choices=["sfumato-fast", "sfumato-default", "sfumato-slow", "glaze"])
    ap.add_argument("--glaze-steps", type=int, default=500)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("-o", "--out", default=None)
    args = ap.parse_args(argv)
    os.environ.setdefault("SFUMATO_MODELS_DIR", str(SHARED / "models"))

    import torch

    from sfumato.baselines import get_baseline
    from sfumato.config import Budget, CloakConfig
    from sfumato.encoders import load_encoder
    from sfumato.encoders.views import ai_view
    from sfumato.io.tensors import resize, to_nchw, work_size
    from sfumato.metrics.saved import protected_quality
    from sfumato.protections.cloak import cloak_array

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    src = Path(args.image) if args.image else SHARED / "corpus/art/vincent_van_gogh" / DEFAULT_IMAGE
    rgb = square(src, args.size)
    judge = judge_without(SHARED / "corpus/art", [src])
    taef2 = load_encoder("taef2")
    budget = Budget(lpips=0.05, linf=24 / 255)

    # warm every cache (models, LPIPS, style exemplars) on a small image: not timed
    warm = square(src, 128)
    cloak_array(warm, CloakConfig.preset(quality="fast"))
    get_baseline("glaze")(warm, steps=2, resolution=128, matched_budget=budget)

    x_clean = resize(to_nchw(rgb), work_size(args.size, args.size, 512))
    with torch.no_grad():
        z_clean = taef2.encode(x_clean)

    def shift(img: np.ndarray) -> float:
        with torch.no_grad():
            z = taef2.encode(resize(to_nchw(img), work_size(args.size, args.size, 512)))
        return float((z - z_clean).norm() / z_clean.norm())

    def p_artist(img: np.ndarray) -> tuple[float, str]:
        p = judge.predict_proba([ai_view(img, taef2, resolution=512)])[0]
        return float(p[judge.artists.index("vincent_van_gogh")]), judge.artists[int(np.argmax(p))]

    rows, parts = [], []
    for m in args.methods:
        t = time.perf_counter()
        if m.startswith("sfumato-"):
            cfg = CloakConfig.preset(quality=m.split("-", 1)[1])  # intensity "default": the same budget
            assert cfg.budget == budget, cfg.budget
            r = cloak_array(rgb, cfg)
        else:
            r = get_baseline("glaze")(rgb, steps=args.glaze_steps, resolution=512, matched_budget=budget)
        secs = time.perf_counter() - t
        q = protected_quality(r.image, rgb)
        pa, pred = p_artist(r.image)
        rows.append((m, r.steps_run, secs, q, r.latent[0]["relative_reduction"], shift(r.image), pa, pred))
        if hasattr(r, "timing_s"):
            parts.append(f"{m}: " + ", ".join(f"{k} {v:.1f} s" for k, v in r.timing_s.items() if k != "load"))
        print(f"{m}: {secs:.1f}s", file=sys.stderr, flush=True)
    pc, predc = p_artist(rgb)
    ref = rows[0][2]
    lines = [f"Machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} (CPU, fp32), threads "
             f"{torch.get_num_threads()}. Command: `python benchmarks/speed_vs_glaze.py "
             f"{' '.join(argv if argv is not None else sys.argv[1:])}`", "",
             f"Image: `{src.name}`, centre square, {args.size}×{args.size}. Budget LPIPS-alex ≤ 0.05, L∞ ≤ 24/255 "
             f"(saved 8-bit). Clean AI view: P(Van Gogh) {pc:.2f} (judged {predc}).", "",
             f"| method | steps | seconds | × {rows[0][0]} | LPIPS-alex | L∞ ×255 | latent reduction (own target) | "
             "latent shift from clean | AI view P(Van Gogh) | AI view judged |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for m, steps, secs, q, rr, sh, pa, pred in rows:
        lines.append(f"| {m} | {steps} | {secs:.1f} | {secs / ref:.2f} | {q['lpips_alex']:.4f} | {q['linf'] * 255:.1f} | "
                     f"{rr:.1%} | {sh:.3f} | {pa:.2f} | {pred} |")
    if parts:
        lines += ["", "Where Sfumato's time goes: " + "; ".join(parts) + "."]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
