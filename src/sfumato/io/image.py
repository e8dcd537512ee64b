"""Image input/output that respects artists' files.

What this module promises:

* **Formats.** PNG, JPEG, WebP and TIFF are read and written; AVIF too when the installed Pillow has
  AVIF support (``PIL.features.check("avif")``). The format is decided from the file's bytes (Pillow's
  detection), never from its name. Camera "MPO" JPEGs are read as JPEG (their primary picture).
  Animated or multi-page files, non-images, truncated files and images larger than ``max_pixels``
  are rejected with an :class:`ImageError`, a one-line message naming the file and what to do.
  Files are fully decoded on load (Pillow's ``LOAD_TRUNCATED_IMAGES`` is never set).
* **Orientation.** The EXIF orientation is applied on load (pixels come out upright), and every EXIF
  or XMP packet this module hands out or writes says ``Orientation = 1`` so viewers do not rotate twice.
  The EXIF bytes are patched in place, so maker notes and their offsets stay valid.
* **Metadata.** The ICC profile, EXIF and XMP are kept in every output format (PNG: ``iCCP``, ``eXIf``
  and an ``iTXt XML:com.adobe.xmp`` chunk; JPEG: APP2/APP1; WebP: ICCP/EXIF/XMP chunks; TIFF: tags
  34675, 34665 (EXIF IFD) and 700; AVIF: colr/Exif/XMP boxes). The print resolution (dpi) is kept
  where the format has one, and a PNG's text chunks (Author, Copyright...) in PNG outputs. Not carried:
  IPTC/Photoshop resource blocks (modern editors mirror IPTC fields into XMP) and other private data.
  Pixels of RGB files with an ICC profile are **not** converted: the perturbation is computed in the
  file's own RGB space and the profile is written back unchanged.
* **Colour modes.** CMYK is converted to sRGB through its embedded ICC profile (perceptual intent), or
  with Pillow's naive conversion when it has none; the output is RGB with an sRGB profile (or none).
  Palette images become RGB, or RGBA when they carry transparency (``tRNS`` colour keys of RGB/grey
  PNGs become an alpha channel too). Greyscale sources (``1``, ``L``, ``LA``, ``I;16``, 16-bit
  grey+alpha PNG) are replicated to RGB for processing and **saved back as greyscale**: the RGB given
  to :func:`save_image` is projected onto the grey axis (mean of the three channels, the least-squares
  inverse of the replication), so the chroma part of a perturbation is dropped. Formats without a grey
  mode (WebP, AVIF) store that grey as R = G = B. ``1`` (bilevel) sources are saved as 8-bit ``L``.
* **Alpha** is never modified: it is stored bit-exactly when the output has the source's bit depth,
  and rounded to 8 bits only when a 16-bit source is written to an 8-bit format, lossy formats
  included (lossy WebP with ``alpha_quality=100``; AVIF with a lossless alpha plane from the AOM
  encoder, checked after encoding). JPEG cannot store transparency: saving an image whose alpha is
  not fully opaque as JPEG raises ``ValueError``.
* **16 bits.** 16-bit PNG (grey, grey+alpha, RGB, RGBA) and 16-bit TIFF (grey, RGB, RGBA) keep 16 bits
  per channel when written as PNG or TIFF. Pillow reads 16-bit colour PNG/TIFF as 8-bit and cannot
  write them, so this module (a) decodes such files twice with Pillow's own decoders, once taking the
  high byte of every sample (Pillow's default unpacker) and once the low byte (the unpacker of the
  opposite byte order), and joins the two, and (b) writes 16-bit PNG itself (zlib, standard PNG row
  filters chosen per row, ``IHDR`` bit depth 16, ``iCCP``/``eXIf``/``iTXt``/``pHYs`` chunks; PNG 1.2
  spec) and all TIFF output itself (baseline TIFF 6.0, Adobe Deflate compression with horizontal
  predictor, the IFD serialised by Pillow's ``ImageFileDirectory_v2``). 16-bit TIFFs with separate
  colour planes (PlanarConfiguration 2) are rejected: Pillow cannot decode them correctly.
  JPEG, WebP and AVIF outputs are 8-bit (AVIF input is decoded to 8 bits by Pillow).
* **Lossy outputs** (JPEG, lossy WebP, AVIF) are written at quality >= 95; JPEG and AVIF with 4:4:4
  chroma (no subsampling). Lossy WebP is always 4:2:0 (a limit of the VP8 codec): WebP defaults to
  lossless. PNG and TIFF are always lossless.
* **Safety.** Originals are only ever read. Outputs are written to a temporary file in the destination
  folder and moved into place atomically; an existing file is never replaced unless ``overwrite=True``,
  and the source file itself is never replaced at all.

Pixel convention: :attr:`ArtImage.rgb` is float32 ``HxWx3`` in ``[0, 1]`` (``value / (2**bits - 1)``);
:func:`to_tensor`/:func:`from_tensor` convert to and from the project's ``1x3xHxW`` torch convention.
For lossless formats, what :func:`save_image` stores is exactly :func:`stored_rgb` (i.e.
:func:`quantize` of the given RGB, projected to grey for greyscale sources).

References: PNG (Portable Network Graphics) Specification, Version 1.2 / W3C PNG 3rd ed.; TIFF
Revision 6.0 (Adobe, 1992); Exif 2.32 (CIPA DC-008); XMP Specification Part 3 (Adobe, 2020).
"""

from __future__ import annotations

import io
import math
import os
import re
import secrets
import struct
import sys
import warnings
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageCms, TiffImagePlugin, TiffTags, features

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_PIXELS",
    "ArtImage",
    "ImageError",
    "default_output_format",
    "from_tensor",
    "image_from_array",
    "iter_image_paths",
    "load_image",
    "output_bit_depth",
    "output_suffix",
    "quantize",
    "save_image",
    "stored_rgb",
    "supported_formats",
    "to_tensor",
]

MAX_PIXELS = 100_000_000
"""Default largest image (width x height) :func:`load_image` accepts; larger files are refused."""

MIN_LOSSY_QUALITY = 95
"""Lowest quality accepted for lossy outputs (JPEG, lossy WebP, AVIF)."""

