"""Visible cost of the cloak per preset, with and without adaptive masking (issue 20, "invisible by
default"), next to the protection it buys at the trainer views.

    OMP_NUM_THREADS=1 python benchmarks/visible_cost.py                       # the whole table (resumable)
    OMP_NUM_THREADS=1 python benchmarks/visible_cost.py --sets flat_vector --presets fast --limit 1  # smoke
    python benchmarks/visible_cost.py --report                                 # markdown from the rows file
    OMP_NUM_THREADS=2 python benchmarks/visible_cost.py --presets default --masking on --floor 0.25  # another floor

Images (``../shared/corpus``, each Lanczos-downscaled so its long side is <= ``--side`` px, the file a
platform would show): the first ``--limit`` files by name of each illustration folder (``flat_vector``,
``character_cel_shaded``, ``webcomic``, ``pixel_art``), of the large WikiArt paintings
(``art/*/ace_*``, one per painter in name order) and of the object photos (``photos/{teapot,toy_car,vase}``).

Per image, preset (``fast``/``default``/``slow``) and masking (off: the preset before issue 20; on: the
shipped :class:`sfumato.config.Robustness` default, :mod:`sfumato.optimise.masking`, at the budget-map floor
``--floor``, by default :class:`~sfumato.optimise.masking.MaskConfig`'s), the cloak is run with
:func:`sfumato.protections.cloak.cloak_array` (seed 0, target ``auto``: the built-in styles, so the same
target with and without masking) and the saved 8-bit pixels are measured:

* visible cost: LPIPS-alex, PSNR, SSIM, and the flat-region energy (RMS of the change, x255, over the
  pixels whose 7x7 local std is < 0.01 in every channel; :func:`sfumato.metrics.quality.flat_region_energy`)
  with the share of such flat pixels;
* protection, as the protection meter measures it: ``toward`` (share of the way from the original's TAEF2
  latent to the target's) at every trainer view of :func:`sfumato.attacks.trainer_views.trainer_views`,
  reported at the work view and at the worst view (:func:`sfumato.verification.views.measure_views`).

One JSON line per (image, preset, masking, floor) goes to ``runs/visible_cost/rows.jsonl`` (a rerun skips
what is there; masked rows carry ``floor``, and a masked row without it is from before ``--floor`` existed,
when the floor was 0.15), and the saved 8-bit cloak to ``runs/visible_cost/out/``. ``--masking off|on|both``
picks the rows to run; each ``--floor`` gets its own masked rows, and the report pairs each floor's rows
with the masking-off rows of the same images. ``--shots`` writes, per illustration, a 100 % zoom crop
(original | masking off | on at the first ``--floor``) of the default preset around the flattest 192x192
window to ``docs/screenshots/visible-cost-<image>.png`` (from the saved cloaks where there are any).

Models: TAEF2 (madebyollin/taesd; encoder, decoder and target rendering), LPIPS v0.1 AlexNet (budget).
No judge is used.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, image_paths, load_downscaled  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SFUMATO_SHARED_DIR", ROOT.parent / "shared"))
ILLUSTRATION = ("flat_vector", "character_cel_shaded", "webcomic", "pixel_art")
SETS = (*ILLUSTRATION, "paintings", "photos")
PRESETS = ("fast", "default", "slow", "default-2026-12-04")
ISSUE_DAY = "default-2026-12-04"
"""The ``default`` preset as it stood when issue 20 was filed (commit 5b64156, 2026-12-04): 40 Adam steps at
lr 0.016, constant, at the one 512 px work view, masking off; same budget (LPIPS-alex 0.05, L∞ 24/255), target
renderer and seed as today's ``default``, so the two aim at the same target. Issue 20's visible-cost clause
compares today's default with it ("at most a third of today's, at the same or better protection")."""
LEGACY_FLOOR = 0.15  # the floor of masked rows written before rows carried one


