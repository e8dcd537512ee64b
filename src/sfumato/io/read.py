"""Reading artists' files: finding images in folders, decoding one into an :class:`~sfumato.io.ArtImage`
with everything needed to write it back, and wrapping in-memory arrays the same way.

The format is decided from the file's bytes (Pillow's detection), never from its name; camera "MPO"
JPEGs are read as JPEG (their primary picture). Animated or multi-page files, non-images, truncated
files and images larger than ``max_pixels`` are rejected with an :class:`~sfumato.io.ImageError`.
Files are fully decoded on load (Pillow's ``LOAD_TRUNCATED_IMAGES`` is never set). The EXIF orientation
is applied on load, so pixels come out upright (the print resolution follows a 90-degree turn).
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageCms

from sfumato.io.artimage import ArtImage, ImageError
from sfumato.io.decode import decode_pixels, open_image, sixteen_bit_kind
from sfumato.io.formats import ADVICE_FORMATS, IMAGE_SUFFIXES, normalise_format, supported_formats
from sfumato.io.metadata import (
    ORIENTATION,
    dpi_from_info,
    exif_bytes,
    exif_serialise,
    read_png_text,
    readable_exif,
    reset_xmp_orientation,
)
from sfumato.io.tensors import ints_to_float

MAX_PIXELS = 100_000_000
"""Default largest image (width x height) :func:`load_image` accepts; larger files are refused (the library's
decompression-bomb guard; the command line applies a lower limit sized for the machine's memory)."""

MIN_SIDE = 32
"""Smallest width and height, in pixels, an image needs to be protected: AlexNet LPIPS (the budget's
metric) has an empty deepest feature map below 31 px, and 32 is the next multiple of the encoders' 8x
downsampling. :func:`probe_image` refuses smaller images with ``min_side``; :func:`load_image` reads them."""

UNSUPPORTED_IMAGE_SUFFIXES: frozenset[str] = frozenset({
    ".gif", ".bmp", ".dib", ".ico", ".cur", ".psd", ".psb", ".heic", ".heif", ".jp2", ".j2k", ".jpx", ".jxl",
    ".tga", ".pcx", ".ppm", ".pgm", ".pbm", ".pnm", ".dds", ".exr", ".hdr", ".qoi", ".xcf", ".kra", ".svg",
    ".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf", ".rw2", ".raf", ".avif",
}) - IMAGE_SUFFIXES
"""Extensions of other image formats: a folder walk that wants to report what it does not protect (see
:func:`walk_images`) lists them instead of passing over them in silence."""


def iter_image_paths(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Expand files and folders into a list of image files.

    Folders are walked recursively and give their files whose extension is in :data:`IMAGE_SUFFIXES`
    (case-insensitive), sorted, skipping hidden files and folders (names starting with ``"."``, e.g.
    macOS ``._x.jpg``). Files named explicitly are kept whatever their extension (the content decides).
    Order follows the arguments; duplicates are dropped. A missing path raises ``FileNotFoundError``.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: list[Path] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        key = Path(os.path.realpath(p))  # never raises, not even on a symlink loop
        if key not in seen:
            seen.add(key)
            out.append(p)

    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = []
            for dirpath, dirnames, filenames in os.walk(p):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                for name in filenames:
                    if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                        found.append(Path(dirpath) / name)
            for f in sorted(found):
                add(f)
        elif p.is_file():
            add(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder; check the path")
    return out


def walk_images(folder: str | os.PathLike[str]) -> tuple[list[Path], list[Path], list[tuple[Path, str]]]:
    """Walk ``folder`` recursively as :func:`iter_image_paths` does (hidden names skipped, symbolic links to
    folders not followed, so a link loop cannot trap the walk) and return, each sorted: the images it
    would pick, the files of other image formats (:data:`UNSUPPORTED_IMAGE_SUFFIXES`, e.g. GIF, BMP), and
    ``(folder, reason)`` for sub-folders that could not be read."""
    images: list[Path] = []
    others: list[Path] = []
    errors: list[tuple[Path, str]] = []

    def onerror(e: OSError) -> None:
        errors.append((Path(e.filename or folder), e.strerror or type(e).__name__))

    for dirpath, dirnames, filenames in os.walk(folder, onerror=onerror):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            suffix = Path(name).suffix.lower()
            if name.startswith("."):
                continue
            if suffix in IMAGE_SUFFIXES:
                images.append(Path(dirpath) / name)
            elif suffix in UNSUPPORTED_IMAGE_SUFFIXES:
                others.append(Path(dirpath) / name)
    return sorted(images), sorted(others), sorted(errors)


def _check_max_pixels(max_pixels: int) -> None:
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive int, got {max_pixels!r}")


def _guarded(p: Path, fn: Any) -> Any:
    """Run ``fn()`` (which reads ``p``) and turn whatever a bad file raises into a one-line ImageError."""
    if not p.exists():
        if os.path.islink(p):
            raise ImageError(p, "is a broken symbolic link or a symbolic link loop", "point it at an image file")
        raise FileNotFoundError(f"{p}: no such file; check the path")
    if p.is_dir():
        raise ImageError(p, "is a folder, not an image file", "pass an image file (or use iter_image_paths)")
    try:
        return fn()
    except (ImageError, MemoryError):
        raise
    except Image.DecompressionBombError as e:
        raise ImageError(
            p,
            f"is too large for Pillow's decompression-bomb limit ({e})",
            "raise PIL.Image.MAX_IMAGE_PIXELS if you trust this file",
        ) from e
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, ImageCms.PyCMSError) as e:
        if isinstance(e, (FileNotFoundError, PermissionError, IsADirectoryError)):
            raise
        raise ImageError(
            p,
            f"is corrupt, truncated or not a supported image ({type(e).__name__}: {e})",
            f"re-export it from your editor ({ADVICE_FORMATS})",
        ) from e


def load_image(path: str | os.PathLike[str], *, max_pixels: int = MAX_PIXELS) -> ArtImage:
    """Read an image file into an :class:`ArtImage` (see :mod:`sfumato.io` for what is kept).

    Raises :class:`ImageError` (a ``ValueError`` with a one-line message) for anything that is not a
    usable still image: unknown or unsupported content, animated or multi-page files, truncated or
    corrupt data, more than ``max_pixels`` pixels (Pillow's own ``PIL.Image.MAX_IMAGE_PIXELS`` bomb
    limit still applies above ``2 * MAX_IMAGE_PIXELS``). ``FileNotFoundError`` if there is no such file.
    """
    _check_max_pixels(max_pixels)
    p = Path(path)
    return _guarded(p, lambda: _load(p, max_pixels))


def probe_image(path: str | os.PathLike[str], *, max_pixels: int = MAX_PIXELS,
                min_side: int = 1) -> tuple[str, tuple[int, int], str]:
    """``(format, (width, height), Pillow mode)`` of an image file from its header, without decoding the
    pixels: cheap enough to vet a whole batch before any work starts. Refuses what :func:`load_image`
    refuses from the header alone (same messages: not an image, unsupported format, animated or
    multi-page, over ``max_pixels``), and images narrower or lower than ``min_side`` pixels."""
    _check_max_pixels(max_pixels)
    p = Path(path)

    def probe() -> tuple[str, tuple[int, int], str]:
        with open_image(p, max_pixels) as im:
            fmt = _still_format(im, p)
            w, h = im.size
            if min(w, h) < min_side:
                raise ImageError(p, f"is {w}x{h} px, smaller than the minimum of {min_side} px on each side",
                                 f"protect images at least {min_side}x{min_side} px (upscale small sprites first)")
            return fmt, (w, h), im.mode

    return _guarded(p, probe)


def _still_format(im: Image.Image, p: Path) -> str:
    """The format of an opened still image this installation handles, or :class:`ImageError`."""
    fmt = (im.format or "").upper()
    frames = int(getattr(im, "n_frames", 1) or 1)
    if fmt == "MPO":  # camera JPEG with extra pictures (previews, depth): the first one is the photo
        return "JPEG"
    if frames > 1:
        what = "pages" if fmt == "TIFF" else "frames (animated)"
        raise ImageError(
            p,
            f"has {frames} {what}; Sfumato protects single still images",
            "export the frame you want as a PNG or TIFF and protect that",
        )
    if fmt not in supported_formats():
        raise ImageError(p, f"is a {fmt or 'unknown'} file, which Sfumato does not handle", ADVICE_FORMATS)
    return fmt


def _load(p: Path, max_pixels: int) -> ArtImage:
    im = open_image(p, max_pixels)
    with im:
        fmt = _still_format(im, p)
        tiles = list(im.tile)
        sixteen = sixteen_bit_kind(im, fmt, tiles, p)
        # Some plugins (TIFF in Pillow >= 12) apply the orientation themselves while loading and then
        # delete it from their EXIF/XMP: reading it after load() leaves exactly what is still to do.
        pre_orientation = _int_or(getattr(im, "tag_v2", {}).get(ORIENTATION), 1)
        # TIFF closes its file after loading: read its EXIF directories (all levels) while it is open.
        # The cached object is the one the plugin edits if it applies the orientation itself.
        exif_obj = readable_exif(im, p) if fmt == "TIFF" else None
        im.load()
        info = dict(im.info)
        if fmt != "TIFF":
            exif_obj = readable_exif(im, p)
        orientation = _int_or(exif_obj.get(ORIENTATION) if exif_obj is not None else None, 1)
        if orientation not in range(1, 9):
            orientation = 1
        icc = info.get("icc_profile") or None
        exif = exif_bytes(info, exif_obj, fmt) if exif_obj is not None else None
        xmp = info.get("xmp") or info.get("XML:com.adobe.xmp") or None
        if isinstance(xmp, str):
            xmp = xmp.encode("utf-8")
        dpi = dpi_from_info(info)
        png_text = read_png_text(im) if fmt == "PNG" else {}
        arr, alpha, mode, depth, icc = decode_pixels(im, p, sixteen, icc, info, max_pixels)
    if exif and orientation != 1:  # belt and braces: the kept EXIF must never ask for a second rotation
        check = Image.Exif()
        check.load(exif)
        if check.get(ORIENTATION, 1) != 1:
            exif = exif_serialise(check)
    # width and height were exchanged, by us or by the plugin: the print resolution follows
    swapped = orientation in (5, 6, 7, 8) or (orientation == 1 and pre_orientation in (5, 6, 7, 8))
    arr = _orient(arr, orientation)
    if alpha is not None:
        alpha = np.ascontiguousarray(_orient(alpha, orientation))
    if swapped and dpi is not None:
        dpi = (dpi[1], dpi[0])
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    rgb = np.ascontiguousarray(ints_to_float(arr))
    return ArtImage(
        rgb=rgb,
        alpha=alpha,
        bit_depth=depth,
        mode=mode,
        format=fmt,
        icc_profile=bytes(icc) if icc else None,
        exif=exif,
        xmp=reset_xmp_orientation(bytes(xmp)) if xmp else None,
        path=p,
        dpi=dpi,
        png_text=png_text,
    )


def _int_or(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an HxW[xC] array so the result is upright."""
    if orientation == 2:
        return a[:, ::-1]
    if orientation == 3:
        return a[::-1, ::-1]
    if orientation == 4:
        return a[::-1]
    if orientation == 5:
        return a.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(a, -1)
    if orientation == 7:
        return a[::-1, ::-1].swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(a, 1)
    return a


def image_from_array(
    rgb: np.ndarray,
    *,
    alpha: np.ndarray | None = None,
    bit_depth: int | None = None,
    format: str = "PNG",
) -> ArtImage:
    """Wrap an in-memory RGB array as an :class:`ArtImage` with no metadata (for API users and tests).

    ``rgb`` is ``HxWx3``: ``uint8`` (8-bit), ``uint16`` (16-bit) or floats in ``[0, 1]`` (then
    ``bit_depth``, default 8, says how it will be saved). ``alpha`` (optional, ``HxW``) must be ``uint8``
    for 8-bit or ``uint16`` for 16-bit images.
    """
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"rgb must be an HxWx3 array, got shape {arr.shape}")
    if arr.dtype == np.uint8 or arr.dtype == np.uint16:
        depth = 8 if arr.dtype == np.uint8 else 16
        if bit_depth is not None and bit_depth != depth:
            raise ValueError(
                f"bit_depth={bit_depth} contradicts rgb dtype {arr.dtype}; leave bit_depth unset"
            )
        values = ints_to_float(arr)
    elif np.issubdtype(arr.dtype, np.floating):
        depth = 8 if bit_depth is None else bit_depth
        if depth not in (8, 16):
            raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth!r}")
        values = arr.astype(np.float32)
        if not np.isfinite(values).all() or values.min() < 0.0 or values.max() > 1.0:
            raise ValueError("float rgb must be finite and within [0, 1]; clip it with np.clip(rgb, 0, 1)")
    else:
        raise ValueError(f"rgb must be uint8, uint16 or float in [0, 1], got dtype {arr.dtype}")
    if alpha is not None:
        alpha = np.asarray(alpha)
        want = np.uint8 if depth == 8 else np.uint16
        if alpha.shape != arr.shape[:2] or alpha.dtype != want:
            raise ValueError(
                f"alpha must be an HxW {np.dtype(want).name} array matching rgb {arr.shape[:2]}, "
                f"got {alpha.dtype} {alpha.shape}"
            )
        alpha = alpha.copy()
    fmt = normalise_format(format)
    return ArtImage(
        rgb=np.ascontiguousarray(values),
        alpha=alpha,
        bit_depth=depth,
        mode="RGB" if alpha is None else "RGBA",
        format=fmt,
        icc_profile=None,
        exif=None,
        xmp=None,
        path=None,
    )
