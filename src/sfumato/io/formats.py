"""Image formats: which ones this installation reads and writes, their file suffixes, and the choice of an
output format (the source's own by default; an explicit one must agree with the output's extension).

The format of an input is decided from the file's bytes (Pillow's detection), never from its name; the
suffixes here only decide which files a folder walk picks up and which format an output name asks for.
AVIF is supported when the installed Pillow has it (``PIL.features.check("avif")``).
"""

from __future__ import annotations

from PIL import features

AVIF_SUPPORTED = bool(features.check("avif"))

MIN_LOSSY_QUALITY = 95
"""Lowest quality accepted for lossy outputs (JPEG, lossy WebP, AVIF)."""

SUFFIXES = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "TIFF": ".tif", "AVIF": ".avif"}
SUFFIX_TO_FORMAT = {
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

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    s for s, f in SUFFIX_TO_FORMAT.items() if f != "AVIF" or AVIF_SUPPORTED
)
"""Lower-case file extensions :func:`sfumato.io.iter_image_paths` treats as images when walking folders."""

LOSSLESS_ONLY = frozenset({"PNG", "TIFF"})
SIXTEEN_BIT_FORMATS = frozenset({"PNG", "TIFF"})
ADVICE_FORMATS = "use a still PNG, JPEG, WebP or TIFF" + (" or AVIF" if AVIF_SUPPORTED else "") + " image"


def supported_formats() -> frozenset[str]:
    """Formats this installation reads and writes (AVIF only when Pillow was built with it)."""
    return frozenset(SUFFIXES) if AVIF_SUPPORTED else frozenset(SUFFIXES) - {"AVIF"}


def default_output_format(src_format: str) -> str:
    """Output format used when none is asked for: the source's own format (``"MPO"`` gives ``"JPEG"``).

    PNG → PNG, JPEG → JPEG (quality >= 95, 4:4:4), WebP → lossless WebP, TIFF → TIFF (deflate), AVIF →
    AVIF (quality >= 95, 4:4:4) when supported. Any other readable format gives PNG (lossless).
    """
    fmt = str(src_format).upper()
    fmt = {"JPG": "JPEG", "MPO": "JPEG", "TIF": "TIFF"}.get(fmt, fmt)
    return fmt if fmt in supported_formats() else "PNG"


def normalise_format(format: str) -> str:
    """An output format's canonical name (``"jpg"`` → ``"JPEG"``); ``ValueError`` if it is not supported."""
    fmt = str(format).upper().lstrip(".")
    fmt = {"JPG": "JPEG", "TIF": "TIFF"}.get(fmt, fmt)
    if fmt not in supported_formats():
        extra = "" if AVIF_SUPPORTED or fmt != "AVIF" else " (this Pillow was built without AVIF)"
        raise ValueError(
            f"unsupported output format {format!r}{extra}; "
            f"use one of {', '.join(sorted(supported_formats()))}"
        )
    return fmt


def output_suffix(format: str) -> str:
    """File extension for an output format: ``".png"``, ``".jpg"``, ``".webp"``, ``".tif"``, ``".avif"``."""
    return SUFFIXES[normalise_format(format)]
