"""Seconds per image of the style cloak for each quality preset at 512² and 1024² (not a timed test).

    python benchmarks/speed.py [--sizes 512 1024] [--presets fast default slow] [--image PATH]

Image: a real painting from the shared corpus (Van Gogh, resized with Lanczos to a square) unless
--image. Encoder TAEF2, LPIPS AlexNet, fp32, channels_last, torch threads = physical cores.
Prints one table with each preset's seconds and its ratio to the fast preset, measured in one run.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    ap.add_argument("--presets", nargs="+", default=["fast", "default", "slow"])
    ap.add_argument("--image", default=None)
    ap.add_argument("--models-dir", default=None)
    args = ap.parse_args(argv)

    import torch
    from PIL import Image

    from sfumato.config import CloakConfig
    from sfumato.encoders.cache import load_encoders
    from sfumato.protections.cloak import cloak_array

    torch.set_num_threads(os.cpu_count() or 1)
    src = Path(args.image) if args.image else next(
        iter(sorted((Path(__file__).resolve().parents[2] / "shared/corpus/art/vincent_van_gogh").glob("*.jpg"))))
    base = Image.open(src).convert("RGB")
    load_encoders(CloakConfig(), models_dir=args.models_dir)  # warm the model cache (not timed)
    warm = np.asarray(base.resize((128, 128)), dtype=np.float32) / 255  # styles, LPIPS, exemplar latents
    cloak_array(warm, CloakConfig.preset(quality="fast"), models_dir=args.models_dir)
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}; image {src.name}\n")
    print("| size | preset | steps | encoder res | seconds | × fast | latent reduction | LPIPS-alex |")
    print("|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        rgb = np.asarray(base.resize((size, size), Image.Resampling.LANCZOS), dtype=np.float32) / 255
        fast = None
        for preset in args.presets:
            cfg = CloakConfig.preset(quality=preset)
            t = time.perf_counter()
            r = cloak_array(rgb, cfg, models_dir=args.models_dir)
            s = time.perf_counter() - t
            fast = fast or s
            print(f"| {size}² | {preset} | {r.steps_run} | {cfg.effort.resolution} | {s:.1f} | {s / fast:.2f} | "
                  f"{r.latent[0]['relative_reduction']:.1%} | {r.achieved['lpips_alex']:.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
