"""Peak resident memory of ``sfumato cloak`` as a function of image size (the memory model of issue 19).

    python benchmarks/memory.py [--mp 1 4 25] [--steps 2] [--quality fast] [--models-dir DIR] [--threads N]

For each size, a synthetic RGB image of that many megapixels (4:3, a smooth gradient with noise, so
LPIPS and the encoder see texture) is written as PNG, and ``sfumato cloak IMG -o OUT --quality fast
--steps N --quiet`` runs in its own process. Its peak RSS is the child's ``ru_maxrss`` as reported by
``os.wait4`` (the kernel's high-water mark of the whole process, native allocations included — not
tracemalloc, which sees only Python objects). Prints a table MP → peak RSS (GB) and seconds, plus the
command line used. The optimisation runs at the preset's work resolution whatever the image size, so
``--steps`` changes the time, not the memory; what grows with the image is the full-resolution part
(calibration, the saved-file measures, encoding), which is tiled or banded where it would otherwise
grow fastest (LPIPS, SSIM).

Measured (2-core CPU, OMP_NUM_THREADS=1, ``--steps 2``, fast preset; seconds depend on the machine's load):

| MP | peak RSS (GB) | seconds |
|---:|---:|---:|
| 1 | 1.17 | 61 |
| 4 | 1.41 | 75 |
| 25 | 3.66 | 399 |

About 1.05 GB + 0.1 GB per megapixel (before tiling, 4 MP took 1.81 GB).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def synthetic_image(path: Path, megapixels: float, seed: int = 0) -> tuple[int, int]:
    """Write a ``megapixels`` 4:3 RGB PNG (gradient, waves and noise) built in row bands; its (w, h)."""
    from PIL import Image

    w = int(round((megapixels * 1e6 * 4 / 3) ** 0.5))
    h = int(round(megapixels * 1e6 / w))
    rng = np.random.default_rng(seed)
    out = np.empty((h, w, 3), dtype=np.uint8)
    xx = np.linspace(0, 1, w, dtype=np.float32)[None, :]
    for r0 in range(0, h, 1024):
        r1 = min(h, r0 + 1024)
        yy = np.linspace(r0 / h, r1 / h, r1 - r0, endpoint=False, dtype=np.float32)[:, None]
        band = np.stack([0.2 + 0.6 * xx + 0 * yy, 0.3 + 0.4 * yy + 0 * xx,
                         0.5 + 0.25 * np.sin(40 * xx * yy + 9 * yy)], axis=-1)
        band += rng.normal(0, 0.04, size=band.shape).astype(np.float32)
        out[r0:r1] = (np.clip(band, 0, 1) * 255).round().astype(np.uint8)
    Image.fromarray(out).save(path, compress_level=1)
    return w, h


def measure(cmd: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Run ``cmd``; (peak RSS in GB, seconds, exit code)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    secs = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        print(f"  exit {proc.returncode}: {err.strip().splitlines()[-1] if err.strip() else ''}", file=sys.stderr)
    return usage.ru_maxrss / 1024**2, secs, proc.returncode  # ru_maxrss is in KiB on Linux


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mp", type=float, nargs="+", default=[1, 4, 25], help="image sizes in megapixels")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--quality", default="fast", choices=["fast", "default", "slow"])
    ap.add_argument("--models-dir", default=os.environ.get("SFUMATO_MODELS_DIR", str(ROOT.parent / "shared/models")))
    ap.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the child (default: inherited)")
    ap.add_argument("--max-megapixels", type=float, default=None,
                    help="passed to the CLI (default: just above the largest size; a 25 MP 4:3 image is a few "
                         "pixels over the CLI's 25 MP default)")
    args = ap.parse_args(argv)

    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    rows = []
    with tempfile.TemporaryDirectory(prefix="sfumato-mem-") as d:
        for mp in args.mp:
            img = Path(d) / f"synthetic_{mp:g}mp.png"
            w, h = synthetic_image(img, mp)
            cmd = [sys.executable, "-c", "import sys; from sfumato.cli import main; sys.exit(main())",
                   "cloak", str(img), "-o", str(Path(d) / f"out_{mp:g}"), "--quality", args.quality,
                   "--steps", str(args.steps), "--quiet", "--models-dir", args.models_dir,
                   "--max-megapixels", f"{args.max_megapixels or min(100.0, max(args.mp) + 0.1):g}"]
            gb, secs, rc = measure(cmd, env)
            rows.append((mp, w, h, gb, secs, rc))
            print(f"{mp:g} MP ({w}x{h}): peak RSS {gb:.2f} GB, {secs:.0f} s, exit {rc}", flush=True)
            img.unlink()
    print("\nsfumato cloak IMG -o OUT --quality", args.quality, "--steps", args.steps, "--quiet",
          f"(OMP_NUM_THREADS={env.get('OMP_NUM_THREADS', 'unset')})")
    print("| MP | size | peak RSS (GB) | seconds | exit |\n|---:|---|---:|---:|---:|")
    for mp, w, h, gb, secs, rc in rows:
        print(f"| {mp:g} | {w}x{h} | {gb:.2f} | {secs:.0f} | {rc} |")
    return int(any(r[-1] for r in rows))


if __name__ == "__main__":
    raise SystemExit(main())