def default_floor() -> float:
    from sfumato.optimise.masking import MaskConfig

    return MaskConfig().floor


def row_floor(r: dict) -> float | None:
    """The budget-map floor of a row (``None``: masking off)."""
    return float(r.get("floor", LEGACY_FLOOR)) if r["masking"] else None


def tag(floor: float | None) -> str:
    return "off" if floor is None else f"on-f{floor:g}"


@contextlib.contextmanager
def masking_floor(floor: float | None) -> Iterator[None]:
    """Run the cloak's budget map (:func:`sfumato.optimise.masking.budget_map`, looked up at each call by
    :func:`sfumato.optimise.perturb.robust_setup`) with ``MaskConfig(floor=floor)``, the other fields at
    their defaults; ``None`` or the default floor changes nothing."""
    from sfumato.optimise import masking as mk

    if floor is None or floor == mk.MaskConfig().floor:
        yield
        return
    orig = mk.budget_map
    cfg = mk.MaskConfig(floor=floor)

    def floored(x0, config=None):  # noqa: ANN001, ANN202
        return orig(x0, config or cfg)

    mk.budget_map = floored
    try:
        yield
    finally:
        mk.budget_map = orig


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


class CachedEncoder:
    """The measuring encoder with its ``encode`` memoised on disk by the input's bytes (``cache`` folder):
    the original's and the target's views are the same for every row of an image, so each configuration
    after the first encodes only the cloaked image. Same outputs as the encoder (a hit returns what it gave
    for the identical input); only :func:`measure_views` sees it, never the cloak's optimisation."""

    def __init__(self, encoder, cache: Path) -> None:  # noqa: ANN001
        self._enc, self._cache = encoder, cache

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self._enc, name)

    def encode(self, x):  # noqa: ANN001, ANN201
        import hashlib

        import torch

        a = x.detach().cpu().contiguous().numpy()
        h = hashlib.sha1(f"{type(self._enc).__name__}{a.shape}{a.dtype}".encode() + a.tobytes()).hexdigest()
        f = self._cache / f"{h}.pt"
        if f.exists():
            return torch.load(f).to(x.device)
        z = self._enc.encode(x)
        self._cache.mkdir(parents=True, exist_ok=True)
        torch.save(z.detach().cpu(), f)
        return z


