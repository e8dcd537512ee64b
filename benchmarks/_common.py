"""Helpers shared by the benchmark scripts (run as ``python benchmarks/NAME.py``, so this folder is on
``sys.path``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp"}


def image_paths(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTS)


def load_downscaled(path: Path, side: int) -> np.ndarray:
    """An image file as float32 RGB HxWx3 in [0, 1], Lanczos-downscaled so its long side is ≤ ``side``
    (the "published" image a benchmark protects)."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        s = side / max(im.size)
        if s < 1:
            im = im.resize((max(1, round(im.size[0] * s)), max(1, round(im.size[1] * s))), Image.LANCZOS)
        return np.asarray(im, dtype=np.float32) / 255


def judge_without(art: Path, held_out: list[Path] | set[Path]):  # noqa: ANN201
    """The independent style judge (:class:`sfumato.judges.StyleJudge`) trained on every painting of
    ``art/<artist>/`` except ``held_out`` (the images a benchmark measures)."""
    from sfumato.judges.style import StyleJudge

    skip = {Path(p).resolve() for p in held_out}
    refs = {d.name: sorted(x for x in d.iterdir()
                           if x.suffix.lower() in {".png", ".jpg", ".jpeg"} and x.resolve() not in skip)
            for d in sorted(art.iterdir()) if d.is_dir()}
    return StyleJudge.train(refs)


def host_probe(models_dir: Path | None = None, *, side: int = 256, repeats: int = 3) -> str:
    """How fast this host runs the cloak's unit of work, for comparing speed figures across hosts: the
    median seconds of one TAEF2 encoder forward and backward pass on a ``side``² image, with the current
    thread count (the guide's machine: 0.53 s at 256² on 2 cores), after one warm-up pass."""
    import statistics
    import time

    import torch

    from sfumato.encoders import load_encoder

    enc = load_encoder("taef2", models_dir=models_dir)
    x = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0)).contiguous(
        memory_format=torch.channels_last).requires_grad_(True)
    times = []
    for i in range(repeats + 1):
        t = time.perf_counter()
        enc.encode(x).square().sum().backward()
        x.grad = None
        if i:
            times.append(time.perf_counter() - t)
    return (f"host probe: TAEF2 forward + backward at {side}² = {statistics.median(times):.2f} s "
            f"(median of {repeats}, {torch.get_num_threads()} threads; the guide's machine: 0.53 s on 2 cores)")


def emit(lines: list[str], out: str | None) -> int:
    """Print a benchmark's markdown report and, with ``-o``, write it there too; the exit status (0)."""
    text = "\n".join(lines)
    print(text)
    if out:
        Path(out).write_text(text + "\n")
    return 0
