"""Opening a file with Pillow (pixel-count guard) and decoding its pixels to integer arrays.

Every Pillow colour mode becomes HxW grey or HxWx3 colour integers plus an optional alpha: palette
images become RGB (or RGBA with transparency), PNG ``tRNS`` colour keys become an alpha channel, CMYK is
converted to sRGB through its embedded ICC profile (perceptual intent) or Pillow's naive conversion.

16 bits: Pillow reads 16-bit colour PNG/TIFF (and 16-bit grey+alpha PNG) as 8-bit, so such files are
decoded twice with Pillow's own decoders, once taking the high byte of every sample (Pillow's default
unpacker) and once the low byte (the unpacker of the opposite byte order), and the two are joined.
16-bit TIFFs with separate colour planes (PlanarConfiguration 2) are rejected: Pillow cannot decode them
correctly.
"""

from __future__ import annotations

import io
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageCms

from sfumato.io.artimage import ImageError
from sfumato.io.formats import ADVICE_FORMATS

Decoded = tuple[np.ndarray, np.ndarray | None, str, int, bytes | None]
"""(HxW grey or HxWx3 colour integers, alpha or None, mode, bit depth, ICC profile)."""


def open_image(p: Path, max_pixels: int) -> Image.Image:
    """Open ``p`` lazily with Pillow; :class:`ImageError` if it is no image or has over ``max_pixels``."""
    with warnings.catch_warnings():
        # The explicit max_pixels check below replaces Pillow's DecompressionBombWarning; Pillow's
        # DecompressionBombError (twice its limit) still surfaces and becomes an ImageError.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(p)
        except Image.UnidentifiedImageError as e:
            raise ImageError(p, "is not an image Sfumato can read", ADVICE_FORMATS) from e
    w, h = im.size
    if w * h > max_pixels:
        im.close()
        raise ImageError(
            p,
            f"has {w}x{h} = {w * h:,} pixels, more than the limit of {max_pixels:,} "
            "(decompression-bomb guard)",
            "downscale it, or raise the pixel limit (max_pixels; the CLI's --max-megapixels) if you trust the "
            "file and the machine has the memory",
        )
    return im


def sixteen_bit_kind(im: Image.Image, fmt: str, tiles: list[Any], p: Path) -> str | None:
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
    """Decode the file again, unpacking the low byte of every 16-bit sample (see the module docstring)."""
    im = open_image(p, max_pixels)
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


def decode_pixels(
    im: Image.Image, p: Path, sixteen: str | None, icc: bytes | None, info: dict[str, Any], max_pixels: int
) -> Decoded:
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
