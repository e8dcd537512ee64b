"""Embedding an XMP packet into image files and extracting it, without re-encoding pixels.

Each format keeps XMP in its own container (Adobe XMP Specification Part 3, "Storage in files", and
Google's WebP container specification): JPEG in an APP1 segment headed ``http://ns.adobe.com/xap/1.0/``,
PNG in an uncompressed ``iTXt`` chunk with keyword ``XML:com.adobe.xmp``, WebP in an ``XMP `` RIFF chunk
with the XMP flag of the ``VP8X`` header set, TIFF in tag 700.
JPEG, PNG and WebP are rewritten byte-wise, only that container changing; TIFF is re-saved losslessly
through Pillow. Writes are atomic and never touch ``src`` when ``dst`` differs.
"""

from __future__ import annotations

import os
import struct
import tempfile
import zlib
from pathlib import Path

from sfumato.io.atomic import write_bytes_atomic

_JPEG_XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_PNG_XMP_KEY = b"XML:com.adobe.xmp"
_JPEG_MAX_XMP = 65535 - 2 - len(_JPEG_XMP_HEADER)


def sniff_format(data: bytes) -> str:
    """``"jpeg" | "png" | "webp" | "tiff"`` from magic bytes; ``ValueError`` otherwise."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == _PNG_SIG:
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    raise ValueError("unsupported image format: rights metadata and signing support JPEG, PNG, WebP or TIFF; "
                     "convert the file first")


def jpeg_segments(data: bytes) -> tuple[list[tuple[int, bytes]], int]:
    """Segments before the first SOS (marker, raw bytes incl. marker) and the offset where SOS starts."""
    pos, segs = 2, []
    n = len(data)
    while True:
        if pos + 1 >= n or data[pos] != 0xFF:
            raise ValueError(f"corrupt JPEG: expected a marker at byte {pos}; re-export the image")
        while pos + 1 < n and data[pos + 1] == 0xFF:  # fill bytes
            pos += 1
        marker = data[pos + 1]
        if marker in (0xDA, 0xD9):
            return segs, pos
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            segs.append((marker, data[pos:pos + 2]))
            pos += 2
            continue
        if pos + 4 > n:
            raise ValueError("corrupt JPEG: truncated segment header; re-export the image")
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if length < 2 or pos + 2 + length > n:
            raise ValueError(f"corrupt JPEG: segment at byte {pos} overruns the file; re-export the image")
        segs.append((marker, data[pos:pos + 2 + length]))
        pos += 2 + length


def _is_jpeg_xmp(marker: int, seg: bytes) -> bool:
    return marker == 0xE1 and seg[4:4 + len(_JPEG_XMP_HEADER)] == _JPEG_XMP_HEADER


def _jpeg_embed(data: bytes, xmp: bytes) -> bytes:
    if len(xmp) > _JPEG_MAX_XMP:
        raise ValueError(
            f"XMP packet of {len(xmp)} bytes exceeds the {_JPEG_MAX_XMP}-byte JPEG APP1 limit; "
            "shorten the rights texts or strip other metadata"
        )
    segs, sos = jpeg_segments(data)
    new = b"\xff\xe1" + struct.pack(">H", 2 + len(_JPEG_XMP_HEADER) + len(xmp)) + _JPEG_XMP_HEADER + xmp
    insert_at = next((i for i, (m, s) in enumerate(segs) if _is_jpeg_xmp(m, s)), None)
    kept = [(m, s) for m, s in segs if not _is_jpeg_xmp(m, s)]
    if insert_at is None:
        insert_at = 0
        while insert_at < len(kept) and kept[insert_at][0] in (0xE0, 0xE1):
            insert_at += 1
    else:
        insert_at = sum(1 for m, s in segs[:insert_at] if not _is_jpeg_xmp(m, s))
    kept.insert(insert_at, (0xE1, new))
    return data[:2] + b"".join(s for _, s in kept) + data[sos:]


def _jpeg_extract(data: bytes) -> bytes | None:
    segs, _ = jpeg_segments(data)
    for m, s in segs:
        if _is_jpeg_xmp(m, s):
            return s[4 + len(_JPEG_XMP_HEADER):]
    return None


def png_chunks(data: bytes) -> list[tuple[bytes, bytes, bytes]]:
    """(type, data, raw chunk bytes) for every chunk."""
    pos, out = 8, []
    while pos < len(data):
        if pos + 12 > len(data):
            raise ValueError("corrupt PNG: truncated chunk; re-export the image")
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        ctype = data[pos + 4:pos + 8]
        end = pos + 12 + length
        if end > len(data):
            raise ValueError(f"corrupt PNG: chunk {ctype!r} overruns the file; re-export the image")
        out.append((ctype, data[pos + 8:pos + 8 + length], data[pos:end]))
        pos = end
        if ctype == b"IEND":
            break
    return out


def png_chunk(ctype: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", zlib.crc32(ctype + payload))


def _is_png_xmp(ctype: bytes, payload: bytes) -> bool:
    return ctype == b"iTXt" and payload.startswith(_PNG_XMP_KEY + b"\x00")


def _png_embed(data: bytes, xmp: bytes) -> bytes:
    chunks = png_chunks(data)
    if not chunks or chunks[0][0] != b"IHDR":
        raise ValueError("corrupt PNG: first chunk is not IHDR; re-export the image")
    new = png_chunk(b"iTXt", _PNG_XMP_KEY + b"\x00\x00\x00\x00\x00" + xmp)
    out, placed = [], False
    for ctype, payload, raw in chunks:
        if _is_png_xmp(ctype, payload):
            if not placed:
                out.append(new)
                placed = True
            continue
        out.append(raw)
        if ctype == b"IHDR" and not placed and not any(_is_png_xmp(c, p) for c, p, _ in chunks):
            out.append(new)
            placed = True
    return _PNG_SIG + b"".join(out)


def _png_extract(data: bytes) -> bytes | None:
    for ctype, payload, _ in png_chunks(data):
        if _is_png_xmp(ctype, payload):
            rest = payload[len(_PNG_XMP_KEY) + 1:]
            compressed = rest[0] == 1
            rest = rest[2:]
            _lang, rest = rest.split(b"\x00", 1)
            _translated, text = rest.split(b"\x00", 1)
            return zlib.decompress(text) if compressed else text
    return None


def riff_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    (riff_size,) = struct.unpack("<I", data[4:8])
    end = min(len(data), 8 + riff_size)
    pos, out = 12, []
    while pos + 8 <= end:
        fourcc = data[pos:pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4:pos + 8])
        if pos + 8 + size > end:
            raise ValueError(f"corrupt WebP: chunk {fourcc!r} overruns the file; re-export the image")
        out.append((fourcc, data[pos + 8:pos + 8 + size]))
        pos += 8 + size + (size & 1)
    return out


def riff_chunk(fourcc: bytes, payload: bytes) -> bytes:
    return fourcc + struct.pack("<I", len(payload)) + payload + (b"\x00" if len(payload) & 1 else b"")


def _webp_canvas(chunks: list[tuple[bytes, bytes]]) -> tuple[int, int, bool]:
    fourcc, payload = chunks[0]
    if fourcc == b"VP8 ":
        if payload[3:6] != b"\x9d\x01\x2a":
            raise ValueError("corrupt WebP: VP8 start code missing; re-export the image")
        w = struct.unpack("<H", payload[6:8])[0] & 0x3FFF
        h = struct.unpack("<H", payload[8:10])[0] & 0x3FFF
        return w, h, False
    if fourcc == b"VP8L":
        if payload[0] != 0x2F:
            raise ValueError("corrupt WebP: VP8L signature missing; re-export the image")
        bits = int.from_bytes(payload[1:5], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, bool((bits >> 28) & 1)
    raise ValueError(f"unsupported WebP layout (first chunk {fourcc!r}); re-export the image")


def _webp_embed(data: bytes, xmp: bytes) -> bytes:
    chunks = riff_chunks(data)
    if not chunks:
        raise ValueError("corrupt WebP: no chunks; re-export the image")
    if chunks[0][0] == b"VP8X":
        vp8x = bytearray(chunks[0][1])
        vp8x[0] |= 0x04
        body = [(b"VP8X", bytes(vp8x))] + [c for c in chunks[1:] if c[0] != b"XMP "]
    else:
        w, h, alpha = _webp_canvas(chunks)
        flags = 0x04 | (0x10 if alpha else 0)
        vp8x = bytes([flags, 0, 0, 0]) + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
        body = [(b"VP8X", vp8x)] + [c for c in chunks if c[0] != b"XMP "]
    body.append((b"XMP ", xmp))
    payload = b"WEBP" + b"".join(riff_chunk(f, p) for f, p in body)
    return b"RIFF" + struct.pack("<I", len(payload)) + payload


def _webp_extract(data: bytes) -> bytes | None:
    for fourcc, payload in riff_chunks(data):
        if fourcc == b"XMP ":
            return payload
    return None


def _tiff_embed(src: Path, tmp: Path, xmp: bytes) -> None:
    from PIL import Image

    with Image.open(src) as im:
        if getattr(im, "n_frames", 1) > 1:
            raise ValueError(f"{src} is a multi-page TIFF; XMP embedding supports single-page TIFF only")
        compression = im.info.get("compression", "raw")
        if compression in ("jpeg", "tiff_jpeg"):
            raise ValueError(
                f"{src} is a JPEG-compressed TIFF; re-saving would re-encode it lossily. Convert it to PNG "
                "or a losslessly compressed TIFF first"
            )
        im.load()
        im.tag_v2[700] = xmp
        im.save(tmp, format="TIFF", compression=compression, exif=im.getexif(),
                icc_profile=im.info.get("icc_profile"))


def extract_xmp_file(path: Path | str) -> bytes | None:
    """The raw XMP packet stored in an image file, or ``None``."""
    p = Path(path)
    data = p.read_bytes()
    fmt = sniff_format(data)
    if fmt == "jpeg":
        return _jpeg_extract(data)
    if fmt == "png":
        return _png_extract(data)
    if fmt == "webp":
        return _webp_extract(data)
    from PIL import Image

    with Image.open(p) as im:
        xmp = im.info.get("xmp")
    return bytes(xmp) if xmp is not None else None


def embed_xmp_file(src: Path | str, dst: Path | str, xmp: bytes) -> None:
    """Write ``src`` to ``dst`` with its XMP replaced by ``xmp``, leaving the pixel data untouched.

    JPEG/PNG/WebP are rewritten byte-wise (APP1 / ``iTXt`` / ``XMP `` chunk); TIFF is re-saved through
    Pillow with the same lossless compression. ``dst`` may equal ``src``; the write is atomic.
    Rewriting the XMP of a C2PA-signed file invalidates its manifest (the data hash covers the XMP), so
    embed first and sign afterwards (:func:`sfumato.optout.c2pa_sign.sign_file` does both in order).
    """
    src, dst = Path(src), Path(dst)
    if not isinstance(xmp, bytes | bytearray):
        raise TypeError("xmp must be bytes (e.g. from build_xmp)")
    data = src.read_bytes()
    fmt = sniff_format(data)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "tiff":
        fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tif")
        os.close(fd)
        try:
            _tiff_embed(src, Path(tmp), bytes(xmp))
            os.chmod(tmp, src.stat().st_mode & 0o777)
            os.replace(tmp, dst)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return
    embed = {"jpeg": _jpeg_embed, "png": _png_embed, "webp": _webp_embed}[fmt]
    write_bytes_atomic(dst, embed(data, bytes(xmp)), mode=src.stat().st_mode & 0o777)
