"""Validate the differentiable JPEG of :mod:`sfumato.eot` against Pillow (libjpeg) on real images.

For each image (long side reduced to ``--size`` with Pillow Lanczos, 8-bit) and each quality / chroma
setting it prints PSNR(diffJPEG(x), PillowJPEG(x)) — how close the stand-in is to the real codec — beside
PSNR(x, PillowJPEG(x)) — how much the real codec changes the image. The first must be far above the
second for the stand-in to be a faithful surrogate.

    python scripts/validate_diff_jpeg.py [--shared ../shared] [--size 512] [--rounding ste|cubic]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from sfumato.attacks.real import jpeg as pillow_jpeg
from sfumato.optimise.eot import JpegParams, diff_jpeg

IMAGES = (
    "art/vincent_van_gogh",
    "art/claude_monet",
    "photos/dog",
    "photos/teapot",
    "illustration/flat_vector",
    "illustration/webcomic",
)
QUALITIES = (95, 85, 75, 60)
SUBSAMPLINGS = ("4:2:0", "4:4:4")


def load(path: Path, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        s = min(1.0, size / max(im.size))
        if s < 1:
            im = im.resize((max(8, round(im.width * s)), max(8, round(im.height * s))), Image.Resampling.LANCZOS)
        return np.asarray(im, dtype=np.float32) / 255


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / max(float(np.mean((a.astype(np.float64) - b) ** 2)), 1e-12)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared")
    ap.add_argument("--size", type=int, default=512, help="long side in pixels (default 512, the work resolution)")
    ap.add_argument("--rounding", choices=("ste", "cubic"), default="ste")
    args = ap.parse_args()
    paths = [sorted((args.shared / "corpus" / d).iterdir())[0] for d in IMAGES]
    print(f"rounding={args.rounding}  size={args.size}  (dB; 'diff' = PSNR(diffJPEG, Pillow), "
          "'codec' = PSNR(x, Pillow))")
    header = "image".ljust(40) + "".join(f"q{q} {s:<6}".ljust(16) for s in SUBSAMPLINGS for q in QUALITIES)
    print(header)
    worst = float("inf")
    diffs = []
    for p in paths:
        x = load(p, args.size)
        xt = torch.from_numpy(x).permute(2, 0, 1)[None]
        cells = []
        for s in SUBSAMPLINGS:
            for q in QUALITIES:
                ref = pillow_jpeg(x, quality=q, subsampling=s)
                with torch.no_grad():
                    ours = diff_jpeg(xt, JpegParams(quality=q, subsampling=s, rounding=args.rounding))
                ours = ours[0].permute(1, 2, 0).numpy()
                d, c = psnr(ours, ref), psnr(x, ref)
                worst = min(worst, d)
                diffs.append(d)
                cells.append(f"{d:5.1f}/{c:4.1f}".ljust(16))
        name = f"{p.parent.name}/{p.name}"[:38]
        print(f"{name:<40}" + "".join(cells) + f"  {x.shape[1]}x{x.shape[0]}")
    print(f"cells: diff/codec.  min diff PSNR {worst:.1f} dB, mean {np.mean(diffs):.1f} dB")


if __name__ == "__main__":
    main()
