"""Trainer views: the sizes and crops at which a fine-tuning pipeline encodes an image.

A protection is optimised at one working size (the cloak's jittered ``target.work_size``, about 448–512 px
long side), but the latent encoder is not scale-equivariant: a perturbation that moves the latent at the
work size may move it much less at another size. Trainers do not encode at our work size. Bucketing
trainers (kohya-ss sd-scripts, SimpleTuner, ai-toolkit) resize each image so its long side lands on a
bucket (512, 768 or 1024 px, with the aspect ratio kept), and the diffusers example scripts resize and
take a random crop of the file. :func:`trainer_views` lists those views for an ``h x w`` image, each one a
:class:`TrainerView` whose parameters replay it exactly; :func:`apply_view` applies one to a tensor
(differentiable, so an optimiser can use the same views) and :func:`apply_view_np` to an ``HxWx3`` array.

The views, in order (at most ``max_views``, identical geometries kept once):

* ``work``: the protection's own working size (what ``check`` measured before trainer views);
* ``bucket-512``, ``bucket-768``, ``bucket-1024``: long side resized to the bucket, aspect kept. A
  trainer *does* upscale a smaller image to its bucket (kohya's default; ``bucket_no_upscale`` is an
  option), so these views are included for small images too, marked ``upscaled=True``;
* ``native``: the file's own size, capped at ``native_cap`` px long side (kept only when it differs from
  a bucket, i.e. for images whose long side is under ``native_cap`` and not a bucket size);
* ``crop<side>@<scale>``: ``crops_per_scale`` random square crops (seeded) of side ``min(crop_side, h', w')``
  of each bucket view ``h' x w'`` (and of the native view when room is left), so every crop has the same
  pixel budget (``crop_side`` squared) whatever the scale. A crop that would be the whole view is skipped.

Resizing is :func:`sfumato.io.tensors.resize` (bilinear, antialiased when shrinking) — the same operation
the protection's own work view uses.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["BUCKETS", "CROP_SIDE", "MAX_VIEWS", "NATIVE_CAP", "TrainerView", "apply_view", "apply_view_np",
           "trainer_views"]

BUCKETS: tuple[int, ...] = (512, 768, 1024)
"""Long sides of the trainer buckets."""

NATIVE_CAP = 1024
"""The native view's long side is capped here (larger files are resized down to it, as a trainer would)."""

CROP_SIDE = 512
"""Side of the square random crops (their pixel budget), in pixels of the resized view."""

MAX_VIEWS = 8
"""At most this many views (their cost is one encoder pass each per image measured)."""