def measure_one(rgb: np.ndarray, preset: str, masking: bool, *, seed: int, st: dict,
                floor: float | None = None) -> tuple[dict, np.ndarray]:
    """Cloak ``rgb`` with ``preset`` (masking on/off; on at budget-map ``floor``, default
    :class:`~sfumato.optimise.masking.MaskConfig`'s); the row of figures and the saved pixels."""
    import torch

    from sfumato.attacks.trainer_views import trainer_views
    from sfumato.config import CloakConfig, Effort, Robustness
    from sfumato.io.tensors import to_nchw
    from sfumato.metrics.quality import FLAT_STD_THRESHOLD, _local_std, flat_region_energy, psnr, ssim
    from sfumato.protections.cloak import cloak_array
    from sfumato.verification.views import measure_views, worst_views

    quality = "default" if preset == ISSUE_DAY else preset
    cfg = CloakConfig.preset(quality=quality, seed=seed)
    cfg = CloakConfig.preset(quality=quality, seed=seed,
                             robustness=Robustness(**{**cfg.robustness.to_dict(), "masking": masking}))
    if preset == ISSUE_DAY:
        from dataclasses import replace

        cfg = replace(cfg, effort=Effort(steps=40, resolution=512, lr=0.016, views="work", update="adam",
                                         lr_schedule="constant"))
    floor = (default_floor() if floor is None else float(floor)) if masking else None
    t = time.perf_counter()
    with masking_floor(floor):
        r = cloak_array(rgb, cfg, keep_target_image=True)
    seconds = time.perf_counter() - t
    out = np.round(np.clip(r.image, 0, 1) * 255) / 255  # the saved 8-bit file
    o, p = to_nchw(rgb), to_nchw(out.astype(np.float32))
    with torch.no_grad():
        flat = (_local_std(o.double(), 7).amax(dim=1) < FLAT_STD_THRESHOLD).double().mean()
        lp = float(st["lpips"](p, o).mean())
    h, w = rgb.shape[:2]
    views = trainer_views(h, w, work_size=tuple(r.target["work_size"]), seed=seed)
    enc = CachedEncoder(st["taef2"], st["zcache"]) if st.get("zcache") else st["taef2"]
    lat = measure_views(rgb, out.astype(np.float32), r.target_image, enc, None, views, lpips=st["lpips"],
                        ceiling=False)
    worst = worst_views(lat)["view"]
    work = next((v for v in lat if v["name"] == "work"), lat[0])
    row = {"preset": preset, "masking": masking, **({"floor": floor} if masking else {}), "size": [w, h], "seconds": round(seconds, 1),
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


def out_path(rows_path: Path, key: str, preset: str, floor: float | None) -> Path:
    """Where the saved 8-bit cloak of one row lives (next to the rows file)."""
    return rows_path.parent / "out" / f"{preset}-{tag(floor)}" / Path(key).with_suffix(".png")


def save_png(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)


def shots(rows_path: Path, out_dir: Path, seed: int, side: int, floor: float) -> list[str]:
    """The default preset (off, and on at ``floor``) on the first illustration of each set: the saved cloak
    of the benchmark run where there is one (same seed and side), else a fresh run; save the 100 % crops."""
    from PIL import Image

    st: dict = {}
    names = []
    for s in ILLUSTRATION:
        for path in set_images(s, 1):
            rgb = load_downscaled(path, side)
            y, x = flattest_crop(rgb)
            c = min(192, *rgb.shape[:2])
            panels = [rgb[y:y + c, x:x + c]]
            key = str(path.relative_to(SHARED / "corpus"))
            for f in (None, floor):
                saved = out_path(rows_path, key, "default", f)
                if saved.exists():
                    with Image.open(saved) as im:
                        out = np.asarray(im.convert("RGB"), dtype=np.float32) / 255
                    assert out.shape == rgb.shape, f"{saved} is {out.shape}, the image {rgb.shape}: another --side?"
                else:
                    st = st or models()
                    _, out = measure_one(rgb, "default", f is not None, seed=seed, st=st, floor=f)
                    save_png(saved, out)
                panels.append(out[y:y + c, x:x + c])
            gap = np.ones((c, 6, 3), np.float32)
            strip = np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)
            name = f"visible-cost-{path.stem[:32]}.png"
            out_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray((np.clip(strip, 0, 1) * 255 + 0.5).astype(np.uint8)).save(out_dir / name)
            names.append(name)
            print(f"wrote {out_dir / name} (crop at x={x}, y={y}; off | on, floor {floor:g})", flush=True)
    return names


def models() -> dict:
    from sfumato.encoders import load_encoder
    from sfumato.metrics.lpips import load_lpips

    return {"taef2": load_encoder("taef2"), "lpips": load_lpips("alex")}


def paired(rows: list[dict], preset: str, floor: float) -> dict | None:
    """Illustration rows of ``preset`` masked at ``floor`` paired with the masking-off rows of the same
    images: the means of both sides (``None`` when no image has both)."""
    ill = [r for r in rows if r["set"] in ILLUSTRATION and r["preset"] == preset]
    off = {r["image"]: r for r in ill if row_floor(r) is None}
    on = {r["image"]: r for r in ill if row_floor(r) == floor}
    both = sorted(set(off) & set(on))
    if not both:
        return None

    def mean(d: dict, k: str) -> float:
        return float(np.mean([d[i][k] for i in both]))

    return {"n": len(both), "images": both,
            **{f"{k}_{side}": mean(d, k) for k in ("flat_energy_255", "toward_worst", "toward_work")
               for side, d in (("off", off), ("on", on))},
            "lpips_max_off": max(off[i]["lpips_alex"] for i in both),
            "lpips_max_on": max(on[i]["lpips_alex"] for i in both)}


