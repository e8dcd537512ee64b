"""Visible cost of the cloak per preset, with and without adaptive masking (issue 20, "invisible by
default"), next to the protection it buys at the trainer views.

    OMP_NUM_THREADS=1 python benchmarks/visible_cost.py                       # the whole table (resumable)
    OMP_NUM_THREADS=1 python benchmarks/visible_cost.py --sets flat_vector --presets fast --limit 1  # smoke
    python benchmarks/visible_cost.py --report                                 # markdown from the rows file

Images (``../shared/corpus``, each Lanczos-downscaled so its long side is <= ``--side`` px, the file a
platform would show): the first ``--limit`` files by name of each illustration folder (``flat_vector``,
``character_cel_shaded``, ``webcomic``, ``pixel_art``), of the large WikiArt paintings
(``art/*/ace_*``, one per painter in name order) and of the object photos (``photos/{teapot,toy_car,vase}``).

Per image, preset (``fast``/``default``/``slow``) and masking (off: the preset before issue 20; on: the
shipped :class:`sfumato.config.Robustness` default, :mod:`sfumato.optimise.masking`), the cloak is run with
:func:`sfumato.protections.cloak.cloak_array` (seed 0, target ``auto``: the built-in styles, so the same
target with and without masking) and the saved 8-bit pixels are measured:

* visible cost: LPIPS-alex, PSNR, SSIM, and the flat-region energy (RMS of the change, x255, over the
  pixels whose 7x7 local std is < 0.01 in every channel; :func:`sfumato.metrics.quality.flat_region_energy`)
  with the share of such flat pixels;
* protection, as the protection meter measures it: ``toward`` (share of the way from the original's TAEF2
  latent to the target's) at every trainer view of :func:`sfumato.attacks.trainer_views.trainer_views`,
  reported at the work view and at the worst view (:func:`sfumato.verification.views.measure_views`).

One JSON line per (image, preset, masking) goes to ``runs/visible_cost/rows.jsonl`` (a rerun skips what is
there); ``--shots`` writes, per illustration, a 100 % zoom crop (original | masking off | on) of the default
preset around the flattest 192x192 window to ``docs/screenshots/visible-cost-<image>.png``.

Models: TAEF2 (madebyollin/taesd; encoder, decoder and target rendering), LPIPS v0.1 AlexNet (budget).
No judge is used.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, image_paths, load_downscaled  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SFUMATO_SHARED_DIR", ROOT.parent / "shared"))
ILLUSTRATION = ("flat_vector", "character_cel_shaded", "webcomic", "pixel_art")
SETS = (*ILLUSTRATION, "paintings", "photos")
PRESETS = ("fast", "default", "slow")


def set_images(name: str, limit: int) -> list[Path]:
    """The first ``limit`` images of one set (see the module docstring)."""
    corpus = SHARED / "corpus"
    if name in ILLUSTRATION:
        return image_paths(corpus / "illustration" / name)[:limit]
    if name == "paintings":
        firsts = [next(iter(sorted(d.glob("ace_*"))), None) for d in sorted((corpus / "art").iterdir()) if d.is_dir()]
        return [p for p in firsts if p is not None][:limit]
    if name == "photos":
        return [image_paths(corpus / "photos" / d)[0] for d in ("teapot", "toy_car", "vase")][:limit]
    raise ValueError(f"unknown set {name!r}; choose from {', '.join(SETS)}")


def read_rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def measure_one(rgb: np.ndarray, preset: str, masking: bool, *, seed: int, st: dict) -> tuple[dict, np.ndarray]:
    """Cloak ``rgb`` with ``preset`` (masking on/off); the row of figures and the saved pixels."""
    import torch

    from sfumato.attacks.trainer_views import trainer_views
    from sfumato.config import CloakConfig, Robustness
    from sfumato.io.tensors import to_nchw
    from sfumato.metrics.quality import FLAT_STD_THRESHOLD, _local_std, flat_region_energy, psnr, ssim
    from sfumato.protections.cloak import cloak_array
    from sfumato.verification.views import measure_views, worst_views

    cfg = CloakConfig.preset(quality=preset, seed=seed)
    cfg = CloakConfig.preset(quality=preset, seed=seed,
                             robustness=Robustness(**{**cfg.robustness.to_dict(), "masking": masking}))
    t = time.perf_counter()
    r = cloak_array(rgb, cfg, keep_target_image=True)
    seconds = time.perf_counter() - t
    out = np.round(np.clip(r.image, 0, 1) * 255) / 255  # the saved 8-bit file
    o, p = to_nchw(rgb), to_nchw(out.astype(np.float32))
    with torch.no_grad():
        flat = (_local_std(o.double(), 7).amax(dim=1) < FLAT_STD_THRESHOLD).double().mean()
        lp = float(st["lpips"](p, o).mean())
    h, w = rgb.shape[:2]
    views = trainer_views(h, w, work_size=tuple(r.target["work_size"]), seed=seed)
    lat = measure_views(rgb, out.astype(np.float32), r.target_image, st["taef2"], None, views, lpips=st["lpips"],
                        ceiling=False)
    worst = worst_views(lat)["view"]
    work = next((v for v in lat if v["name"] == "work"), lat[0])
    row = {"preset": preset, "masking": masking, "size": [w, h], "seconds": round(seconds, 1),
           "lpips_alex": round(lp, 5), "psnr": round(float(psnr(o, p)[0]), 3), "ssim": round(float(ssim(o, p)[0]), 4),
           "flat_energy_255": round(float(flat_region_energy(o, p)[0]) * 255, 3), "flat_share": round(float(flat), 4),
           "linf_255": round(float((p - o).abs().max()) * 255, 2),
           "toward_work": round(float(work["toward"]), 4), "toward_worst": round(float(worst["value"]), 4),
           "worst_view": worst["name"], "views": {v["name"]: round(float(v["toward"]), 4) for v in lat},
           "target_style": r.target["style"], "steps": cfg.effort.steps, "effort_views": cfg.effort.views}
    return row, out


def flattest_crop(rgb: np.ndarray, side: int = 192) -> tuple[int, int]:
    """Top-left corner of the ``side`` window with the most flat pixels that still holds some edge (so the
    crop shows flat colour next to a drawn line, where texture noise is easiest to see)."""
    import torch

    from sfumato.io.tensors import to_nchw
    from sfumato.metrics.quality import FLAT_STD_THRESHOLD, _local_std

    h, w = rgb.shape[:2]
    side = min(side, h, w)
    with torch.no_grad():
        flat = (_local_std(to_nchw(rgb).double(), 7).amax(dim=1, keepdim=True) < FLAT_STD_THRESHOLD).double()
        share = torch.nn.functional.avg_pool2d(flat, side, stride=16)[0, 0]
    score = share.clone()
    score[share > 0.95] = -1  # a window that is all flat fill shows nothing beside it
    i = int(torch.argmax(score))
    y, x = divmod(i, share.shape[1])
    return y * 16, x * 16


def shots(rows_path: Path, out_dir: Path, seed: int, side: int) -> list[str]:
    """Re-run the default preset (off/on) on the first illustration of each set and save the 100 % crops."""
    from PIL import Image

    st = models()
    names = []
    for s in ILLUSTRATION:
        for path in set_images(s, 1):
            rgb = load_downscaled(path, side)
            y, x = flattest_crop(rgb)
            c = min(192, *rgb.shape[:2])
            panels = [rgb[y:y + c, x:x + c]]
            for masking in (False, True):
                _, out = measure_one(rgb, "default", masking, seed=seed, st=st)
                panels.append(out[y:y + c, x:x + c])
            gap = np.ones((c, 6, 3), np.float32)
            strip = np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)
            name = f"visible-cost-{path.stem[:32]}.png"
            out_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray((np.clip(strip, 0, 1) * 255 + 0.5).astype(np.uint8)).save(out_dir / name)
            names.append(name)
            print(f"wrote {out_dir / name} (crop at x={x}, y={y})", flush=True)
    return names


def models() -> dict:
    from sfumato.encoders import load_encoder
    from sfumato.metrics.lpips import load_lpips

    return {"taef2": load_encoder("taef2"), "lpips": load_lpips("alex")}


def report(rows: list[dict]) -> list[str]:
    """Per set, preset and masking: means of every figure; then the illustration-set acceptance line."""
    lines = ["| set | preset | masking | n | flat energy (×255) | flat share | LPIPS-alex | PSNR dB | SSIM | "
             "toward, work view | toward, worst view | s/image |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["set"], r["preset"], r["masking"]), []).append(r)

    def mean(rs: list[dict], k: str) -> float:
        return float(np.mean([r[k] for r in rs]))

    for (s, p, m), rs in sorted(groups.items(), key=lambda kv: (SETS.index(kv[0][0]), PRESETS.index(kv[0][1]), kv[0][2])):
        lines.append(f"| {s} | {p} | {'on' if m else 'off'} | {len(rs)} | {mean(rs, 'flat_energy_255'):.2f} | "
                     f"{mean(rs, 'flat_share') * 100:.0f} % | {mean(rs, 'lpips_alex'):.4f} | {mean(rs, 'psnr'):.1f} | "
                     f"{mean(rs, 'ssim'):.3f} | {mean(rs, 'toward_work'):.3f} | {mean(rs, 'toward_worst'):.3f} | "
                     f"{mean(rs, 'seconds'):.0f} |")
    for p in PRESETS:
        off = {r["image"]: r for r in rows if r["set"] in ILLUSTRATION and r["preset"] == p and not r["masking"]}
        on = {r["image"]: r for r in rows if r["set"] in ILLUSTRATION and r["preset"] == p and r["masking"]}
        both = sorted(set(off) & set(on))
        if not both:
            continue
        e_off, e_on = (float(np.mean([d[k]["flat_energy_255"] for k in both])) for d in (off, on))
        w_off, w_on = (float(np.mean([d[k]["toward_worst"] for k in both])) for d in (off, on))
        k_off, k_on = (float(np.mean([d[k]["toward_work"] for k in both])) for d in (off, on))
        over = max(off[k]["lpips_alex"] for k in both) , max(on[k]["lpips_alex"] for k in both)
        lines += ["", f"**Illustrations, `{p}` preset, {len(both)} images paired:** flat-region energy "
                  f"{e_off:.2f} → {e_on:.2f} (×255), ratio {e_on / e_off:.2f}; toward the target at the worst "
                  f"trainer view {w_off:.3f} → {w_on:.3f}, at the work view {k_off:.3f} → {k_on:.3f}; largest "
                  f"LPIPS-alex {over[0]:.4f} / {over[1]:.4f}."]
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    ap.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS)
    ap.add_argument("--limit", type=int, default=2, help="images per set (default 2)")
    ap.add_argument("--side", type=int, default=512, help="long side of the published file (default 512 px)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rows", type=Path, default=ROOT / "runs/visible_cost/rows.jsonl")
    ap.add_argument("--report", action="store_true", help="only print the report from the rows file")
    ap.add_argument("--shots", action="store_true", help="write the 100 %% zoom crops to docs/screenshots")
    ap.add_argument("-o", "--out", help="also write the markdown report here")
    args = ap.parse_args(argv)
    import torch

    print(f"# machine: {os.uname().machine}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}", flush=True)
    if args.shots:
        shots(args.rows, ROOT / "docs/screenshots", args.seed, args.side)
        return 0
    if not args.report:
        args.rows.parent.mkdir(parents=True, exist_ok=True)
        done = {(r["image"], r["preset"], r["masking"]) for r in read_rows(args.rows)}
        st = models()
        for p in args.presets:
            for s in args.sets:
                for path in set_images(s, args.limit):
                    rgb = None
                    for masking in (False, True):
                        key = str(path.relative_to(SHARED / "corpus"))
                        if (key, p, masking) in done:
                            continue
                        rgb = load_downscaled(path, args.side) if rgb is None else rgb
                        row, _ = measure_one(rgb, p, masking, seed=args.seed, st=st)
                        row.update(image=key, set=s)
                        with args.rows.open("a") as f:
                            f.write(json.dumps(row) + "\n")
                        print(json.dumps({k: row[k] for k in ("image", "preset", "masking", "flat_energy_255",
                                                              "lpips_alex", "psnr", "toward_work", "toward_worst",
                                                              "seconds")}), flush=True)
    return emit(report(read_rows(args.rows)), args.out)


if __name__ == "__main__":
    raise SystemExit(main())
