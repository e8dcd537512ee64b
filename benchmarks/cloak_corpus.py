"""Cloak a folder of the shared corpus with the real CLI/API and report budget and latent figures.

Reproduces the core acceptance figures: every saved output's LPIPS-alex and L∞ against the budget, and
the distribution of the relative latent reduction toward the target (TAEF2 unless --encoder).

    python benchmarks/cloak_corpus.py ../shared/corpus/art/vincent_van_gogh -o out/vangogh \
        [--intensity default] [--quality default] [--limit N]

Models: SFUMATO_MODELS_DIR (TAEF2 from madebyollin/taesd; LPIPS v0.1 AlexNet). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--intensity", default="default")
    ap.add_argument("--quality", default="default")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target-renderer", default="gatys", choices=["gatys", "latent-wct"])
    ap.add_argument("--style-strength", type=float, default=1.0)
    ap.add_argument("--models-dir", default=None)
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args(argv)

    import sfumato.io as sio
    from sfumato.api import cloak_file
    from sfumato.config import CloakConfig
    from sfumato.io.outputs import manifest_path_for

    cfg = CloakConfig.preset(intensity=args.intensity, quality=args.quality, seed=args.seed,
                             target_renderer=args.target_renderer, style_strength=args.style_strength)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = sio.iter_image_paths([args.folder])[: args.limit]
    rows = []
    t0 = time.perf_counter()
    for f in files:
        man = manifest_path_for(out, f.stem)
        if args.resume and man.exists():
            m = json.loads(man.read_text())
        else:
            m = cloak_file(f, out, cfg, overwrite=True, models_dir=args.models_dir).manifest
        lat = next(iter(m["latent"].values()))
        rows.append((f.name, m["source"]["size"], m["target"]["style"], m["achieved"]["lpips_alex"],
                     m["achieved"]["linf"] * 255, m["achieved"]["psnr"], m["achieved"]["ssim"],
                     lat["relative_reduction"], m["timing_s"]["file_total"], m["within_budget"]))
        print(f"{f.name}: lpips={rows[-1][3]:.4f} linf={rows[-1][4]:.1f}/255 reduction={rows[-1][7]:.1%} "
              f"({rows[-1][8]:.0f}s)", file=sys.stderr, flush=True)
    red = [r[7] for r in rows]
    print(f"\n## Cloak on `{args.folder}` — intensity {args.intensity}, quality {args.quality}, seed {args.seed}\n")
    print(f"Machine: {platform.machine()}, {platform.processor() or 'cpu'}, Python {platform.python_version()}; "
          f"encoder TAEF2; LPIPS v0.1 AlexNet; {len(rows)} images; {time.perf_counter() - t0:.0f} s total\n")
    print("| image | size | target | LPIPS-alex | L∞ (/255) | PSNR | SSIM | latent reduction | s | in budget |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0][:40]} | {r[1][0]}×{r[1][1]} | {r[2]} | {r[3]:.4f} | {r[4]:.1f} | {r[5]:.1f} | {r[6]:.3f} | "
              f"{r[7]:.1%} | {r[8]:.0f} | {'yes' if r[9] else 'NO'} |")
    q = np.percentile(red, [0, 25, 50, 75, 100])
    print(f"\nRelative latent reduction toward the target: min {q[0]:.1%}, p25 {q[1]:.1%}, "
          f"**median {statistics.median(red):.1%}**, p75 {q[3]:.1%}, max {q[4]:.1%}")
    print(f"Max LPIPS-alex {max(r[3] for r in rows):.4f}; max L∞ {max(r[4] for r in rows):.1f}/255; "
          f"all within budget: {all(r[9] for r in rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