_AVIF = bool(features.check("avif"))

_SUFFIXES = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "TIFF": ".tif", "AVIF": ".avif"}
_SUFFIX_TO_FORMAT = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".jpe": "JPEG",
    ".jfif": "JPEG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".avif": "AVIF",
}

IMAGE_SUFFIXES: frozenset[str] = frozenset(s for s, f in _SUFFIX_TO_FORMAT.items() if f != "AVIF" or _AVIF)
"""Lower-case file extensions :func:`iter_image_paths` treats as images when walking folders."""

_GREY_MODES = frozenset({"1", "L", "LA", "I;16"})
_LOSSLESS_ONLY = frozenset({"PNG", "TIFF"})
_SIXTEEN_BIT_FORMATS = frozenset({"PNG", "TIFF"})
_EXIF_HEADER = b"Exif\x00\x00"
_ORIENTATION = 0x0112
_ADVICE_FORMATS = "use a still PNG, JPEG, WebP or TIFF" + (" or AVIF" if _AVIF else "") + " image"


def supported_formats() -> frozenset[str]:
    """Formats this installation reads and writes (AVIF only when Pillow was built with it)."""
    return frozenset(_SUFFIXES) if _AVIF else frozenset(_SUFFIXES) - {"AVIF"}


class ImageError(ValueError):
    """A file could not be used as an image; ``str()`` is one line naming the file and what to do."""

    def __init__(self, path: str | os.PathLike[str] | None, problem: str, advice: str) -> None:
        self.path = Path(path) if path is not None else None
        self.problem = " ".join(str(problem).split())
        self.advice = " ".join(str(advice).split())
        super().__init__(
            f"{self.path if self.path is not None else '<image>'}: {self.problem}; {self.advice}"
        )


