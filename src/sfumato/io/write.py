"""Writing artists' files: :func:`save_image` stores new pixels with the source's alpha, metadata, bit
depth and (grey) mode, and :func:`stored_rgb` says exactly what a lossless save stores.

Greyscale sources are saved back as greyscale: the RGB given is projected onto the grey axis (mean of the
three channels, the least-squares inverse of the replication on load), so the chroma part of a
perturbation is dropped; WebP and AVIF, which have no grey mode, store that grey as R = G = B. Alpha is
never modified: bit-exact at the source's bit depth, rounded to 8 bits only when a 16-bit source is
written to an 8-bit format. 16-bit sources stay 16-bit in PNG and TIFF; JPEG, WebP and AVIF are 8-bit.
Lossy outputs are written at quality >= 95. The write is atomic (:func:`sfumato.io.atomic.atomic_write`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from sfumato.io.artimage import ArtImage
from sfumato.io.atomic import atomic_write, check_destination
from sfumato.io.codecs import encode_image
from sfumato.io.formats import (
    LOSSLESS_ONLY,
    MIN_LOSSY_QUALITY,
    SIXTEEN_BIT_FORMATS,
    SUFFIX_TO_FORMAT,
    default_output_format,
    normalise_format,
    output_suffix,
    supported_formats,
)
from sfumato.io.metadata import output_meta
from sfumato.io.tensors import float_to_ints, ints_to_float


def output_bit_depth(image: ArtImage, format: str) -> int:
    """Bits per channel :func:`save_image` writes ``image`` with in ``format`` (16: 16-bit PNG/TIFF only)."""
    fmt = normalise_format(format)
    return 16 if image.bit_depth == 16 and fmt in SIXTEEN_BIT_FORMATS else 8


def stored_rgb(image: ArtImage, rgb: np.ndarray, *, format: str | None = None) -> np.ndarray:
    """What a lossless :func:`save_image` of ``rgb`` stores, as float32 ``HxWx3`` in ``[0, 1]``.

    ``rgb`` quantized to the output bit depth; for greyscale sources, first projected to grey (channel
    mean) and replicated. For lossy formats this is the encoder's input, not its output.
    """
    fmt = default_output_format(image.format) if format is None else normalise_format(format)
    ints = _stored_ints(image, _check_rgb(rgb, image), output_bit_depth(image, fmt))
    if ints.ndim == 2:
        ints = np.repeat(ints[:, :, None], 3, axis=2)
    return ints_to_float(ints)


def save_image(
    image: ArtImage,
    rgb: np.ndarray,
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    jpeg_quality: int = 95,
    overwrite: bool = False,
    xmp: bytes | None = None,
    exif: bytes | None = None,
    lossless: bool | None = None,
) -> Path:
    """Write ``rgb`` with ``image``'s alpha, ICC profile, EXIF, XMP, dpi, bit depth and (grey) mode.

    ``rgb`` is float ``HxWx3`` in ``[0, 1]`` of the image's size. ``format`` defaults to the one the
    extension of ``path`` names, else :func:`default_output_format` of the source; an explicit format
    must agree with a known extension. ``jpeg_quality`` (>= 95) is the quality of lossy outputs (JPEG,
    lossy WebP, AVIF). ``lossless`` only matters for WebP (default ``True``); PNG/TIFF are always
    lossless, JPEG/AVIF never. ``xmp``/``exif`` replace the image's packets (``b""`` writes none); any
    EXIF/XMP written says orientation 1, because the pixels are stored upright.

    The file is written to a temporary name in the destination folder and moved into place atomically.
    Raises ``FileExistsError`` if ``path`` exists and ``overwrite`` is false, and ``ValueError`` for bad
    arguments or if ``path`` is the image's own source file. Returns the final path.
    """
    dest = Path(path)
    _check_rgb(rgb, image)
    fmt = _resolve_format(image, dest, format)
    quality_ok = isinstance(jpeg_quality, int) and not isinstance(jpeg_quality, bool)
    if not quality_ok or not MIN_LOSSY_QUALITY <= jpeg_quality <= 100:
        raise ValueError(
            f"jpeg_quality must be an int from {MIN_LOSSY_QUALITY} to 100 (got {jpeg_quality!r}): lower "
            "qualities destroy fine detail and weaken the protection"
        )
    if lossless is not None and not isinstance(lossless, bool):
        raise ValueError(f"lossless must be True, False or None, got {lossless!r}")
    if lossless is False and fmt in LOSSLESS_ONLY:
        raise ValueError(f"{fmt} is always lossless; choose JPEG, WebP or AVIF for lossy output")
    if lossless is True and fmt in ("JPEG", "AVIF"):
        raise ValueError(f"{fmt} output is always lossy here; choose PNG, TIFF or WebP for lossless output")
    if not dest.parent.is_dir():
        raise FileNotFoundError(f"{dest.parent}: output folder does not exist; create it first")
    check_destination(dest, overwrite=overwrite, source=image.path)
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    if xmp is not None and not isinstance(xmp, (bytes, bytearray)):
        raise ValueError(f"xmp must be bytes (an XMP packet) or None, got {type(xmp).__name__}")
    if exif is not None and not isinstance(exif, (bytes, bytearray)):
        raise ValueError(f"exif must be raw EXIF bytes or None, got {type(exif).__name__}")

    depth = output_bit_depth(image, fmt)
    ints = _stored_ints(image, rgb, depth)
    alpha = _alpha_for(image.alpha, depth)
    if fmt == "JPEG" and alpha is not None:
        if not np.all(alpha == np.iinfo(alpha.dtype).max):
            raise ValueError(
                f"{image.path or dest}: JPEG cannot store transparency and this image has some; save it as PNG, "
                "WebP or TIFF (--format PNG)"
            )
        alpha = None
    if (
        image.is_grey
        and fmt in ("WEBP", "AVIF")
        and image.icc_profile
        and image.icc_profile[16:20] == b"GRAY"
    ):
        raise ValueError(
            f"{image.path or dest}: this greyscale image has a grey ICC profile, which {fmt} (an RGB-only format) cannot "
            "carry; save it as PNG, TIFF or JPEG"
        )
    meta = output_meta(
        icc=image.icc_profile,
        exif=image.exif if exif is None else exif,
        xmp=image.xmp if xmp is None else xmp,
        dpi=image.dpi,
        text=image.png_text,
    )
    atomic_write(
        dest,
        lambda fp: encode_image(fp, fmt, ints, alpha, meta, quality=jpeg_quality, lossless=lossless is not False),
        overwrite=overwrite,
        source=image.path,
    )
    return dest


def _check_rgb(rgb: np.ndarray, image: ArtImage) -> np.ndarray:
    if not isinstance(rgb, np.ndarray):
        raise ValueError(
            f"rgb must be a numpy HxWx3 float array, got {type(rgb).__name__}; "
            "convert tensors with from_tensor"
        )
    w, h = image.size
    if rgb.shape != (h, w, 3):
        raise ValueError(
            f"rgb has shape {rgb.shape} but the image is {h}x{w}x3 (HxWx3); it must match the image"
        )
    if not np.issubdtype(rgb.dtype, np.floating):
        raise ValueError(
            f"rgb must be floats in [0, 1], got dtype {rgb.dtype}; divide integers by 255 or 65535"
        )
    if not np.isfinite(rgb).all():
        raise ValueError("rgb contains NaN or infinity; fix the computation that produced it")
    lo, hi = float(rgb.min()), float(rgb.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"rgb values span [{lo:.4g}, {hi:.4g}], outside [0, 1]; clip with np.clip(rgb, 0, 1)"
        )
    return rgb


def _stored_ints(image: ArtImage, rgb: np.ndarray, depth: int) -> np.ndarray:
    """Integers written for ``rgb``: HxW (grey sources) or HxWx3, uint8/uint16."""
    src = np.asarray(rgb, dtype=np.float32)
    if image.is_grey:
        src = src.mean(axis=2, dtype=np.float32)
    return float_to_ints(src, depth)


def _alpha_for(alpha: np.ndarray | None, depth: int) -> np.ndarray | None:
    if alpha is None:
        return None
    if depth == 16:
        return alpha.astype(np.uint16) if alpha.dtype == np.uint16 else alpha.astype(np.uint16) * 257
    if alpha.dtype == np.uint8:
        return alpha
    return ((alpha.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _resolve_format(image: ArtImage, dest: Path, format: str | None) -> str:
    by_suffix = SUFFIX_TO_FORMAT.get(dest.suffix.lower())
    if format is None:
        if by_suffix is not None and by_suffix in supported_formats():
            return by_suffix
        return default_output_format(image.format)
    fmt = normalise_format(format)
    if by_suffix is not None and by_suffix != fmt:
        raise ValueError(
            f"{dest}: extension {dest.suffix!r} does not match format {fmt}; use {output_suffix(fmt)!r} "
            "or leave format unset"
        )
    return fmt
