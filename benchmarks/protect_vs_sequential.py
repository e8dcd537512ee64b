"""Joint ``protect`` vs the published two-app order (poison, then cloak) at the same total budget.

    python benchmarks/protect_vs_sequential.py [--limit 3] [--size 400] [--concept tree --target cat]

Paintings: the first ``--limit`` Van Gogh files of ``../shared/corpus/art/vincent_van_gogh`` (sorted by
name), each downscaled with Lanczos so its long side is ``--size`` px (the optimisation is the expensive
part; the comparison does not depend on size). Anchors: ``../shared/corpus/photos/<target>``. Default
:class:`~sfumato.config.ProtectConfig` (one budget LPIPS-alex ≤ 0.07, L∞ ≤ 24/255, TAEF2). For each way
it prints the budget achieved on the quantised file, the latent reduction toward the style target and
toward the poison anchor, whether MobileNetV2 sees the target concept in the AI view, and seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SFUMATO_SHARED_DIR", ROOT.parent / "shared"))


def sequential_array(rgb: np.ndarray, config, anchors: list[np.ndarray]) -> dict[str, Any]:  # noqa: ANN001
    """The published two-app order at the same *total* budget: poison (budget p), then cloak the poisoned
    image (budget p relative to it), then scale the total perturbation so the final image meets p against
    the original. Returns the image and the same latent figures as ``protect_array`` for comparison."""
    import torch

    from sfumato.encoders.cache import load_encoders
    from sfumato.io.tensors import resize, round_to_bits, to_nchw, work_size
    from sfumato.metrics.lpips import load_lpips
    from sfumato.metrics.saved import protected_quality
    from sfumato.optimise.calibrate import calibrate
    from sfumato.optimise.objectives import LatentTargetObjective, WeightedObjectives
    from sfumato.protections.cloak import cloak_array
    from sfumato.protections.poison import aim_at_anchor, poison_array
    from sfumato.protections.protect import style_target

    t0 = time.perf_counter()
    p1 = poison_array(rgb, config.poison_config(), anchors, quantise=round_to_bits)
    c2 = cloak_array(p1.image, config.cloak_config(), quantise=round_to_bits)
    lp = load_lpips(config.budget.lpips_net)

    def lpips_fn(a: np.ndarray, b: np.ndarray) -> float:
        with torch.no_grad():
            return float(lp(to_nchw(a), to_nchw(b))[0])

    total = (c2.image - rgb).astype(np.float32)
    final, scale, _ = calibrate(rgb, total, lpips_p=config.budget.lpips, linf=config.budget.linf,
                                quantise=round_to_bits, lpips_fn=lpips_fn, max_scale=1.0)
    # Measure both effects on the final image with the same objectives the joint pass uses.
    encs = load_encoders(config)
    x0 = resize(to_nchw(rgb), work_size(*rgb.shape[:2], config.effort.resolution))
    style_img, target = style_target(x0, encs, config.cloak_config())
    anchor_img, _ = aim_at_anchor(x0, anchors, encs, config, None)
    objective = WeightedObjectives([
        ("style", LatentTargetObjective(x0, style_img, encs), config.style_weight),
        ("poison", LatentTargetObjective(x0, anchor_img, encs), config.poison_weight),
    ])
    latent = objective.distances(resize(to_nchw(final), tuple(x0.shape[-2:])))
    return {"image": final, "scale": scale, "latent": latent, "target": target,
            "achieved": protected_quality(final, rgb, lpips_net=config.budget.lpips_net),
            "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=3)
    ap.add_argument("--size", type=int, default=400)
    ap.add_argument("--concept", default="tree")
    ap.add_argument("--target", default="cat")
    args = ap.parse_args(argv)
    os.environ.setdefault("SFUMATO_MODELS_DIR", str(SHARED / "models"))

    from PIL import Image

    import sfumato.io as sio
    from sfumato.api import concept_report
    from sfumato.config import ProtectConfig
    from sfumato.protections.protect import protect_array
    from sfumato.targets.anchors import load_anchor_folder

    files = sio.iter_image_paths([SHARED / "corpus" / "art" / "vincent_van_gogh"])[: args.limit]
    anchors = load_anchor_folder(SHARED / "corpus" / "photos" / args.target, concept=args.target)
    cfg = ProtectConfig.preset(concept=args.concept, target=args.target)
    print(f"Command: `python benchmarks/protect_vs_sequential.py {' '.join(argv if argv is not None else sys.argv[1:])}`")
    print("| painting | way | LPIPS-alex | PSNR | L∞ /255 | style: latent reduction | poison: latent reduction "
          f"| AI view {args.target} (top-5) | s |")
    print("|---|---|---|---|---|---|---|---|---|")
    sums: dict[str, list[list[float]]] = {"joint": [], "sequential": []}
    for f in files:
        im = Image.open(f).convert("RGB")
        s = args.size / max(im.size)
        if s < 1:
            im = im.resize((round(im.width * s), round(im.height * s)), Image.Resampling.LANCZOS)
        rgb = np.asarray(im, dtype=np.float32) / 255
        t = time.perf_counter()
        j = protect_array(rgb, cfg, anchors.images, anchor_names=anchors.names)
        tj = time.perf_counter() - t
        t = time.perf_counter()
        q = sequential_array(rgb, cfg, anchors.images)
        ts = time.perf_counter() - t
        for way, img, latent, ach, secs in (("joint", j.image, j.latent, j.achieved, tj),
                                            ("sequential", q["image"], q["latent"], q["achieved"], ts)):
            lat = {d["target"]: d["relative_reduction"] for d in latent}
            rep = concept_report(rgb, img, concept=args.concept, target=args.target)
            cat = rep.get("ai_view_shows_target", {}).get("after")
            sums[way].append([ach["lpips_alex"], lat["style"], lat["poison"], float(bool(cat))])
            print(f"| {Path(f).stem[:40]} | {way} | {ach['lpips_alex']:.4f} | {ach['psnr']:.1f} | "
                  f"{ach['linf'] * 255:.0f} | {lat['style']:.1%} | {lat['poison']:.1%} | {cat} | {secs:.0f} |",
                  flush=True)
    print()
    print("| way | mean LPIPS-alex | mean style reduction | mean poison reduction | AI view shows target |")
    print("|---|---|---|---|---|")
    for way, rows in sums.items():
        a = np.array(rows)
        print(f"| {way} | {a[:, 0].mean():.4f} | {a[:, 1].mean():.1%} | {a[:, 2].mean():.1%} | "
              f"{int(a[:, 3].sum())}/{len(a)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
