"""Aligned anchors for the concept poison: the anchor picture of concept A, flipped, cropped and scaled so it
keeps the layout of the source photo of C.

Why: Nightshade (Shan, Ding, Passananti, Wu, Zheng, Zhao, "Nightshade: Prompt-Specific Poisoning Attacks on
Text-to-Image Generative Models", IEEE S&P 2024, arXiv:2310.13828, §5) perturbs an image x of C so that the
encoder's features Φ(x + δ) approach those of an anchor x_A of A, under a perceptual budget. Its anchors are
generated from a prompt and have a layout of their own. The TAEF2 latent is a spatial code (a 8× downsampled
map), so an unaligned anchor asks the poison to redraw the whole picture; Glaze's target (the same artwork
restyled, Shan et al., USENIX Security 2023) shares the layout and is far easier to reach. Here the anchor is
chosen *and aligned* as a structural match: among the pool's anchors × {identity, horizontal flip} × a grid of
crops to the source's aspect ratio (scales ``scales`` of the largest such crop, every offset on the latent
grid), the candidate whose latent (the configured encoders', weighted) is nearest the source's.

Only the encoders score candidates. The judges that report stealth and effect (the MobileNetV2 ImageNet
classifier, the concept judge, anything trained on their features) never enter the anchor choice nor a loss.

Cost (kept small): the search runs at a small size (long side ``search_side``, 128 px by default) and a crop's
latent is read as a window of the latent of the whole resized anchor (an encoder made of convolutions is
close to translation-equivariant), so one encoder pass scores every offset of one (anchor, flip, scale); the window's interior is compared
(``WINDOW_MARGIN`` cells off each edge), whose context the crop shares.
Stage 1 scores every anchor (at most ``max_anchors``, the first in the order given) at scale 1 with and
without the flip; stage 2 adds the smaller scales for the ``shortlist`` nearest anchors; stage 3 re-encodes
the ``refine`` best windows as real crops at the source's own size, with the unaligned nearest, and picks
the smallest distance there (so the aligned anchor is never farther than the unaligned one at that size).
About 2 encoder passes per anchor at 128 px, a few dozen more, and ``refine`` + 2 at the source's size.

Distances: ``Σ_E w_E ‖E(a) − E(x0)‖ / ‖E(x0)‖`` (weights normalised), as
:func:`sfumato.targets.anchors.choose_anchor` measures them. The report gives the distance of the chosen
aligned anchor and of the *unaligned* nearest anchor (centre crop to the aspect ratio, no flip: the
``"cheapest"`` choice) at the source's own size: how far each kind of anchor leaves the poison to travel.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sfumato.encoders.base import Encoder
from sfumato.io.tensors import fit_to, resize, to_nchw

__all__ = ["MAX_ANCHORS", "SCALES", "SEARCH_SIDE", "AlignedAnchor", "align_anchor", "crop_box"]

#: Long side of the search size (pixels).
SEARCH_SIDE = 128
#: Crop scales, as shares of the largest crop of the anchor with the source's aspect ratio.
SCALES: tuple[float, ...] = (1.0, 0.8, 0.64)
#: Anchors searched at most (the first ones of the pool, in the order given).
MAX_ANCHORS = 64
#: Latent cells left out at each edge when a window of the whole anchor's latent stands for a crop's: the
#: edge cells of a window saw the anchor around the crop, the crop's own saw padding (on TAEF2 at 128 px the
#: exact crop's window is 0.24 from the crop's latent with every cell, 0.11 without 2 edge cells, against
#: 1.05 for another image).
WINDOW_MARGIN = 2


@dataclass(frozen=True)
class AlignedAnchor:
    """The aligned anchor and how it was found.

    ``image``: the anchor at the source's size (1x3xhxw, [0, 1]); ``index``: which anchor of the pool;
    ``flip``: mirrored left–right; ``box``: the crop ``(top, left, height, width)`` in the anchor's pixels
    (after the flip, when ``flip``); ``scale``: the crop's share of the largest crop with the source's
    aspect ratio; ``distance``: its latent distance to the source at the source's size;
    ``unaligned_index``/``unaligned_distance``: the same for the nearest unaligned anchor (centre crop, no
    flip); ``search_distance``: the chosen candidate's window distance at the search size (interior cells); ``windows``: the
    candidates scored; ``pool``: the anchors searched; ``seconds``: the search's time.
    """

    image: torch.Tensor
    index: int
    flip: bool
    box: tuple[int, int, int, int]
    scale: float
    distance: float
    unaligned_index: int
    unaligned_distance: float
    search_distance: float
    search_size: tuple[int, int]
    windows: int
    pool: int
    seconds: float

    def report(self) -> dict[str, Any]:
        """JSON-ready figures for the manifest."""
        return {"index": self.index, "flip": self.flip, "box": list(self.box), "scale": self.scale,
                "distance": round(self.distance, 4), "unaligned_index": self.unaligned_index,
                "unaligned_distance": round(self.unaligned_distance, 4),
                "travel_saved": round(1 - self.distance / max(self.unaligned_distance, 1e-12), 4),
                "search_distance": round(self.search_distance, 4), "search_size": list(self.search_size),
                "windows": self.windows, "pool": self.pool, "seconds": round(self.seconds, 2)}


@dataclass(frozen=True)
class _Window:
    dist: float
    index: int
    flip: bool
    scale: float
    box: tuple[int, int, int, int]

    def key(self) -> tuple:
        return (self.dist, self.index, self.flip, -self.scale, self.box)


def crop_box(anchor_hw: tuple[int, int], source_hw: tuple[int, int], scale: float) -> tuple[float, float]:
    """(height, width) of a crop of an anchor of ``anchor_hw`` with the aspect ratio of ``source_hw``, at
    ``scale`` of the largest such crop (pixels, not rounded)."""
    ha, wa = anchor_hw
    h, w = source_hw
    if ha * w > wa * h:  # anchor taller than the source's aspect ratio: the width limits
        ch, cw = wa * h / w, float(wa)
    else:
        ch, cw = float(ha), ha * w / h
    return ch * scale, cw * scale


def _search_size(h: int, w: int, side: int, grid: int) -> tuple[int, int]:
    s = side / max(h, w)
    return max(grid, round(h * s / grid) * grid), max(grid, round(w * s / grid) * grid)


def _distance(zs: Sequence[torch.Tensor], z0s: Sequence[torch.Tensor], weights: Sequence[float]) -> float:
    return float(sum(w * float((z - z0).flatten().norm()) / max(float(z0.flatten().norm()), 1e-12)
                     for z, z0, w in zip(zs, z0s, weights, strict=True)))


def _crop(img: torch.Tensor, flip: bool, box: tuple[int, int, int, int]) -> torch.Tensor:
    if flip:
        img = img.flip(-1)
    t, left, ch, cw = box
    return img[..., t:t + ch, left:left + cw]


def _windows(img: torch.Tensor, index: int, flip: bool, scale: float, size: tuple[int, int], grid: int,
             encs: Sequence[Encoder], z0s: Sequence[torch.Tensor], weights: Sequence[float]) -> list[_Window]:
    """Every crop of ``img`` (flipped when ``flip``) at ``scale`` whose offset lies on the latent grid at the
    search ``size``, scored as windows of the whole resized anchor's latent."""
    import torch.nn.functional as F

    hs, ws = size
    ha, wa = int(img.shape[-2]), int(img.shape[-1])
    ch, cw = crop_box((ha, wa), (hs, ws), scale)
    fy, fx = hs / ch, ws / cw
    hr, wr = max(hs, math.ceil(ha * fy - 1e-6)), max(ws, math.ceil(wa * fx - 1e-6))
    src = img.flip(-1) if flip else img
    view = resize(src, (hr, wr))
    ny, nx = (hr - hs) // grid + 1, (wr - ws) // grid + 1
    total = None
    for enc, z0, w in zip(encs, z0s, weights, strict=True):
        d = int(enc.downscale)
        kh, kw = hs // d, ws // d
        m = min(WINDOW_MARGIN, (kh - 1) // 2, (kw - 1) // 2)  # compare interiors: the edges saw other context
        z = enc.encode(view)[..., m: ((ny - 1) * grid + hs) // d - m, m: ((nx - 1) * grid + ws) // d - m]
        zi = z0[..., m: kh - m, m: kw - m].float()
        cols = F.unfold(z.float(), kernel_size=(kh - 2 * m, kw - 2 * m), stride=grid // d)  # 1 x (C·kh·kw) x n
        dist = (cols - zi.reshape(1, -1, 1)).norm(dim=1)[0] / max(float(zi.norm()), 1e-12)
        total = w * dist if total is None else total + w * dist
    assert total is not None
    out = []
    for k, dv in enumerate(total.tolist()):
        py, px = (k // nx) * grid, (k % nx) * grid
        top, left = min(round(py / fy), ha - 1), min(round(px / fx), wa - 1)
        box = (top, left, max(1, min(round(ch), ha - top)), max(1, min(round(cw), wa - left)))
        out.append(_Window(float(dv), index, flip, float(scale), box))
    return out


def align_anchor(x0: torch.Tensor, anchors: Sequence[np.ndarray], encoders: Sequence[tuple[Encoder, float]], *,
                 scales: Sequence[float] = SCALES, search_side: int = SEARCH_SIDE, max_anchors: int = MAX_ANCHORS,
                 shortlist: int = 8, refine: int = 6) -> AlignedAnchor:
    """The anchor of ``anchors`` (``HxWx3`` float arrays in [0, 1]) that, flipped or not and cropped to the
    aspect ratio of ``x0`` (1x3xhxw, [0, 1]) at one of ``scales``, has the latent nearest ``x0``'s (module
    docstring). Deterministic: ties go to the first anchor, no flip, the larger scale, the first offset."""
    if not anchors:
        raise ValueError("no anchor images to align: give a folder of target-concept images")
    if not scales or any(not 0 < s <= 1 for s in scales):
        raise ValueError(f"scales must be shares in (0, 1] of the largest crop, got {tuple(scales)}")
    if not encoders:
        raise ValueError("aligning an anchor needs at least one encoder")
    t0 = time.perf_counter()
    h, w = int(x0.shape[-2]), int(x0.shape[-1])
    encs = [e for e, _ in encoders]
    wsum = sum(float(wt) for _, wt in encoders)
    weights = [float(wt) / wsum for _, wt in encoders]
    grid = math.lcm(*(int(e.downscale) for e in encs))
    size = _search_size(h, w, max(int(search_side), grid), grid)
    pool = [to_nchw(np.asarray(a, dtype=np.float32)).to(x0) for a in anchors[:max(1, int(max_anchors))]]
    scale_list = sorted({float(s) for s in scales}, reverse=True)
    with torch.no_grad():
        xs = resize(x0.detach(), size)
        z0s = [e.encode(xs) for e in encs]
        # stage 1: every anchor at the first (largest) scale, with and without the flip
        first: list[list[_Window]] = []
        for i, img in enumerate(pool):
            first.append([win for flip in (False, True)
                          for win in _windows(img, i, flip, scale_list[0], size, grid, encs, z0s, weights)])
        best_first = sorted(range(len(pool)), key=lambda i: (min(x.key() for x in first[i]), i))
        found = [win for ws_ in first for win in ws_]
        # stage 2: the smaller scales for the nearest anchors
        for i in best_first[:max(1, int(shortlist))]:
            for s in scale_list[1:]:
                for flip in (False, True):
                    found += _windows(pool[i], i, flip, s, size, grid, encs, z0s, weights)

        # the unaligned nearest: the centre crop of the largest scale, no flip (as fit_to crops)
        def centre(i: int) -> _Window:
            ws_ = [x for x in first[i] if not x.flip]
            ha, wa = int(pool[i].shape[-2]), int(pool[i].shape[-1])
            ch, cw = crop_box((ha, wa), (h, w), 1.0)
            want = ((ha - ch) / 2, (wa - cw) / 2)
            return min(ws_, key=lambda x: (abs(x.box[0] - want[0]) + abs(x.box[1] - want[1]), x.key()))

        unaligned = min(range(len(pool)), key=lambda i: (centre(i).dist, i))

        # stage 3: the best windows as real crops, and the unaligned centre crop, at the source's own size
        top = sorted(found, key=_Window.key)[:max(1, int(refine))]
        u = pool[unaligned]
        ch, cw = crop_box((int(u.shape[-2]), int(u.shape[-1])), (h, w), 1.0)
        ch_i, cw_i = max(1, round(ch)), max(1, round(cw))
        u_win = _Window(centre(unaligned).dist, unaligned, False, 1.0,
                        ((int(u.shape[-2]) - ch_i) // 2, (int(u.shape[-1]) - cw_i) // 2, ch_i, cw_i))
        zw = [e.encode(x0.detach()) for e in encs]
        u_img = fit_to(np.asarray(anchors[unaligned], dtype=np.float32), (h, w)).to(x0)
        u_dist = _distance([e.encode(u_img) for e in encs], zw, weights)
        scored = [(u_dist, len(top), u_win, u_img)]
        for k, win in enumerate(top):
            img = resize(_crop(pool[win.index], win.flip, win.box), (h, w))
            scored.append((_distance([e.encode(img) for e in encs], zw, weights), k, win, img))
        dist, _, pick, image = min(scored, key=lambda t: (t[0], t[1]))
    return AlignedAnchor(image=image.detach().clamp(0, 1).contiguous(), index=pick.index, flip=pick.flip,
                         box=pick.box, scale=pick.scale, distance=dist, unaligned_index=unaligned,
                         unaligned_distance=u_dist, search_distance=pick.dist, search_size=size,
                         windows=len(found), pool=len(pool), seconds=time.perf_counter() - t0)
