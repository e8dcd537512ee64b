"""Target styles for the style cloak: built-in procedural style families and user reference folders.

Glaze (Shan et al., "Glaze: Protecting Artists from Style Mimicry by Text-to-Image Models", USENIX
Security 2023, §5) cloaks an artwork toward a rendering of the *same content in a different style*, with
the target style chosen so its distance from the artist's style lies between the 50th and 75th
percentile of the candidates. The built-in families below need no data: each is a small procedural
painter (seeded, deterministic) that produces style exemplars at 256x256.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

EXEMPLAR_SIZE = 256


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _palette(rng: np.random.Generator, n: int, *, sat: float = 0.8, val: float = 0.9) -> np.ndarray:
    h = (rng.random() + np.arange(n) / n + rng.normal(0, 0.03, n)) % 1.0
    s = np.clip(sat + rng.normal(0, 0.1, n), 0, 1)
    v = np.clip(val + rng.normal(0, 0.1, n), 0, 1)
    i = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    rgb = np.stack([np.choose(i, [tb[c] for tb in table]) for c in range(3)], axis=1)
    return rgb.astype(np.float32)


def _grid(n: int = EXEMPLAR_SIZE) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:n, 0:n].astype(np.float32)
    return y, x


def _voronoi(rng: np.random.Generator, n_cells: int, n: int = EXEMPLAR_SIZE) -> tuple[np.ndarray, np.ndarray]:
    pts = rng.random((n_cells, 2)) * n
    y, x = _grid(n)
    d = (y[..., None] - pts[:, 0]) ** 2 + (x[..., None] - pts[:, 1]) ** 2
    nearest = np.partition(d, 1, axis=-1)  # the two smallest first, in order (no full sort: 4x faster)
    edge = np.sqrt(nearest[..., 1]) - np.sqrt(nearest[..., 0])
    return np.argmin(d, axis=-1), edge


def _window(cy: float, cx: float, r: float, n: int = EXEMPLAR_SIZE) -> tuple[slice, slice]:
    """The rows and columns of an ``n``x``n`` grid that can hold a pixel within ``r`` of (``cy``, ``cx``), with a
    pixel of margin: a mark drawn through this window sets exactly the pixels a whole-image mask would, at a
    small fraction of the cost (the built-in styles draw thousands of small marks)."""
    return (slice(max(0, math.floor(cy - r) - 1), max(0, min(n, math.ceil(cy + r) + 2))),
            slice(max(0, math.floor(cx - r) - 1), max(0, min(n, math.ceil(cx + r) + 2))))


def _blur(img: np.ndarray, radius: int) -> np.ndarray:
    if radius <= 0:
        return img
    k = 2 * radius + 1
    out = img.copy()
    for axis in (0, 1):
        c = np.cumsum(np.pad(out, [(radius + 1, radius) if a == axis else (0, 0) for a in range(out.ndim)],
                             mode="edge"), axis=axis)
        sl_hi = [slice(None)] * out.ndim
        sl_lo = [slice(None)] * out.ndim
        sl_hi[axis] = slice(k, None)
        sl_lo[axis] = slice(0, -k)
        out = (c[tuple(sl_hi)] - c[tuple(sl_lo)]) / k
    return out


def _pointillism(seed: int) -> np.ndarray:
    rng = _rng(seed)
    pal = _palette(rng, 6, sat=0.75, val=0.85)
    img = np.ones((EXEMPLAR_SIZE, EXEMPLAR_SIZE, 3), np.float32) * (0.9 + 0.1 * pal[0])
    y, x = _grid()
    for _ in range(1400):
        cy, cx = rng.random(2) * EXEMPLAR_SIZE
        r = rng.uniform(2.0, 4.5)
        w = _window(cy, cx, r)
        m = (y[w] - cy) ** 2 + (x[w] - cx) ** 2 <= r * r
        img[w][m] = pal[rng.integers(len(pal))]
    return img


def _cubist(seed: int) -> np.ndarray:
    rng = _rng(seed)
    pal = _palette(rng, 5, sat=0.45, val=0.6)
    lab, edge = _voronoi(rng, 40)
    shade = rng.uniform(0.6, 1.2, 40)[lab][..., None]
    img = pal[rng.integers(0, len(pal), 40)][lab] * shade
    img = img * (0.75 + 0.25 * np.clip(edge / 6, 0, 1))[..., None]
    img[edge < 1.5] = 0.12
    return np.clip(img, 0, 1)


def _stained_glass(seed: int) -> np.ndarray:
    rng = _rng(seed)
    pal = _palette(rng, 8, sat=0.95, val=0.95)
    lab, edge = _voronoi(rng, 90)
    img = pal[rng.integers(0, len(pal), 90)][lab]
    img[edge < 3.0] = 0.03
    return img


def _hatching(seed: int) -> np.ndarray:
    rng = _rng(seed)
    y, x = _grid()
    tone = _blur(rng.random((EXEMPLAR_SIZE, EXEMPLAR_SIZE)).astype(np.float32), 24)
    tone = (tone - tone.min()) / (np.ptp(tone) + 1e-6)
    ink = np.zeros_like(tone)
    for k, ang in enumerate(rng.uniform(0, math.pi, 3)):
        u = x * math.cos(ang) + y * math.sin(ang)
        lines = (np.sin(u * rng.uniform(0.7, 1.1)) > 0.75).astype(np.float32)
        ink = np.maximum(ink, lines * (tone < 0.35 + 0.22 * k))
    paper = np.array([0.96, 0.93, 0.85], np.float32)
    inkc = np.array([0.1, 0.08, 0.12], np.float32)
    return paper * (1 - ink[..., None]) + inkc * ink[..., None]


def _watercolour(seed: int) -> np.ndarray:
    rng = _rng(seed)
    pal = _palette(rng, 5, sat=0.5, val=0.95)
    img = np.ones((EXEMPLAR_SIZE, EXEMPLAR_SIZE, 3), np.float32)
    for _ in range(14):
        mask = _blur((rng.random((EXEMPLAR_SIZE, EXEMPLAR_SIZE)) < 0.002).astype(np.float32), 30)
        mask = np.clip(mask / (mask.max() + 1e-6) * rng.uniform(1.0, 2.5), 0, 1)
        img = img * (1 - 0.55 * mask[..., None]) + 0.55 * mask[..., None] * pal[rng.integers(len(pal))]
    grain = rng.normal(0, 0.02, (EXEMPLAR_SIZE, EXEMPLAR_SIZE, 1)).astype(np.float32)
    return np.clip(img + grain, 0, 1)


def _mosaic(seed: int) -> np.ndarray:
    rng = _rng(seed)
    pal = _palette(rng, 7, sat=0.7, val=0.8)
    t = int(rng.integers(10, 16))
    y, x = _grid()
    cell = (y // t).astype(int) * 1000 + (x // t).astype(int)
    cols = pal[rng.integers(0, len(pal), cell.max() + 1)]
    img = cols[cell] * rng.uniform(0.85, 1.1, cell.max() + 1)[cell][..., None]
    grout = ((y % t) < 2) | ((x % t) < 2)
    img[grout] = np.array([0.8, 0.78, 0.72])
    return np.clip(img, 0, 1).astype(np.float32)


def _halftone(seed: int) -> np.ndarray:
    rng = _rng(seed)
    y, x = _grid()
    tone = _blur(rng.random((EXEMPLAR_SIZE, EXEMPLAR_SIZE, 3)).astype(np.float32), 28)
    tone = (tone - tone.min()) / (np.ptp(tone) + 1e-6)
    img = np.ones_like(tone)
    period = rng.uniform(6, 9)
    for c, ang in enumerate((0.26, 1.31, 0.79)):
        u = (x * math.cos(ang) + y * math.sin(ang)) / period
        v = (-x * math.sin(ang) + y * math.cos(ang)) / period
        d = np.hypot(u - np.round(u), v - np.round(v))
        dot = d < 0.55 * np.sqrt(tone[..., c])
        img[..., c] = np.where(dot, 0.1, 1.0)
    return img


def _impasto(seed: int) -> np.ndarray:
    rng = _rng(seed)
    pal = _palette(rng, 6, sat=0.85, val=0.8)
    img = np.zeros((EXEMPLAR_SIZE, EXEMPLAR_SIZE, 3), np.float32) + pal[0] * 0.5
    y, x = _grid()
    flow = _blur(rng.random((EXEMPLAR_SIZE, EXEMPLAR_SIZE)).astype(np.float32), 40)
    flow = (flow - flow.min()) / (np.ptp(flow) + 1e-6) * 4 * math.pi
    for _ in range(260):
        cy, cx = rng.random(2) * EXEMPLAR_SIZE
        col = pal[rng.integers(len(pal))] * rng.uniform(0.7, 1.2)
        for _step in range(18):
            iy, ix = int(cy) % EXEMPLAR_SIZE, int(cx) % EXEMPLAR_SIZE
            w = _window(cy, cx, 3)
            m = (y[w] - cy) ** 2 + (x[w] - cx) ** 2 <= 9
            patch = img[w]
            patch[m] = patch[m] * 0.3 + col * 0.7
            a = flow[iy, ix]
            cy, cx = cy + 2.5 * math.sin(a), cx + 2.5 * math.cos(a)
    ridges = np.sin(flow * 6 + x * 0.3) * 0.06
    return np.clip(img + ridges[..., None], 0, 1)


def _glitch(seed: int) -> np.ndarray:
    rng = _rng(seed)
    pal = _palette(rng, 4, sat=1.0, val=1.0)
    y, _x = _grid()
    bands = rng.integers(0, len(pal), EXEMPLAR_SIZE // 4)
    img = pal[bands[(y // 4).astype(int)]] * 0.8
    img[(y % 3) == 0] *= 0.2
    noise = rng.random((EXEMPLAR_SIZE, EXEMPLAR_SIZE, 3)).astype(np.float32)
    return np.clip(img * 0.8 + noise * 0.25, 0, 1)


def _charcoal(seed: int) -> np.ndarray:
    rng = _rng(seed)
    img = np.ones((EXEMPLAR_SIZE, EXEMPLAR_SIZE), np.float32) * 0.92
    y, x = _grid()
    for _ in range(160):
        cy, cx = rng.random(2) * EXEMPLAR_SIZE
        ang = rng.normal(0.8, 0.3)
        length, width = rng.uniform(15, 40), rng.uniform(1, 3)  # drawn in this order, as before
        w = _window(cy, cx, math.hypot(length, width))
        u = (x[w] - cx) * math.cos(ang) + (y[w] - cy) * math.sin(ang)
        v = -(x[w] - cx) * math.sin(ang) + (y[w] - cy) * math.cos(ang)
        m = (np.abs(u) < length) & (np.abs(v) < width)
        img[w][m] *= rng.uniform(0.3, 0.7)
    img = img + rng.normal(0, 0.05, img.shape).astype(np.float32)
    return np.clip(np.repeat(img[..., None], 3, axis=-1), 0, 1)


STYLE_FAMILIES: dict[str, Callable[[int], np.ndarray]] = {
    "pointillism": _pointillism,
    "cubist": _cubist,
    "stained-glass": _stained_glass,
    "ink-hatching": _hatching,
    "watercolour": _watercolour,
    "mosaic": _mosaic,
    "halftone": _halftone,
    "impasto": _impasto,
    "glitch": _glitch,
    "charcoal": _charcoal,
}


@dataclass(frozen=True)
class StyleSource:
    """A candidate target style: a name and its exemplar images (float32 HxWx3 in [0, 1])."""

    name: str
    exemplars: tuple[np.ndarray, ...]
    #: one of the procedural families (its Gram signature may be kept in the on-disk style cache)
    builtin: bool = False

    def describe(self) -> dict:
        return {"name": self.name, "n_exemplars": len(self.exemplars)}


@functools.lru_cache(maxsize=64)
def builtin_style(name: str, *, n_exemplars: int = 2) -> StyleSource:
    """A built-in procedural style family, rendered deterministically (cached; treat as read-only)."""
    if name not in STYLE_FAMILIES:
        raise ValueError(f"unknown built-in style {name!r}; choose one of {sorted(STYLE_FAMILIES)} or give a folder")
    from sfumato.targets.style_cache import cached_arrays, digest

    fn = STYLE_FAMILIES[name]
    base = sum(ord(c) for c in name) * 1000
    key = f"exemplars-{name}-{n_exemplars}-{digest(_source_bytes(), np.__version__)}"
    arrays = cached_arrays(key, lambda: [fn(base + i).astype(np.float32) for i in range(n_exemplars)])
    return StyleSource(name, tuple(arrays), builtin=True)


@functools.lru_cache(maxsize=1)
def _source_bytes() -> bytes:
    """This module's source: the painters' code, part of the exemplar cache key."""
    return Path(__file__).read_bytes()


def builtin_styles() -> list[StyleSource]:
    return [builtin_style(n) for n in STYLE_FAMILIES]


def folder_style(path: str | Path, *, max_images: int = 8, max_side: int = 512) -> StyleSource:
    """Reference images of a target style (a folder); images are downscaled to ``max_side``."""
    import sfumato.io as sio

    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"target style folder {folder} does not exist; give a folder of reference images")
    files = sio.iter_image_paths([folder])[:max_images]
    if not files:
        raise ValueError(f"target style folder {folder} holds no images (PNG/JPEG/WebP/TIFF)")
    ex = []
    for f in files:
        rgb = sio.load_image(f).rgb
        ex.append(_downscale(rgb, max_side))
    return StyleSource(folder.name, tuple(ex))


def _downscale(rgb: np.ndarray, max_side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    s = max_side / max(h, w)
    if s >= 1:
        return rgb
    from PIL import Image

    im = Image.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8))
    im = im.resize((max(8, round(w * s)), max(8, round(h * s))), Image.Resampling.LANCZOS)
    return np.asarray(im, dtype=np.float32) / 255.0


def resolve_style_option(option: str) -> list[StyleSource]:
    """``"auto"`` → every built-in family; a built-in name → that one; otherwise a folder (or a parent of
    several style folders)."""
    if option == "auto":
        return builtin_styles()
    if option in STYLE_FAMILIES:
        return [builtin_style(option)]
    p = Path(option)
    if p.is_dir():
        subs = sorted(d for d in p.iterdir() if d.is_dir())
        if subs:
            return [folder_style(d) for d in subs]
        return [folder_style(p)]
    raise ValueError(
        f"target style {option!r} is neither 'auto', a built-in style ({', '.join(sorted(STYLE_FAMILIES))}) "
        "nor an existing folder of images"
    )
