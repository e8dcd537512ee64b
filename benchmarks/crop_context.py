"""How much a crop's latent differs from the same region of its whole view's latent (issue 23).

    SFUMATO_MODELS_DIR=../shared/models OMP_NUM_THREADS=2 python benchmarks/crop_context.py --ace 3

The cloak's trainer-view steps encode a 256 px crop of a view (:mod:`sfumato.optimise.view_sampling`) and
compare it with the same crop of the target. A trainer encodes the whole bucket view, or a 512 px crop of
it. If the encoder's latent of a region depended only on that region's pixels, the two would agree; the
encoder's receptive field and zero padding make them differ near the crop's edges. This script measures
by how much, on clean large paintings: for every crop on a half-tile grid (:func:`crop_starts`, stride = half
the crop's side) whose four sides all lie inside the view, the per-cell distance
‖E(crop) − E(view)[region]‖ over the channels, divided by the mean per-cell norm of E(view)[region], in
rings by distance from the crop's edge (ring 0 = the outermost latent cells) and over the crop's centre
(the cells ≥ 8 from every edge); no target and no judge is involved. With ``--targets RUN`` (the output
folder of a meter run with ``sfumato-default`` on these paintings, e.g. ``runs/meter_att``, whose targets
are saved under ``targets/ace``) it also compares the cloak's target *change* as a tile sees it,
E(tile(T)) − E(tile(x)), with the same region of the change the whole view sees, E(view(T)) − E(view(x)),
for every tile of the cloak's 256 px grid: relative error and cosine. T is the view plus the target's
change resized to the view, as in the objective. Images: the ace hold-out paintings of ``corpus/art`` (as
the meter's ace part), downscaled to a 1024 px long side; views: the whole-image views of
:func:`sfumato.optimise.view_sampling.view_sizes`.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, load_downscaled  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SFUMATO_SHARED_DIR", ROOT.parent / "shared"))
RINGS = 8
TILE = 256  # the cloak presets' view_crop and view_stride


def ring_profile(crop_latent, region_latent) -> list[float]:  # noqa: ANN001
    """Relative per-cell distance in rings 0..RINGS-1 from the crop's edge, then the centre."""
    diff = (crop_latent - region_latent).pow(2).sum(1).sqrt()[0]
    scale = float(region_latent.pow(2).sum(1).sqrt()[0].mean())
    h, w = diff.shape
    out = []
    for d in range(RINGS):
        outer = diff[d:h - d, d:w - d]
        inner_sum = float(diff[d + 1:h - d - 1, d + 1:w - d - 1].sum()) if min(h, w) > 2 * d + 2 else 0.0
        inner_n = max(h - 2 * d - 2, 0) * max(w - 2 * d - 2, 0)
        out.append((float(outer.sum()) - inner_sum) / (outer.numel() - inner_n) / scale)
    out.append(float(diff[RINGS:h - RINGS, RINGS:w - RINGS].mean()) / scale)
    return out


def tile_changes(enc, x, target, key: str) -> list[tuple[str, str, int, float, float]]:  # noqa: ANN001
    """Per view: the tiles, and the mean relative error and cosine of a tile's target change against the
    same region of the view's (``target``: the cloak's target rendering at its work size, 1x3xhxw)."""
    import numpy as np
    import torch

    from sfumato.io.tensors import resize
    from sfumato.optimise.view_sampling import crop_starts, view_sizes

    f = int(enc.downscale)
    change = target - resize(x, tuple(target.shape[-2:]))  # the target as a change of the work image
    out = []
    for name, (hv, wv) in view_sizes(int(x.shape[-2]), int(x.shape[-1])):
        v = resize(x, (hv, wv))
        t = (v + resize(change, (hv, wv))).clamp(0, 1)
        errs, coss = [], []
        with torch.no_grad():
            dv = enc.encode(t) - enc.encode(v)
            for a in crop_starts(hv - TILE, TILE):
                for b in crop_starts(wv - TILE, TILE):
                    tile = (slice(None), slice(None), slice(a, a + TILE), slice(b, b + TILE))
                    dt = enc.encode(t[tile].contiguous()) - enc.encode(v[tile].contiguous())
                    dr = dv[..., a // f:(a + TILE) // f, b // f:(b + TILE) // f]
                    errs.append(float((dt - dr).norm() / dr.norm()))
                    coss.append(float(torch.nn.functional.cosine_similarity(dt.flatten(), dr.flatten(), dim=0)))
        out.append((key, name, len(errs), float(np.mean(errs)), float(np.mean(coss))))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ace", type=int, default=3, help="ace hold-out paintings (meter order)")
    ap.add_argument("--sides", nargs="+", type=int, default=[256, 512], help="crop sides (px)")
    ap.add_argument("--long-side", type=int, default=1024)
    ap.add_argument("--encoder", default="taef2")
    ap.add_argument("--targets", type=Path, default=None, metavar="RUN",
                    help="a meter run's folder with sfumato-default's saved targets: also compare target changes")
    ap.add_argument("-o", "--out", default=None, help="also write the markdown report here")
    args = ap.parse_args(argv)

    import numpy as np
    import torch
    from meter_ace import _target_path, ace_images

    from sfumato.encoders import load_encoder
    from sfumato.io.tensors import resize, to_nchw
    from sfumato.optimise.view_sampling import crop_starts, view_sizes

    enc = load_encoder(args.encoder)
    f = int(enc.downscale)
    rows: dict[int, list[list[float]]] = {s: [] for s in args.sides}
    names = []
    changes: list[tuple[str, str, int, float, float]] = []
    for artist, path in ace_images(SHARED / "corpus", args.ace):
        names.append(f"{artist}/{path.stem}")
        x = to_nchw(load_downscaled(path, args.long_side))
        for _, (hv, wv) in view_sizes(int(x.shape[-2]), int(x.shape[-1])):
            view = resize(x, (hv, wv))
            with torch.no_grad():
                z = enc.encode(view)
                for side in args.sides:
                    if side >= min(hv, wv):
                        continue
                    for t in crop_starts(hv - side, side // 2):
                        for left in crop_starts(wv - side, side // 2):
                            if t == 0 or left == 0 or t + side >= hv or left + side >= wv:
                                continue  # a side on the view's border: no context is missing there
                            zc = enc.encode(view[..., t:t + side, left:left + side].contiguous())
                            zr = z[..., t // f:(t + side) // f, left // f:(left + side) // f]
                            rows[side].append(ring_profile(zc, zr))
        if args.targets is not None:
            key = f"{artist}/{path.stem}"
            changes += tile_changes(enc, x, to_nchw(np.load(_target_path(args.targets, key))), key)
    lines = [f"Machine: {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
             f"encoder {args.encoder} (downscale {f}); paintings: {', '.join(names)} at a "
             f"{args.long_side} px long side; whole-image bucket views.", "",
             "| crop side | crops | " + " | ".join(f"ring {d}" for d in range(RINGS)) + " | centre (≥ 8 cells in) |",
             "|---|---|" + "---|" * (RINGS + 1)]
    for side, profiles in rows.items():
        if not profiles:
            continue
        mean = torch.tensor(profiles).mean(0).tolist()
        lines.append(f"| {side} px | {len(profiles)} | " + " | ".join(f"{v:.3f}" for v in mean) + " |")
    if changes:
        lines += ["", f"Target change of each {TILE} px tile against the same region of the whole view's change:", "",
                  "| painting | view | tiles | relative error | cosine |", "|---|---|---|---|---|"]
        lines += [f"| {k} | {v} | {n} | {e:.3f} | {c:.3f} |" for k, v, n, e, c in changes]
    return emit(lines, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
