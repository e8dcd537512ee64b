"""Encoders: stored integers, alpha and metadata into PNG, TIFF, JPEG, WebP or AVIF bytes.

8-bit PNG, JPEG, WebP and AVIF go through Pillow. 16-bit PNG and all TIFF output are written here,
because Pillow cannot write 16-bit colour: 16-bit PNG per the PNG 1.2 spec (zlib, the standard row
filters chosen per row by the spec's minimum-sum-of-absolute-residuals heuristic, ``IHDR`` bit depth 16,
``iCCP``/``eXIf``/``iTXt``/``pHYs`` chunks), TIFF as baseline TIFF 6.0 with Adobe Deflate compression and
the horizontal predictor, its directory serialised by Pillow's ``ImageFileDirectory_v2`` (EXIF in tag
34665, XMP in 700, ICC in 34675).

Metadata per format: PNG ``iCCP``, ``eXIf`` and an ``iTXt XML:com.adobe.xmp`` chunk (plus the source's
text chunks); JPEG APP2/APP1; WebP ICCP/EXIF/XMP chunks; AVIF colr/Exif/XMP boxes. Lossy outputs:
JPEG and AVIF with 4:4:4 chroma; lossy WebP (always 4:2:0, a limit of VP8) with ``alpha_quality=100``;
AVIF with a lossless alpha plane from the AOM encoder, checked after encoding.

References: PNG (Portable Network Graphics) Specification, Version 1.2 / W3C PNG 3rd ed.; TIFF Revision
6.0 (Adobe, 1992).
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import IO, Any

import numpy as np
from PIL import Image, TiffImagePlugin

from sfumato.io.metadata import EXIF_HEADER, ORIENTATION, Meta, exif_serialise, exif_tags


def encode_image(
    fp: IO[bytes],
    fmt: str,
    ints: np.ndarray,
    alpha: np.ndarray | None,
    meta: Meta,
    *,
    quality: int,
    lossless: bool,
) -> None:
    """Write ``ints`` (HxW grey or HxWx3, uint8 or uint16: 16 bits only for PNG/TIFF), ``alpha`` (same
    dtype, or None) and ``meta`` to ``fp`` as ``fmt``; ``quality`` is for JPEG, lossy WebP and AVIF,
    ``lossless`` for WebP only."""
    if fmt == "PNG":
        if ints.dtype == np.uint16:
            _write_png16(fp, ints, alpha, meta)
        else:
            _write_png8(fp, ints, alpha, meta)
    elif fmt == "TIFF":
        _write_tiff(fp, ints, alpha, meta)
    elif fmt == "JPEG":
        _write_jpeg(fp, ints, meta, quality)
    elif fmt == "WEBP":
        _write_webp(fp, ints, alpha, meta, quality, lossless)
    else:
        _write_avif(fp, ints, alpha, meta, quality)

def _pil_image(ints: np.ndarray, alpha: np.ndarray | None) -> Image.Image:
    """8-bit Pillow image (L, LA, RGB or RGBA) from stored integers and alpha."""
    if alpha is None:
        return Image.fromarray(np.ascontiguousarray(ints))
    if ints.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(np.stack([ints, alpha], axis=2)))
    return Image.fromarray(np.ascontiguousarray(np.concatenate([ints, alpha[:, :, None]], axis=2)))


def _pil_kwargs(meta: Meta, *, dpi: bool = True) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    if meta.icc:
        kw["icc_profile"] = meta.icc
    if meta.exif:
        kw["exif"] = meta.exif
    if dpi and meta.dpi:
        kw["dpi"] = meta.dpi
    return kw


def _write_png8(fp: IO[bytes], ints: np.ndarray, alpha: np.ndarray | None, meta: Meta) -> None:
    from PIL import PngImagePlugin

    kw = _pil_kwargs(meta)
    info = PngImagePlugin.PngInfo()
    for key, value in meta.text.items():
        info.add_text(key, value)
    if meta.xmp:
        info.add_itxt("XML:com.adobe.xmp", meta.xmp.decode("utf-8"), zip=False)
    kw["pnginfo"] = info
    _pil_image(ints, alpha).save(fp, format="PNG", **kw)


def _write_jpeg(fp: IO[bytes], ints: np.ndarray, meta: Meta, quality: int) -> None:
    kw = _pil_kwargs(meta)
    if meta.xmp:
        kw["xmp"] = meta.xmp
    # libjpeg's optimised-Huffman pass fails at quality 100 in Pillow ("Suspension not allowed here"):
    # optimise the tables only below 100.
    _pil_image(ints, None).save(fp, format="JPEG", quality=quality, subsampling=0, optimize=quality < 100, **kw)


def _rgb_only(ints: np.ndarray) -> np.ndarray:
    return np.repeat(ints[:, :, None], 3, axis=2) if ints.ndim == 2 else ints


def _write_webp(
    fp: IO[bytes], ints: np.ndarray, alpha: np.ndarray | None, meta: Meta, quality: int, lossless: bool
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


def _write_avif(fp: IO[bytes], ints: np.ndarray, alpha: np.ndarray | None, meta: Meta, quality: int) -> None:
    kw = _pil_kwargs(meta, dpi=False)
    if meta.exif:
        # Pillow's AVIF writer moves an EXIF orientation into the container and re-serialises the EXIF
        # itself, mangling non-ASCII strings; handing it a block without orientation avoids both.
        ex = Image.Exif()
        ex.load(meta.exif)
        if ORIENTATION in ex:
            kw["exif"] = exif_serialise(ex, drop_orientation=True)
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


def _planes(ints: np.ndarray, alpha: np.ndarray | None) -> list[np.ndarray]:
    """The sample planes in file order: grey or R, G, B, then alpha when there is one."""
    chans = [ints] if ints.ndim == 2 else [ints[..., i] for i in range(3)]
    if alpha is not None:
        chans.append(alpha)
    return chans


def _write_png16(fp: IO[bytes], ints: np.ndarray, alpha: np.ndarray | None, meta: Meta) -> None:
    h, w = ints.shape[:2]
    chans = _planes(ints, alpha)
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
        _png_chunk(fp, b"eXIf", meta.exif[len(EXIF_HEADER) :])
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


def _write_tiff(fp: IO[bytes], ints: np.ndarray, alpha: np.ndarray | None, meta: Meta) -> None:
    h, w = ints.shape[:2]
    chans = _planes(ints, alpha)
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
        for tag, value in exif_tags(exif).items():
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