@dataclass
class ArtImage:
    """A decoded image with everything needed to write it back faithfully.

    ``rgb`` is float32 ``HxWx3`` in ``[0, 1]``, upright (EXIF orientation applied) and in the file's RGB
    space (CMYK converted to sRGB). ``alpha`` is the original alpha channel (``uint8`` or ``uint16``,
    ``HxW``) or ``None``. ``bit_depth`` is the source's bits per channel (8 or 16); ``mode`` the source's
    colour mode (Pillow's name; 16-bit grey+alpha PNG, which Pillow calls ``RGBA``, is ``"LA"``);
    ``format`` the detected file format. ``exif`` (with its ``Exif\\0\\0`` header) and ``xmp`` say
    orientation 1. ``dpi`` is the print resolution when the file records one. ``png_text`` holds a PNG's
    text chunks (``Author``, ``Copyright``, ``Description``...; written back to PNG outputs only).
    """

    rgb: np.ndarray
    alpha: np.ndarray | None
    bit_depth: int
    mode: str
    format: str
    icc_profile: bytes | None
    exif: bytes | None
    xmp: bytes | None
    path: Path | None
    dpi: tuple[float, float] | None = None
    png_text: dict[str, str] = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` in pixels, like Pillow."""
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])

    @property
    def is_grey(self) -> bool:
        """True when the source is greyscale and is therefore saved back as greyscale."""
        return self.mode in _GREY_MODES


# --------------------------------------------------------------------------------------------------
# small public helpers


def quantize(rgb: np.ndarray, bit_depth: int) -> np.ndarray:
    """Round ``rgb`` (floats in ``[0, 1]``; values outside are clipped) to the grid ``k / (2**bits - 1)``.

    Returns float32. This is exactly what :func:`save_image` stores for lossless formats (for colour
    sources; greyscale sources are first projected to grey, see :func:`stored_rgb`).
    """
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth!r}")
    return _ints_to_float(_float_to_ints(rgb, bit_depth))


def default_output_format(src_format: str) -> str:
    """Output format used when none is asked for: the source's own format (``"MPO"`` gives ``"JPEG"``).

    PNG → PNG, JPEG → JPEG (quality >= 95, 4:4:4), WebP → lossless WebP, TIFF → TIFF (deflate), AVIF →
    AVIF (quality >= 95, 4:4:4) when supported. Any other readable format gives PNG (lossless).
    """
    fmt = str(src_format).upper()
    fmt = {"JPG": "JPEG", "MPO": "JPEG", "TIF": "TIFF"}.get(fmt, fmt)
    return fmt if fmt in supported_formats() else "PNG"


def output_suffix(format: str) -> str:
    """File extension for an output format: ``".png"``, ``".jpg"``, ``".webp"``, ``".tif"``, ``".avif"``."""
    fmt = _normalise_format(format)
    return _SUFFIXES[fmt]


def output_bit_depth(image: ArtImage, format: str) -> int:
    """Bits per channel :func:`save_image` writes ``image`` with in ``format`` (16: 16-bit PNG/TIFF only)."""
    fmt = _normalise_format(format)
    return 16 if image.bit_depth == 16 and fmt in _SIXTEEN_BIT_FORMATS else 8


def stored_rgb(image: ArtImage, rgb: np.ndarray, *, format: str | None = None) -> np.ndarray:
    """What a lossless :func:`save_image` of ``rgb`` stores, as float32 ``HxWx3`` in ``[0, 1]``.

    ``rgb`` quantized to the output bit depth; for greyscale sources, first projected to grey (channel
    mean) and replicated. For lossy formats this is the encoder's input, not its output.
    """
    fmt = default_output_format(image.format) if format is None else _normalise_format(format)
    return _to_float(_stored_ints(image, _check_rgb(rgb, image), output_bit_depth(image, fmt)))


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
        values = _ints_to_float(arr)
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
    fmt = _normalise_format(format)
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


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """``HxWx3`` float array → ``1x3xHxW`` float32 CPU tensor (a copy)."""
    import torch

    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"to_tensor expects an HxWx3 array, got shape {arr.shape}")
    chw = np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32)
    return torch.from_numpy(chw).unsqueeze(0)


def from_tensor(x: torch.Tensor) -> np.ndarray:
    """``1x3xHxW`` (or ``3xHxW``) tensor → ``HxWx3`` float32 numpy array (a copy, on the CPU)."""
    if x.ndim == 4:
        if x.shape[0] != 1:
            raise ValueError(f"from_tensor expects a single image (batch of 1), got batch of {x.shape[0]}")
        x = x[0]
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"from_tensor expects a 1x3xHxW tensor, got shape {tuple(x.shape)}")
    arr = x.detach().to("cpu").float().numpy()
    return np.ascontiguousarray(arr.transpose(1, 2, 0), dtype=np.float32)


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
        key = p.resolve()
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


# --------------------------------------------------------------------------------------------------
# loading


def load_image(path: str | os.PathLike[str], *, max_pixels: int = MAX_PIXELS) -> ArtImage:
    """Read an image file into an :class:`ArtImage` (see the module docstring for what is kept).

    Raises :class:`ImageError` (a ``ValueError`` with a one-line message) for anything that is not a
    usable still image: unknown or unsupported content, animated or multi-page files, truncated or
    corrupt data, more than ``max_pixels`` pixels (Pillow's own ``PIL.Image.MAX_IMAGE_PIXELS`` bomb
    limit still applies above ``2 * MAX_IMAGE_PIXELS``). ``FileNotFoundError`` if there is no such file.
    """
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive int, got {max_pixels!r}")
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file; check the path")
    if p.is_dir():
        raise ImageError(p, "is a folder, not an image file", "pass an image file (or use iter_image_paths)")
    try:
        return _load(p, max_pixels)
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
            f"re-export it from your editor ({_ADVICE_FORMATS})",
        ) from e


def _open(p: Path, max_pixels: int) -> Image.Image:
    with warnings.catch_warnings():
        # The explicit max_pixels check below replaces Pillow's DecompressionBombWarning; Pillow's
        # DecompressionBombError (twice its limit) still surfaces and becomes an ImageError.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(p)
        except Image.UnidentifiedImageError as e:
            raise ImageError(p, "is not an image Sfumato can read", _ADVICE_FORMATS) from e
    w, h = im.size
    if w * h > max_pixels:
        im.close()
        raise ImageError(
            p,
            f"has {w}x{h} = {w * h:,} pixels, more than the limit of {max_pixels:,} "
            "(decompression-bomb guard)",
            "resize it, or pass a larger max_pixels if you trust the file",
        )
    return im


def _load(p: Path, max_pixels: int) -> ArtImage:
    im = _open(p, max_pixels)
    with im:
        fmt = (im.format or "").upper()
        frames = int(getattr(im, "n_frames", 1) or 1)
        if fmt == "MPO":  # camera JPEG with extra pictures (previews, depth): the first one is the photo
            fmt = "JPEG"
        elif frames > 1:
            what = "pages" if fmt == "TIFF" else "frames (animated)"
            raise ImageError(
                p,
                f"has {frames} {what}; Sfumato protects single still images",
                "export the frame you want as a PNG or TIFF and protect that",
            )
        if fmt not in supported_formats():
            raise ImageError(
                p, f"is a {fmt or 'unknown'} file, which Sfumato does not handle", _ADVICE_FORMATS
            )
        tiles = list(im.tile)
        sixteen = _sixteen_bit_kind(im, fmt, tiles, p)
        # Some plugins (TIFF in Pillow >= 12) apply the orientation themselves while loading and then
        # delete it from their EXIF/XMP: reading it after load() leaves exactly what is still to do.
        pre_orientation = _int_or(getattr(im, "tag_v2", {}).get(_ORIENTATION), 1)
        # TIFF closes its file after loading: read its EXIF directories (all levels) while it is open.
        # The cached object is the one the plugin edits if it applies the orientation itself.
        exif_obj = _readable_exif(im, p) if fmt == "TIFF" else None
        im.load()
        info = dict(im.info)
        if fmt != "TIFF":
            exif_obj = _readable_exif(im, p)
        orientation = _int_or(exif_obj.get(_ORIENTATION) if exif_obj is not None else None, 1)
        if orientation not in range(1, 9):
            orientation = 1
        icc = info.get("icc_profile") or None
        exif = _exif_bytes(info, exif_obj, fmt) if exif_obj is not None else None
        xmp = info.get("xmp") or info.get("XML:com.adobe.xmp") or None
        if isinstance(xmp, str):
            xmp = xmp.encode("utf-8")
        dpi = _dpi(info)
        png_text = _png_text(im) if fmt == "PNG" else {}
        arr, alpha, mode, depth, icc = _pixels(im, p, sixteen, icc, info, max_pixels)
    if exif and orientation != 1:  # belt and braces: the kept EXIF must never ask for a second rotation
        check = Image.Exif()
        check.load(exif)
        if check.get(_ORIENTATION, 1) != 1:
            exif = _exif_serialise(check)
    # width and height were exchanged, by us or by the plugin: the print resolution follows
    swapped = orientation in (5, 6, 7, 8) or (orientation == 1 and pre_orientation in (5, 6, 7, 8))
    arr = _orient(arr, orientation)
    if alpha is not None:
        alpha = np.ascontiguousarray(_orient(alpha, orientation))
    if swapped and dpi is not None:
        dpi = (dpi[1], dpi[0])
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    rgb = np.ascontiguousarray(_ints_to_float(arr))
    return ArtImage(
        rgb=rgb,
        alpha=alpha,
        bit_depth=depth,
        mode=mode,
        format=fmt,
        icc_profile=bytes(icc) if icc else None,
        exif=exif,
        xmp=_reset_xmp_orientation(bytes(xmp)) if xmp else None,
        path=p,
        dpi=dpi,
        png_text=png_text,
    )


# PNG text keys that carry metadata handled elsewhere (XMP, EXIF, ICC written by other tools).
_PNG_TEXT_SKIP = frozenset(
    {
        "XML:com.adobe.xmp",
        "Raw profile type exif",
        "Raw profile type APP1",
        "Raw profile type xmp",
        "Raw profile type icc",
        "Raw profile type icm",
    }
)


def _png_text(im: Image.Image) -> dict[str, str]:
    text = getattr(im, "text", None) or {}
    return {str(k): str(v) for k, v in text.items() if k not in _PNG_TEXT_SKIP}


def _int_or(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _readable_exif(im: Image.Image, p: Path) -> Image.Exif | None:
    """Pillow's parsed EXIF, or None (with a warning) when the block is unreadable: such a block is
    dropped, because nothing can say whether it asks viewers to rotate the picture."""
    try:
        exif = im.getexif()
        for ifd_tag in (0x8769, 0x8825, 0xA005):
            exif.get_ifd(ifd_tag)  # parse (and cache) the sub-directories now
        return exif
    except (SyntaxError, ValueError, struct.error, OSError) as e:
        warnings.warn(f"{p}: dropping unreadable EXIF metadata ({type(e).__name__}: {e})", stacklevel=4)
        return None


def _sixteen_bit_kind(im: Image.Image, fmt: str, tiles: list[Any], p: Path) -> str | None:
    """Which 16-bit colour layout Pillow would truncate to 8 bits: ``"RGB"``, ``"RGBA"``, ``"LA"`` or None."""
    if fmt == "PNG":
        raw = tiles[0].args if tiles else None
        return {"RGB;16B": "RGB", "RGBA;16B": "RGBA", "LA;16B": "LA"}.get(raw if isinstance(raw, str) else "")
    if fmt == "TIFF":
        tags = getattr(im, "tag_v2", {})
        bits = tags.get(258, (8,))
        bits = bits if isinstance(bits, tuple) else (bits,)
        if max(bits) <= 8:
            return None
        if set(bits) != {16}:
            raise ImageError(p, f"has {bits} bits per sample", "re-save it as an 8- or 16-bit TIFF")
        if im.mode.startswith("I;16"):
            return None  # Pillow reads 16-bit grey natively
        if im.mode not in ("RGB", "RGBA"):
            raise ImageError(
                p, f"is a 16-bit {im.mode} TIFF, which Sfumato cannot read", "re-save it as 16-bit RGB"
            )
        if tags.get(284, 1) == 2:
            raise ImageError(
                p,
                "is a 16-bit TIFF with separate colour planes, which Pillow cannot decode",
                "re-save it with interleaved (contiguous) pixels",
            )
        return im.mode
    return None


def _swap_16(rawmode: str) -> str:
    for a, b in ((";16L", ";16B"), (";16B", ";16L")):
        if a in rawmode:
            return rawmode.replace(a, b)
    if ";16N" in rawmode:
        return rawmode.replace(";16N", ";16B" if sys.byteorder == "little" else ";16L")
    raise ValueError(f"unexpected 16-bit raw mode {rawmode!r}")


def _low_bytes(p: Path, max_pixels: int, kind: str) -> np.ndarray:
    """Decode the file again, unpacking the low byte of every 16-bit sample (see module docstring)."""
    im = _open(p, max_pixels)
    with im:
        new_tiles = []
        for t in im.tile:
            args = t.args
            if kind == "LA" and args == "LA;16B":
                new = "RGBA"  # 4 bytes per pixel copied as-is: L_hi, L_lo, A_hi, A_lo
            elif isinstance(args, str):
                new = _swap_16(args)
            else:
                new = (_swap_16(args[0]), *args[1:])
            new_tiles.append(t._replace(args=new))
        im.tile = new_tiles
        im.load()
        return np.asarray(im)


def _pixels(
    im: Image.Image, p: Path, sixteen: str | None, icc: bytes | None, info: dict[str, Any], max_pixels: int
) -> tuple[np.ndarray, np.ndarray | None, str, int, bytes | None]:
    """Decoded pixels: (HxW grey or HxWx3 colour integers, alpha or None, mode, bit depth, icc)."""
    mode = im.mode
    if sixteen is not None:
        hi = np.asarray(im).astype(np.uint16)
        lo = _low_bytes(p, max_pixels, sixteen).astype(np.uint16)
        if sixteen == "LA":
            grey = (lo[..., 0] << 8) | lo[..., 1]
            alpha = (lo[..., 2] << 8) | lo[..., 3]
            return grey, alpha, "LA", 16, icc
        full = (hi << 8) | lo
        if sixteen == "RGBA":
            return full[..., :3], np.ascontiguousarray(full[..., 3]), "RGBA", 16, icc
        rgb = np.ascontiguousarray(full[..., :3])
        return rgb, _colour_key_alpha(rgb, info.get("transparency"), np.uint16), "RGB", 16, icc
    if mode.startswith("I;16"):
        grey = np.asarray(im).astype(np.uint16)
        return grey, _colour_key_alpha(grey, info.get("transparency"), np.uint16), "I;16", 16, icc
    if mode == "1":
        return np.asarray(im.convert("L")), None, "1", 8, icc
    if mode == "L":
        grey = np.asarray(im)
        return grey, _colour_key_alpha(grey, info.get("transparency"), np.uint8), "L", 8, icc
    if mode in ("LA", "La"):
        la = np.asarray(im.convert("LA") if mode == "La" else im)
        return la[..., 0], np.ascontiguousarray(la[..., 1]), mode, 8, icc
    if mode == "RGB":
        rgb = np.asarray(im)
        return rgb, _colour_key_alpha(rgb, info.get("transparency"), np.uint8), "RGB", 8, icc
    if mode in ("RGBA", "RGBa", "RGBX", "PA", "P"):
        has_alpha = mode in ("RGBA", "RGBa", "PA") or (mode == "P" and im.has_transparency_data)
        conv = im.convert("RGBA" if has_alpha else "RGB") if mode != "RGBA" else im
        arr = np.asarray(conv)
        if has_alpha:
            return arr[..., :3], np.ascontiguousarray(arr[..., 3]), mode, 8, icc
        return arr[..., :3], None, mode, 8, icc
    if mode == "CMYK":
        if icc:
            srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            conv = ImageCms.profileToProfile(
                im, src, srgb, renderingIntent=ImageCms.Intent.PERCEPTUAL, outputMode="RGB"
            )
            assert conv is not None
            return np.asarray(conv), None, "CMYK", 8, srgb.tobytes()
        return np.asarray(im.convert("RGB")), None, "CMYK", 8, None
    if mode == "YCbCr":
        return np.asarray(im.convert("RGB")), None, "YCbCr", 8, icc
    raise ImageError(
        p, f"uses the {mode} pixel mode, which Sfumato cannot process", "re-save it as 8- or 16-bit RGB"
    )


def _colour_key_alpha(values: np.ndarray, key: Any, dtype: type) -> np.ndarray | None:
    """Alpha from a PNG ``tRNS`` colour key (one transparent grey level or RGB colour), else None."""
    if key is None or isinstance(key, bytes):
        return None
    top = np.iinfo(dtype).max
    if values.ndim == 2:
        mask = values == int(key)
    else:
        mask = np.all(values == np.asarray(key, dtype=values.dtype).reshape(1, 1, -1), axis=2)
    return np.where(mask, 0, top).astype(dtype)


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


def _dpi(info: dict[str, Any]) -> tuple[float, float] | None:
    dpi = info.get("dpi")
    if not dpi or len(dpi) != 2:
        return None
    x, y = (float(v) for v in dpi)
    if not (math.isfinite(x) and math.isfinite(y)) or x <= 0 or y <= 0:
        return None
    return x, y


# --------------------------------------------------------------------------------------------------
# EXIF / XMP helpers

# TIFF tags describing the pixel layout: they belong to the file, never to the kept EXIF.
_TIFF_STRUCTURAL = frozenset(
    {
        254,
        255,
        256,
        257,
        258,
        259,
        262,
        263,
        266,
        273,
        277,
        278,
        279,
        280,
        281,
        284,
        288,
        289,
        290,
        291,
        292,
        293,
        317,
        320,
        322,
        323,
        324,
        325,
        330,
        332,
        338,
        339,
        340,
        341,
        347,
        513,
        514,
        530,
        531,
        532,
        700,
        34675,
        37724,
        33723,
        34377,
        50341,
    }
)


def _exif_bytes(info: dict[str, Any], exif_obj: Image.Exif, fmt: str) -> bytes | None:
    raw = info.get("exif")
    if isinstance(raw, (bytes, bytearray)) and raw:
        raw = bytes(raw)
        if not raw.startswith(_EXIF_HEADER):
            if raw[:4] not in (b"II*\x00", b"MM\x00*"):
                warnings.warn(
                    f"dropping unreadable EXIF block ({len(raw)} bytes, no TIFF header)", stacklevel=4
                )
                return None
            raw = _EXIF_HEADER + raw
        return _reset_exif_orientation(raw)
    if fmt != "TIFF" and not len(exif_obj):
        return None
    # TIFF (or legacy PNG text) EXIF: rebuild from the descriptive tags, leaving out the pixel layout.
    if not _exif_tags(exif_obj):
        return None
    return _exif_serialise(exif_obj)


def _raw_string(tag: int, value: Any, group: int | None) -> Any:
    """A non-ASCII value of a known ASCII tag as the bytes it was read from.

    Pillow decodes ASCII tags as latin-1 but re-encodes ``str`` as ASCII with ``?`` for anything else,
    which would turn e.g. a UTF-8 "(c)" sign in a Copyright tag into "??"; handing it bytes keeps them.
    """
    if isinstance(value, str) and not value.isascii() and TiffTags.lookup(tag, group).type == TiffTags.ASCII:
        try:
            return value.encode("latin-1")
        except UnicodeEncodeError:
            return value.encode("utf-8")
    return value


def _exif_tags(exif: Image.Exif) -> dict[int, Any]:
    """Descriptive IFD0 tags (pixel-layout tags left out) and the EXIF/GPS sub-directories (dicts, the
    Interop directory nested in the EXIF one), ready for an ``ImageFileDirectory_v2``."""
    tags = {
        tag: _raw_string(tag, value, None)
        for tag, value in exif.items()
        if tag not in _TIFF_STRUCTURAL and tag not in (0x8769, 0x8825, 0xA005)
    }
    for ifd_tag in (0x8769, 0x8825):
        sub = {k: _raw_string(k, v, ifd_tag) for k, v in exif.get_ifd(ifd_tag).items()}
        if ifd_tag == 0x8769:
            interop = {k: _raw_string(k, v, 0xA005) for k, v in exif.get_ifd(0xA005).items()}
            sub.pop(0xA005, None)
            if interop:
                sub[0xA005] = interop
        if sub:
            tags[ifd_tag] = sub
    return tags


def _exif_serialise(exif: Image.Exif, *, drop_orientation: bool = False) -> bytes:
    """Serialise ``exif`` (IFD0 descriptive tags + EXIF/GPS directories) with Pillow, strings intact,
    orientation set to 1 (or left out)."""
    tags = _exif_tags(exif)
    if drop_orientation:
        tags.pop(_ORIENTATION, None)
    elif _ORIENTATION in tags:
        tags[_ORIENTATION] = 1
    head = b"II*\x00\x08\x00\x00\x00"
    ifd = TiffImagePlugin.ImageFileDirectory_v2(ifh=head)
    for tag, value in tags.items():
        ifd[tag] = value
    return _EXIF_HEADER + head + ifd.tobytes(8)


def _with_exif_header(raw: bytes) -> bytes:
    if raw.startswith(_EXIF_HEADER):
        return raw
    if raw[:4] in (b"II*\x00", b"MM\x00*"):
        return _EXIF_HEADER + raw
    raise ValueError(
        "EXIF data must start with b'Exif\\x00\\x00' or a TIFF header (b'II*\\x00' / b'MM\\x00*')"
    )


def _reset_exif_orientation(exif: bytes) -> bytes:
    """Set IFD0's Orientation to 1, patching the bytes in place (offsets and maker notes stay valid).

    ``exif`` starts with ``Exif\\0\\0``. A directory too damaged to walk is returned unchanged (no reader
    can find an orientation in it either); a readable one whose orientation could not be patched in
    place (e.g. an unusual tag type) is re-serialised by Pillow with orientation 1.
    """
    tiff = exif[len(_EXIF_HEADER) :]
    e = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if e is None:
        return exif
    try:
        (ifd0,) = struct.unpack_from(e + "I", tiff, 4)
        (count,) = struct.unpack_from(e + "H", tiff, ifd0)
        for i in range(count):
            entry = ifd0 + 2 + 12 * i
            tag, typ, n = struct.unpack_from(e + "HHI", tiff, entry)
            if tag == _ORIENTATION:
                if n == 1 and typ in (3, 4):
                    patched = bytearray(tiff)
                    struct.pack_into(e + ("H" if typ == 3 else "I"), patched, entry + 8, 1)
                    return _EXIF_HEADER + bytes(patched)
                ex = Image.Exif()
                ex.load(exif)
                return _exif_serialise(ex)
    except struct.error:
        return exif
    return exif


_XMP_ATTR = re.compile(rb"(tiff:Orientation\s*=\s*[\"'])\s*\d+\s*([\"'])")
_XMP_ELEM = re.compile(rb"(<tiff:Orientation>)\s*\d+\s*(</tiff:Orientation>)")


def _reset_xmp_orientation(xmp: bytes) -> bytes:
    return _XMP_ELEM.sub(rb"\g<1>1\g<2>", _XMP_ATTR.sub(rb"\g<1>1\g<2>", xmp))


# --------------------------------------------------------------------------------------------------
# saving


def _normalise_format(format: str) -> str:
    fmt = str(format).upper().lstrip(".")
    fmt = {"JPG": "JPEG", "TIF": "TIFF"}.get(fmt, fmt)
    if fmt not in supported_formats():
        extra = "" if _AVIF or fmt != "AVIF" else " (this Pillow was built without AVIF)"
        raise ValueError(
            f"unsupported output format {format!r}{extra}; "
            f"use one of {', '.join(sorted(supported_formats()))}"
        )
    return fmt


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


def _float_to_ints(values: np.ndarray, depth: int) -> np.ndarray:
    """Nearest grid integers (float32 arithmetic, ties to even) of values clipped to [0, 1]."""
    levels = np.float32((1 << depth) - 1)
    scaled = np.clip(np.asarray(values, dtype=np.float32), np.float32(0), np.float32(1)) * levels
    return np.rint(scaled).astype(np.uint16 if depth == 16 else np.uint8)


def _ints_to_float(ints: np.ndarray) -> np.ndarray:
    """uint8/uint16 → float32 ``k / (2**bits - 1)`` (one correctly rounded float32 division)."""
    return ints.astype(np.float32) / np.float32(np.iinfo(ints.dtype).max)


def _stored_ints(image: ArtImage, rgb: np.ndarray, depth: int) -> np.ndarray:
    """Integers written for ``rgb``: HxW (grey sources) or HxWx3, uint8/uint16."""
    src = np.asarray(rgb, dtype=np.float32)
    if image.is_grey:
        src = src.mean(axis=2, dtype=np.float32)
    return _float_to_ints(src, depth)


def _to_float(ints: np.ndarray) -> np.ndarray:
    if ints.ndim == 2:
        ints = np.repeat(ints[:, :, None], 3, axis=2)
    return _ints_to_float(ints)


def _alpha_for(alpha: np.ndarray | None, depth: int) -> np.ndarray | None:
    if alpha is None:
        return None
    if depth == 16:
        return alpha.astype(np.uint16) if alpha.dtype == np.uint16 else alpha.astype(np.uint16) * 257
    if alpha.dtype == np.uint8:
        return alpha
    return ((alpha.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _resolve_format(image: ArtImage, dest: Path, format: str | None) -> str:
    by_suffix = _SUFFIX_TO_FORMAT.get(dest.suffix.lower())
    if format is None:
        if by_suffix is not None and by_suffix in supported_formats():
            return by_suffix
        return default_output_format(image.format)
    fmt = _normalise_format(format)
    if by_suffix is not None and by_suffix != fmt:
        raise ValueError(
            f"{dest}: extension {dest.suffix!r} does not match format {fmt}; use {output_suffix(fmt)!r} "
            "or leave format unset"
        )
    return fmt


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
    if lossless is False and fmt in _LOSSLESS_ONLY:
        raise ValueError(f"{fmt} is always lossless; choose JPEG, WebP or AVIF for lossy output")
    if lossless is True and fmt in ("JPEG", "AVIF"):
        raise ValueError(f"{fmt} output is always lossy here; choose PNG, TIFF or WebP for lossless output")
    if not dest.parent.is_dir():
        raise FileNotFoundError(f"{dest.parent}: output folder does not exist; create it first")
    if image.path is not None and dest.exists() and _same_file(dest, image.path):
        raise ValueError(f"{dest}: is the original file; Sfumato never modifies originals, pick another name")
    if dest.exists() and not overwrite:
        raise FileExistsError(
            f"{dest}: already exists; choose another name or pass overwrite=True to replace it"
        )
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
                f"{dest}: JPEG cannot store transparency and this image has some; save as PNG, WebP or TIFF"
            )
        alpha = None
    if (
        image.is_grey
        and fmt in ("WEBP", "AVIF")
        and image.icc_profile
        and image.icc_profile[16:20] == b"GRAY"
    ):
        raise ValueError(
            f"{dest}: this greyscale image has a grey ICC profile, which {fmt} (an RGB-only format) cannot "
            "carry; save it as PNG, TIFF or JPEG"
        )
    exif_out = image.exif if exif is None else (bytes(exif) or None)
    if exif_out:
        exif_out = _with_exif_header(exif_out)
        try:
            Image.Exif().load(exif_out)
        except (SyntaxError, ValueError, struct.error) as e:
            raise ValueError(f"exif is not a readable EXIF block ({e}); pass exif=b'' to write none") from e
        exif_out = _reset_exif_orientation(exif_out)
    xmp_out = image.xmp if xmp is None else (bytes(xmp) or None)
    xmp_out = _reset_xmp_orientation(xmp_out) if xmp_out else None
    meta = _Meta(icc=image.icc_profile, exif=exif_out, xmp=xmp_out, dpi=image.dpi, text=dict(image.png_text))

    def write(fp: IO[bytes]) -> None:
        if fmt == "PNG":
            if depth == 16:
                _write_png16(fp, ints, alpha, meta)
            else:
                _write_png8(fp, ints, alpha, meta)
        elif fmt == "TIFF":
            _write_tiff(fp, ints, alpha, meta)
        elif fmt == "JPEG":
            _write_jpeg(fp, ints, meta, jpeg_quality)
        elif fmt == "WEBP":
            _write_webp(fp, ints, alpha, meta, jpeg_quality, lossless is not False)
        else:
            _write_avif(fp, ints, alpha, meta, jpeg_quality)

    _atomic_write(dest, write, overwrite=overwrite)
    return dest


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def _atomic_write(dest: Path, write: Any, *, overwrite: bool) -> None:
    """Write through ``write(fp)`` into a temp file beside ``dest``, then move it into place."""
    while True:
        tmp = dest.parent / f".{dest.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as fp:
            write(fp)
            fp.flush()
            os.fsync(fp.fileno())
        if overwrite:
            os.replace(tmp, dest)
        else:
            try:
                os.link(tmp, dest)  # atomic and never replaces a file that appeared meanwhile
            except FileExistsError:
                raise FileExistsError(
                    f"{dest}: already exists; choose another name or pass overwrite=True to replace it"
                ) from None
            except OSError:  # file systems without hard links
                if dest.exists():
                    raise FileExistsError(
                        f"{dest}: already exists; choose another name or pass overwrite=True to replace it"
                    ) from None
                os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


@dataclass(frozen=True)
class _Meta:
    icc: bytes | None
    exif: bytes | None
    xmp: bytes | None
    dpi: tuple[float, float] | None
    text: dict[str, str]


def _pil_image(ints: np.ndarray, alpha: np.ndarray | None) -> Image.Image:
    """8-bit Pillow image (L, LA, RGB or RGBA) from stored integers and alpha."""
    if alpha is None:
        return Image.fromarray(np.ascontiguousarray(ints))
    if ints.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(np.stack([ints, alpha], axis=2)))
    return Image.fromarray(np.ascontiguousarray(np.concatenate([ints, alpha[:, :, None]], axis=2)))


def _pil_kwargs(meta: _Meta, *, dpi: bool = True) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    if meta.icc:
        kw["icc_profile"] = meta.icc
    if meta.exif:
        kw["exif"] = meta.exif
    if dpi and meta.dpi:
        kw["dpi"] = meta.dpi
    return kw


def _write_png8(fp: IO[bytes], ints: np.ndarray, alpha: np.ndarray | None, meta: _Meta) -> None:
    from PIL import PngImagePlugin

    kw = _pil_kwargs(meta)
    info = PngImagePlugin.PngInfo()
    for key, value in meta.text.items():
        info.add_text(key, value)
    if meta.xmp:
        info.add_itxt("XML:com.adobe.xmp", meta.xmp.decode("utf-8"), zip=False)
    kw["pnginfo"] = info
    _pil_image(ints, alpha).save(fp, format="PNG", **kw)


def _write_jpeg(fp: IO[bytes], ints: np.ndarray, meta: _Meta, quality: int) -> None:
    kw = _pil_kwargs(meta)
    if meta.xmp:
        kw["xmp"] = meta.xmp
    # libjpeg's optimised-Huffman pass fails at quality 100 in Pillow ("Suspension not allowed here"):
    # optimise the tables only below 100.
    _pil_image(ints, None).save(fp, format="JPEG", quality=quality, subsampling=0, optimize=quality < 100, **kw)


def _rgb_only(ints: np.ndarray) -> np.ndarray:
    return np.repeat(ints[:, :, None], 3, axis=2) if ints.ndim == 2 else ints


def _write_webp(
    fp: IO[bytes], ints: np.ndarray, alpha: np.ndarray | None, meta: _Meta, quality: int, lossless: bool
) -> None:
    kw = _pil_kwargs(meta, dpi=False)
    if meta.xmp:
        kw["xmp"] = meta.xmp
    im = _pil_image(_rgb_only(ints), alpha)
    if lossless:
        im.save(fp, format="WEBP", lossless=True, exact=True, quality=100, method=4, **kw)
    else:
        im.save(
            fp, format="WEBP", lossless=False, quality=quality, alpha_quality=100, exact=True, method=6, **kw
        )


def _write_avif(fp: IO[bytes], ints: np.ndarray, alpha: np.ndarray | None, meta: _Meta, quality: int) -> None:
    kw = _pil_kwargs(meta, dpi=False)
    if meta.exif:
        # Pillow's AVIF writer moves an EXIF orientation into the container and re-serialises the EXIF
        # itself, mangling non-ASCII strings; handing it a block without orientation avoids both.
        ex = Image.Exif()
        ex.load(meta.exif)
        if _ORIENTATION in ex:
            kw["exif"] = _exif_serialise(ex, drop_orientation=True)
    if meta.xmp:
        kw["xmp"] = meta.xmp
    if alpha is not None and np.all(alpha == 255):
        alpha = None  # fully opaque: nothing to keep
    if alpha is not None:
        # AVIF compresses alpha lossily by default; ask the AOM encoder for a lossless alpha plane
        # ("a:" options apply to the alpha image in libavif) and check the result before keeping it.
        kw["codec"] = "aom"
        kw["advanced"] = {"a:lossless": "1"}
    buf = io.BytesIO()
    try:
        _pil_image(_rgb_only(ints), alpha).save(
            buf, format="AVIF", quality=quality, subsampling="4:4:4", **kw
        )
    except ValueError as e:
        if alpha is None:
            raise
        raise ValueError(
            f"this Pillow's AVIF encoder cannot store transparency losslessly ({e}); "
            "save as PNG, WebP or TIFF"
        ) from e
    if alpha is not None:
        with Image.open(io.BytesIO(buf.getvalue())) as check:
            if not np.array_equal(np.asarray(check.convert("RGBA"))[..., 3], alpha):
                raise ValueError("AVIF did not keep the transparency exactly; save as PNG, WebP or TIFF")
    fp.write(buf.getvalue())


# ---- 16-bit PNG writer (PNG 1.2: chunks, zlib stream, per-row adaptive filters) --------------------


def _png_chunk(fp: IO[bytes], kind: bytes, data: bytes) -> None:
    fp.write(
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def _png_filter_rows(raw: np.ndarray, prev: np.ndarray, bpp: int) -> np.ndarray:
    """Filter a block of rows (R x L bytes) given the row above it; pick per row the filter with the
    smallest sum of absolute signed residuals (the PNG spec's recommended heuristic)."""
    cur = raw.astype(np.int16)
    up = np.concatenate([prev[None, :].astype(np.int16), cur[:-1]], axis=0)
    left = np.zeros_like(cur)
    left[:, bpp:] = cur[:, :-bpp]
    upleft = np.zeros_like(cur)
    upleft[:, bpp:] = up[:, :-bpp]
    p = left + up - upleft
    pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - upleft)
    paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
    cands = np.stack([cur, cur - left, cur - up, cur - ((left + up) >> 1), cur - paeth]) & 0xFF
    signed = np.where(cands > 127, 256 - cands, cands)
    choice = signed.sum(axis=2, dtype=np.int64).argmin(axis=0)
    rows = cands[choice, np.arange(cur.shape[0])].astype(np.uint8)
    return np.concatenate([choice.astype(np.uint8)[:, None], rows], axis=1)


def _write_png16(fp: IO[bytes], ints: np.ndarray, alpha: np.ndarray | None, meta: _Meta) -> None:
    h, w = ints.shape[:2]
    chans = [ints] if ints.ndim == 2 else [ints[..., i] for i in range(3)]
    if alpha is not None:
        chans.append(alpha)
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[len(chans)]
    data = np.stack(chans, axis=2).astype(">u2")
    bpp = 2 * len(chans)
    rows = data.view(np.uint8).reshape(h, w * bpp)

    fp.write(b"\x89PNG\r\n\x1a\n")
    _png_chunk(fp, b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0))
    if meta.icc:
        _png_chunk(fp, b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(meta.icc))
    if meta.dpi:
        ppm = [max(1, round(d / 0.0254)) for d in meta.dpi]
        _png_chunk(fp, b"pHYs", struct.pack(">IIB", ppm[0], ppm[1], 1))
    if meta.exif:
        _png_chunk(fp, b"eXIf", meta.exif[len(_EXIF_HEADER) :])
    if meta.xmp:
        _png_chunk(fp, b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + meta.xmp)
    for key, value in meta.text.items():
        try:
            _png_chunk(fp, b"tEXt", key.encode("latin-1") + b"\x00" + value.encode("latin-1"))
        except UnicodeEncodeError:
            _png_chunk(fp, b"iTXt", key.encode("latin-1") + b"\x00\x00\x00\x00\x00" + value.encode("utf-8"))
    comp = zlib.compressobj(6)
    block = max(1, (1 << 22) // max(1, rows.shape[1]))
    prev = np.zeros(rows.shape[1], dtype=np.uint8)
    pending = bytearray()
    for r in range(0, h, block):
        chunk = rows[r : r + block]
        pending += comp.compress(_png_filter_rows(chunk, prev, bpp).tobytes())
        prev = chunk[-1]
        if len(pending) >= 1 << 20:
            _png_chunk(fp, b"IDAT", bytes(pending))
            pending.clear()
    pending += comp.flush()
    _png_chunk(fp, b"IDAT", bytes(pending))
    _png_chunk(fp, b"IEND", b"")


# ---- TIFF writer (TIFF 6.0 baseline + Adobe Deflate + horizontal predictor) -------------------------


def _write_tiff(fp: IO[bytes], ints: np.ndarray, alpha: np.ndarray | None, meta: _Meta) -> None:
    h, w = ints.shape[:2]
    chans = [ints] if ints.ndim == 2 else [ints[..., i] for i in range(3)]
    if alpha is not None:
        chans.append(alpha)
    bits = ints.dtype.itemsize * 8
    data = np.stack(chans, axis=2).astype("<u2" if bits == 16 else np.uint8)
    # Predictor 2: each sample minus the same channel of the pixel to its left (modulo 2**bits).
    diff = data.copy()
    diff[:, 1:] = data[:, 1:] - data[:, :-1]
    row_bytes = w * len(chans) * (bits // 8)
    rows_per_strip = max(1, min(h, (1 << 18) // row_bytes))
    strips = [zlib.compress(diff[r : r + rows_per_strip].tobytes(), 6) for r in range(0, h, rows_per_strip)]

    ifd = TiffImagePlugin.ImageFileDirectory_v2(prefix=b"II")
    if meta.exif:
        exif = Image.Exif()
        exif.load(meta.exif)
        for tag, value in _exif_tags(exif).items():
            ifd[tag] = value
    if meta.dpi:  # the image's resolution wins over a (possibly stale) EXIF one
        ifd[296] = 2
        ifd[282] = meta.dpi[0]
        ifd[283] = meta.dpi[1]
    ifd[256] = w
    ifd[257] = h
    ifd[258] = (bits,) * len(chans)
    ifd[259] = 8  # Adobe Deflate
    ifd[262] = 1 if ints.ndim == 2 else 2  # BlackIsZero grey / RGB
    offsets, pos = [], 0
    for s in strips:
        offsets.append(pos)
        pos += len(s)
    ifd[273] = tuple(offsets)  # relative: Pillow adds the end of the directory when serialising
    ifd.tagtype[273] = 4
    ifd[277] = len(chans)
    ifd[278] = rows_per_strip
    ifd.tagtype[278] = 4
    ifd[279] = tuple(len(s) for s in strips)
    ifd.tagtype[279] = 4
    ifd[284] = 1
    ifd[317] = 2
    if alpha is not None:
        ifd[338] = 2  # unassociated alpha
    ifd[339] = (1,) * len(chans)
    if meta.xmp:
        ifd[700] = meta.xmp
        ifd.tagtype[700] = 1
    if meta.icc:
        ifd[34675] = meta.icc
        ifd.tagtype[34675] = 7
    head = io.BytesIO()
    ifd.save(head)
    fp.write(head.getvalue())
    for s in strips:
        fp.write(s)