def report(rows: list[dict]) -> list[str]:
    """Per set, preset and masking (floor): means of every figure; then, per preset and floor, the
    illustration-set acceptance line (issue 20) paired with the masking-off rows of the same images."""
    lines = ["| set | preset | masking | n | flat energy (×255) | flat share | LPIPS-alex | PSNR dB | SSIM | "
             "toward, work view | toward, worst view | s/image |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["set"], r["preset"], row_floor(r)), []).append(r)

    def mean(rs: list[dict], k: str) -> float:
        return float(np.mean([r[k] for r in rs]))

    def order(kv: tuple) -> tuple:
        s, p, f = kv[0]
        return SETS.index(s), PRESETS.index(p), -1 if f is None else f

    for (s, p, f), rs in sorted(groups.items(), key=order):
        m = "off" if f is None else f"on, floor {f:g}"
        lines.append(f"| {s} | {p} | {m} | {len(rs)} | {mean(rs, 'flat_energy_255'):.2f} | "
                     f"{mean(rs, 'flat_share') * 100:.0f} % | {mean(rs, 'lpips_alex'):.4f} | {mean(rs, 'psnr'):.1f} | "
                     f"{mean(rs, 'ssim'):.3f} | {mean(rs, 'toward_work'):.3f} | {mean(rs, 'toward_worst'):.3f} | "
                     f"{mean(rs, 'seconds'):.0f} |")
    floors = sorted({f for f in map(row_floor, rows) if f is not None})
    summary = []
    for p in PRESETS:
        for f in floors:
            d = paired(rows, p, f)
            if d is None:
                continue
            ratio = d["flat_energy_255_on"] / d["flat_energy_255_off"]
            met = ratio <= 1 / 3 and d["toward_worst_on"] >= d["toward_worst_off"]
            lines += ["", f"**Illustrations, `{p}` preset, floor {f:g}, {d['n']} images paired:** flat-region energy "
                      f"{d['flat_energy_255_off']:.2f} → {d['flat_energy_255_on']:.2f} (×255), ratio {ratio:.2f}; "
                      f"toward the target at the worst trainer view {d['toward_worst_off']:.3f} → "
                      f"{d['toward_worst_on']:.3f}, at the work view {d['toward_work_off']:.3f} → "
                      f"{d['toward_work_on']:.3f}; largest LPIPS-alex {d['lpips_max_off']:.4f} / "
                      f"{d['lpips_max_on']:.4f}."]
            summary.append(f"| {p} | {f:g} | {d['n']} | {d['flat_energy_255_off']:.2f} → {d['flat_energy_255_on']:.2f} "
                           f"| {ratio:.2f} | {d['toward_worst_off']:.3f} → {d['toward_worst_on']:.3f} | "
                           f"{d['toward_work_off']:.3f} → {d['toward_work_on']:.3f} | "
                           f"{d['lpips_max_off']:.4f} / {d['lpips_max_on']:.4f} | {'yes' if met else 'no'} |")
    day = {r["image"]: r for r in rows if r["set"] in ILLUSTRATION and r["preset"] == ISSUE_DAY and not r["masking"]}
    for f in floors:
        now = {r["image"]: r for r in rows if r["set"] in ILLUSTRATION and r["preset"] == "default"
               and row_floor(r) == f}
        both = sorted(set(day) & set(now))
        if not both:
            continue
        e0, e1 = (float(np.mean([d[i]["flat_energy_255"] for i in both])) for d in (day, now))
        w0, w1 = (float(np.mean([d[i]["toward_worst"] for i in both])) for d in (day, now))
        k0, k1 = (float(np.mean([d[i]["toward_work"] for i in both])) for d in (day, now))
        better = sum(now[i]["toward_worst"] >= day[i]["toward_worst"] for i in both)
        met = e1 / e0 <= 1 / 3 and w1 >= w0
        lines += ["", f"**Issue 20's clause against the default of the day it was filed** ({ISSUE_DAY}: 40 Adam "
                  f"steps at the one work view, masking off; same target and budget), {len(both)} illustrations: "
                  f"flat-region energy {e0:.2f} → {e1:.2f} (×255) with today's `default` (masking on, floor {f:g}), "
                  f"ratio {e1 / e0:.2f}; worst-trainer-view toward {w0:.3f} → {w1:.3f} (today's at least as far on "
                  f"{better} of {len(both)}); work view {k0:.3f} → {k1:.3f}; met: {'yes' if met else 'no'}."]
    if summary:
        lines += ["", "| preset | floor | n paired | flat energy off → on (×255) | ratio | toward, worst view off → on | "
                  "toward, work view off → on | largest LPIPS-alex off / on | ratio ≤ 1/3 and worst view ≥ masking off |",
                  "|---|---|---|---|---|---|---|---|---|", *summary]
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    ap.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS)
    ap.add_argument("--limit", type=int, default=2, help="images per set (default 2)")
    ap.add_argument("--side", type=int, default=512, help="long side of the published file (default 512 px)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--masking", choices=("off", "on", "both"), default="both",
                    help="which rows to run: masking off, on (at each --floor) or both (default)")
    ap.add_argument("--floor", type=float, nargs="+", default=None, metavar="F",
                    help="budget-map floor(s) of the masked rows, in (0, 1] (default: MaskConfig's, the shipped "
                         "one); with --shots the first is the 'on' panel")
    ap.add_argument("--rows", type=Path, default=ROOT / "runs/visible_cost/rows.jsonl")
    ap.add_argument("--report", action="store_true", help="only print the report from the rows file")
    ap.add_argument("--shots", action="store_true", help="write the 100 %% zoom crops to docs/screenshots")
    ap.add_argument("-o", "--out", help="also write the markdown report here")
    args = ap.parse_args(argv)
    floors = [float(f) for f in (args.floor or [default_floor()])]
    for f in floors:
        if not 0 < f <= 1:
            ap.error(f"--floor must be in (0, 1] (share of the L∞ budget kept on flat colour), got {f}")
    import torch

    print(f"# machine: {os.uname().machine}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}", flush=True)
    if args.shots:
        shots(args.rows, ROOT / "docs/screenshots", args.seed, args.side, floors[0])
        return 0
    if not args.report:
        args.rows.parent.mkdir(parents=True, exist_ok=True)
        done = {(r["image"], r["preset"], row_floor(r)) for r in read_rows(args.rows)}
        runs: list[float | None] = ([None] if args.masking in ("off", "both") else []) + \
            (floors if args.masking in ("on", "both") else [])
        st = {**models(), "zcache": args.rows.parent / "zcache"}
        for p in args.presets:
            for f in runs:  # one configuration after another, each over every image
                for s in args.sets:
                    for path in set_images(s, args.limit):
                        key = str(path.relative_to(SHARED / "corpus"))
                        if (key, p, f) in done:
                            continue
                        rgb = load_downscaled(path, args.side)
                        row, out = measure_one(rgb, p, f is not None, seed=args.seed, st=st, floor=f)
                        row.update(image=key, set=s)
                        save_png(out_path(args.rows, key, p, f), out)
                        with args.rows.open("a") as fh:
                            fh.write(json.dumps(row) + "\n")
                        print(json.dumps({k: row.get(k) for k in ("image", "preset", "masking", "floor",
                                                                  "flat_energy_255", "lpips_alex", "psnr",
                                                                  "toward_work", "toward_worst", "seconds")}),
                              flush=True)
    return emit(report(read_rows(args.rows)), args.out)


if __name__ == "__main__":
    raise SystemExit(main())