@dataclass(frozen=True)
class TrainerView:
    """One trainer view of an ``source`` (h, w) image: resize to ``size`` (h, w), then crop ``crop``.

    ``name``: stable label (``work``, ``bucket-768``, ``native``, ``crop512@768`` ...); ``kind``: ``work``,
    ``bucket``, ``native`` or ``crop``; ``long_side``: the long side the image is resized to (``None`` for
    the native view); ``crop``: ``(top, left, height, width)`` in the resized image's pixels, or ``None``;
    ``upscaled``: the view enlarges the file (a small image brought up to a bucket).
    """

    name: str
    kind: str
    source: tuple[int, int]
    size: tuple[int, int]
    long_side: int | None = None
    crop: tuple[int, int, int, int] | None = None
    upscaled: bool = False

    @property
    def out_size(self) -> tuple[int, int]:
        """(h, w) of the image the encoder sees."""
        return (self.crop[2], self.crop[3]) if self.crop is not None else self.size

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters (replay with :meth:`from_dict`)."""
        d = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainerView:
        crop = d.get("crop")
        return cls(name=str(d["name"]), kind=str(d["kind"]), source=(int(d["source"][0]), int(d["source"][1])),
                   size=(int(d["size"][0]), int(d["size"][1])),
                   long_side=None if d.get("long_side") is None else int(d["long_side"]),
                   crop=None if crop is None else (int(crop[0]), int(crop[1]), int(crop[2]), int(crop[3])),
                   upscaled=bool(d.get("upscaled", False)))


def _long_side_size(h: int, w: int, long_side: int) -> tuple[int, int]:
    s = long_side / max(h, w)
    return max(8, round(h * s)), max(8, round(w * s))


def _crop_view(base: TrainerView, crop_side: int, rng: np.random.Generator, scale_label: str) -> TrainerView | None:
    hv, wv = base.size
    ch, cw = min(crop_side, hv), min(crop_side, wv)
    side = min(ch, cw)
    if side >= hv and side >= wv:
        return None  # the crop would be the whole view
    top = int(rng.integers(0, hv - side + 1))
    left = int(rng.integers(0, wv - side + 1))
    return TrainerView(name=f"crop{side}@{scale_label}", kind="crop", source=base.source, size=base.size,
                       long_side=base.long_side, crop=(top, left, side, side), upscaled=base.upscaled)


def trainer_views(h: int, w: int, *, work_size: tuple[int, int] | None, seed: int, native_cap: int = NATIVE_CAP,
                  crops_per_scale: int = 1, scales: Sequence[int] = BUCKETS, crop_side: int = CROP_SIDE,
                  max_views: int = MAX_VIEWS) -> list[TrainerView]:
    """The trainer views of an ``h x w`` image (see the module docstring), deterministic for ``seed``.

    ``work_size``: (h, w) the protection was optimised at (``None``: no ``work`` view). ``scales``: the
    bucket long sides. Identical geometries are listed once (the first name wins); the list is cut at
    ``max_views``, crops going first (the native view's crops are the first to go).
    """
    if h < 8 or w < 8:
        raise ValueError(f"image of {w}x{h} is too small for trainer views (at least 8x8)")
    if crops_per_scale < 0 or crop_side < 8 or native_cap < 8 or max_views < 1:
        raise ValueError("crops_per_scale must be >= 0, crop_side and native_cap >= 8, max_views >= 1")
    src = (int(h), int(w))
    whole: list[TrainerView] = []
    if work_size is not None:
        wh, ww = int(work_size[0]), int(work_size[1])
        whole.append(TrainerView(name="work", kind="work", source=src, size=(wh, ww), long_side=max(wh, ww),
                                 upscaled=max(wh, ww) > max(h, w)))
    for s in scales:
        whole.append(TrainerView(name=f"bucket-{int(s)}", kind="bucket", source=src, size=_long_side_size(h, w, int(s)),
                                 long_side=int(s), upscaled=int(s) > max(h, w)))
    native_size = src if max(h, w) <= native_cap else _long_side_size(h, w, native_cap)
    whole.append(TrainerView(name="native", kind="native", source=src, size=native_size, long_side=None))
    out: list[TrainerView] = []
    seen: set[tuple[Any, ...]] = set()

    def keep(v: TrainerView) -> None:
        key = (v.size, v.crop)
        if key not in seen:
            seen.add(key)
            out.append(v)

    for v in whole:
        keep(v)
    for base in [v for v in out if v.kind in ("bucket", "native")]:
        rng = np.random.default_rng([int(seed), zlib.crc32(base.name.encode("ascii"))])  # stable per view name
        label = str(base.long_side) if base.long_side is not None else "native"
        for k in range(crops_per_scale):
            c = _crop_view(base, crop_side, rng, label if crops_per_scale == 1 else f"{label}.{k}")
            if c is not None:
                keep(c)
    while len(out) > max_views:
        drop = next((i for i in range(len(out) - 1, -1, -1) if out[i].kind == "crop"), len(out) - 1)
        out.pop(drop)
    return out


def _check_aspect(h: int, w: int, view: TrainerView) -> None:
    sh, sw = view.source
    if abs(h / w - sh / sw) > 0.02 * (sh / sw) + 1.0 / min(h, w, sh, sw):
        raise ValueError(f"view {view.name!r} was made for a {sw}x{sh} image, not {w}x{h} (another aspect ratio)")


def apply_view(x: torch.Tensor, view: TrainerView) -> torch.Tensor:
    """``x`` (NCHW float in [0, 1], any size with the source's aspect ratio) as the trainer sees it in ``view``:
    resized to ``view.size`` (:func:`sfumato.io.tensors.resize`), then cropped. Differentiable."""
    from sfumato.io.tensors import resize

    _check_aspect(int(x.shape[-2]), int(x.shape[-1]), view)
    y = resize(x, view.size)
    if view.crop is not None:
        t, left, ch, cw = view.crop
        y = y[..., t:t + ch, left:left + cw]
    return y


def apply_view_np(rgb: np.ndarray, view: TrainerView) -> np.ndarray:
    """:func:`apply_view` for an ``HxWx3`` float array (returns an ``hxwx3`` float32 array)."""
    import torch

    from sfumato.io.tensors import to_hwc, to_nchw

    with torch.no_grad():
        return to_hwc(apply_view(to_nchw(rgb), view))
