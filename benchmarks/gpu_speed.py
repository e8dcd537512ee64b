"""Seconds per image on each device (issue 21, the GPU path): the style cloak at its default preset and the
poison at its default preset, at 1024² by default, on the GPU when there is one and on the CPU beside it.

    python benchmarks/gpu_speed.py                                   # cuda (if present) and cpu, 1024², 3 images
    python benchmarks/gpu_speed.py --devices cuda --images 5 --json runs/gpu_speed.json
    python benchmarks/gpu_speed.py --size 256 --steps 2 --tiny       # a smoke run anywhere (no weights, no GPU)

Each device gets one untimed warm-up image (model loading and moving, style exemplar signatures, CUDA
kernels and cuDNN algorithm choice), then ``--images`` different images per mode, timed one by one from
the array to the calibrated, quantised result (what :func:`sfumato.api.cloak_file` spends between reading
and writing the file); on CUDA the timer waits for the device (``torch.cuda.synchronize``). The table
gives the median and the range, the steps run, and on CUDA the peak GPU memory.

Images: paintings of the shared corpus (``../shared/corpus/art``) resized to ``--size``² (Lanczos),
anchors for the poison from ``../shared/corpus/pets/cat`` (dog → cat), when they are there; otherwise
seeded synthetic images. Weights: ``--models-dir`` / ``$SFUMATO_MODELS_DIR`` (``../shared/models`` when
present); ``--tiny`` uses tiny random models instead (the mechanics only: not a product figure).
``--steps`` overrides the presets' optimisation steps (for smoke runs; the figure is then not the preset's).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SFUMATO_SHARED_DIR", ROOT.parent / "shared"))


def _square(path: Path, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        side = min(im.size)
        left, top = (im.size[0] - side) // 2, (im.size[1] - side) // 2
        im = im.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS)
        return np.asarray(im, dtype=np.float32) / 255


def _synthetic(size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    f = rng.uniform(2, 9, 3)
    base = np.stack([0.5 + 0.3 * np.sin(f[c] * xx + 3 * f[(c + 1) % 3] * yy * yy) for c in range(3)], -1)
    return np.clip(base + rng.normal(0, 0.04, base.shape), 0, 1).astype(np.float32)


def images(n: int, size: int, seed: int = 0) -> tuple[list[np.ndarray], str]:
    """``n`` different ``size``² images (corpus paintings, else synthetic) and where they came from."""
    art = sorted((SHARED / "corpus" / "art").rglob("*.jpg")) if (SHARED / "corpus" / "art").is_dir() else []
    if art:
        step = max(1, len(art) // max(1, n))
        return [_square(art[(seed + i * step) % len(art)], size) for i in range(n)], "corpus paintings"
    return [_synthetic(size, seed + i) for i in range(n)], "synthetic"


def anchors(size: int, n: int = 4) -> list[np.ndarray]:
    cats = sorted((SHARED / "corpus" / "pets" / "cat").glob("*.jpg"))[:n]
    return [_square(p, min(size, 512)) for p in cats] or [_synthetic(min(size, 512), 100 + i) for i in range(n)]


def use_tiny_models() -> None:
    """Replace every model with a tiny random one of the same interface (no weights needed)."""
    import sfumato.metrics.lpips as lpm
    from sfumato.encoders import cache
    from sfumato.encoders.tae import tiny_random_tae

    nets = {net: lpm.tiny_random_lpips(net, seed=3) for net in ("alex", "squeeze")}
    lpm.load_lpips = lambda net="alex", *, models_dir=None: nets[net]  # type: ignore[assignment]
    cache._ENCODER_CACHE[("taef2", "None")] = tiny_random_tae(seed=1)


def _configs(modes: list[str], steps: int | None) -> dict[str, Any]:
    from sfumato.config import CloakConfig, PoisonConfig

    out: dict[str, Any] = {}
    for m in modes:
        cfg = CloakConfig() if m == "cloak" else PoisonConfig.preset(concept="dog", target="cat")
        if steps is not None:
            cfg = dataclasses.replace(cfg, effort=dataclasses.replace(cfg.effort, steps=steps))
        out[m] = cfg
    return out


def _run(mode: str, rgb: np.ndarray, cfg: Any, dev: Any, anchor_imgs: list[np.ndarray], models_dir: Any) -> Any:
    if mode == "cloak":
        from sfumato.protections.cloak import cloak_array

        return cloak_array(rgb, cfg, models_dir=models_dir, device=dev)
    from sfumato.protections.poison import poison_array

    return poison_array(rgb, cfg, anchor_imgs, models_dir=models_dir, device=dev)


def measure(device: str, modes: list[str], imgs: list[np.ndarray], anchor_imgs: list[np.ndarray], *,
            steps: int | None, models_dir: Any) -> list[dict[str, Any]]:
    """The rows of one device: per mode, the seconds of each image after one untimed warm-up."""
    import torch

    from sfumato.protections.device import resolve_device

    dev = resolve_device(device)
    cuda = dev.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(dev)

    rows = []
    for mode, cfg in _configs(modes, steps).items():
        _run(mode, imgs[0][::2, ::2].copy(), cfg, dev, anchor_imgs, models_dir)  # warm-up, not timed
        sync()
        if cuda:
            torch.cuda.reset_peak_memory_stats(dev)
        secs, steps_run = [], []
        for rgb in imgs:
            sync()
            t = time.perf_counter()
            r = _run(mode, rgb, cfg, dev, anchor_imgs, models_dir)
            sync()
            secs.append(time.perf_counter() - t)
            steps_run.append(r.steps_run)
        row = {"device": str(dev), "mode": mode, "size": int(imgs[0].shape[0]), "images": len(imgs),
               "steps": cfg.effort.steps, "steps_run": steps_run, "resolution": cfg.effort.resolution,
               "seconds": [round(s, 3) for s in secs], "median_s": round(statistics.median(secs), 3),
               "images_per_hour": round(3600 / statistics.median(secs), 1)}
        if cuda:
            row["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated(dev) / 2**20)
        rows.append(row)
        print(f"  {dev} {mode}: {row['median_s']:.2f} s/image (median of {len(secs)})", file=sys.stderr, flush=True)
    return rows


def machine() -> dict[str, Any]:
    import torch

    info = {"platform": platform.platform(), "cpu_cores": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "cuda_build": torch.version.cuda,
            "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", nargs="+", default=None, metavar="DEVICE",
                    help="devices to measure, each auto|cpu|cuda[:N] (default: cuda when present, then cpu)")
    ap.add_argument("--size", type=int, default=1024, help="square image side in pixels (default 1024)")
    ap.add_argument("--images", type=int, default=3, help="timed images per device and mode (default 3)")
    ap.add_argument("--modes", nargs="+", default=["cloak", "poison"], choices=["cloak", "poison"])
    ap.add_argument("--steps", type=int, default=None, help="override the presets' steps (smoke runs only)")
    ap.add_argument("--models-dir", default=None)
    ap.add_argument("--tiny", action="store_true", help="tiny random models (no weights; mechanics only)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch (default: all cores)")
    ap.add_argument("--json", default=None, metavar="FILE", help="also write the rows and the machine as JSON")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    models_dir = args.models_dir or os.environ.get("SFUMATO_MODELS_DIR") or (
        str(SHARED / "models") if (SHARED / "models").is_dir() else None)
    if args.tiny:
        use_tiny_models()
        models_dir = None
    devices = args.devices or (["cuda", "cpu"] if torch.cuda.is_available() else ["cpu"])
    imgs, origin = images(args.images, args.size)
    anchor_imgs = anchors(args.size)
    info = machine()
    print(f"machine: {json.dumps(info)}; images: {origin}, {args.size}²; models: "
          f"{'tiny random' if args.tiny else models_dir}", file=sys.stderr, flush=True)
    rows = []
    for d in devices:
        rows += measure(d, args.modes, imgs, anchor_imgs, steps=args.steps, models_dir=models_dir)
    print("\n| device | mode | size | steps | s/image (median) | range | images/hour | peak GPU MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['device']} | {r['mode']} | {r['size']}² | {r['steps']} | {r['median_s']:.2f} | "
              f"{min(r['seconds']):.2f}–{max(r['seconds']):.2f} | {r['images_per_hour']:.0f} | "
              f"{r.get('peak_gpu_mib', '—')} |")
    if args.steps is not None or args.tiny:
        print("\n(smoke run: " + ", ".join(x for x in ("tiny random models" if args.tiny else "",
                                                         f"steps overridden to {args.steps}" if args.steps else "")
                                          if x) + " — not a product figure)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"machine": info, "images": origin, "tiny": args.tiny,
                                               "steps_override": args.steps, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
