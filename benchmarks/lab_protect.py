"""Protect every image of one ``corpus/art128`` artist for the mimicry lab (issue 17).

    OMP_NUM_THREADS=1 python benchmarks/lab_protect.py --artist vincent_van_gogh
    OMP_NUM_THREADS=1 python benchmarks/lab_protect.py --artist vincent_van_gogh --methods sfumato-default
    OMP_NUM_THREADS=1 python benchmarks/lab_protect.py --artist vincent_van_gogh --methods noise-same-budget

The lab (``benchmarks/lab.py``, ``sfumato lab style``) trains a latent generator with one artist's images
replaced by their protected versions; this script makes those versions with the protection meter's own
protect step (:func:`meter.protect_one`), so the methods are exactly the meter's: ``sfumato-default``
(``CloakConfig.preset()``), ``sfumato-slow`` (``CloakConfig.preset(quality="slow")``) and
``glaze-same-target`` (naive Glaze, 500 Adam steps, aimed at the same rendered target tensor as
``sfumato-default`` and held to the same saved-file budget, LPIPS-alex <= 0.05 and L-inf <= 24/255) and
the control ``noise-same-budget`` (seeded Gaussian noise bisected to the same saved budget,
``benchmarks/meter_noise.py``): does *any* perturbation of that size change what the model learns?
Every image is cloaked at its own 128 px size (a trainer of a 128 px model sees exactly these pixels).
Targets are the built-in procedural styles (``auto``): none comes from a judge's training images.

Output: ``runs/lab/protect/images/<artist>/<stem>.<method>.png`` and one JSON line per (image, method) in
``runs/lab/protect/protect.jsonl`` (resumable). Methods run one after the other over all images, so a
partial run still gives complete method sets.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from meter import METHODS, protect_all  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SFUMATO_SHARED_DIR", ROOT.parent / "shared"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--artist", default="vincent_van_gogh")
    ap.add_argument("--methods", nargs="+", default=[m for m in METHODS if m != "clean"],
                    choices=[m for m in METHODS if m != "clean"])
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "lab" / "protect")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--glaze-steps", type=int, default=500)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--reverse", action="store_true", help="last image first (a second process, from the end)")
    args = ap.parse_args(argv)
    folder = SHARED / "corpus" / "art128" / args.artist
    if not folder.is_dir():
        ap.error(f"{folder} is not a folder of art128 images")
    images = [(args.artist, p) for p in sorted(folder.glob("*.jpg"))][: args.limit]
    if args.reverse:
        images = images[::-1]
    for method in [m for m in METHODS if m in args.methods]:
        protect_all(images, args.out, [method], seed=args.seed, glaze_steps=args.glaze_steps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
