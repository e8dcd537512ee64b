"""Tests for sfumato.io: formats, metadata, orientation, alpha, 16 bits, colour modes, rejection, safety.

Every fixture is built here in ``tmp_path``. 16-bit PNGs are checked against a small reference
PNG encoder/decoder written below (independent of the module's own writer and of Pillow), 16-bit TIFFs
against ``tifffile`` (a dependency of scikit-image, in the ``test`` extra).
"""

from __future__ import annotations

import hashlib
import io
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image, ImageCms, ImageOps, JpegImagePlugin, features

import sfumato.io as sio
from sfumato.io import (
    IMAGE_SUFFIXES,
    ArtImage,
    ImageError,
    default_output_format,
    from_tensor,
    image_from_array,
    iter_image_paths,
    load_image,
    output_suffix,
    quantize,
    save_image,
    stored_rgb,
    to_tensor,
)

H, W = 48, 64
AVIF = bool(features.check("avif"))
FORMATS = ["PNG", "JPEG", "WEBP", "TIFF"] + (["AVIF"] if AVIF else [])
SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
XMP = (
    b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>'
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" '
    b'xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="1">'
    b"<dc:creator><rdf:Seq><rdf:li>Ann Artist (sfumato-test-marker)</rdf:li></rdf:Seq></dc:creator>"
    b'</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
)
MARKER = b"sfumato-test-marker"


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _exif(orientation: int = 1, artist: str = "Ann Artist") -> bytes:
    ex = Image.Exif()
    ex[0x013B] = artist
    ex[0x0112] = orientation
    ex[0x8769] = {0x9003: "2024:05:01 12:00:00", 0x927C: b"MAKERNOTE-BYTES"}
    return ex.tobytes()


def _rgb8(seed: int = 0, shape: tuple[int, ...] = (H, W, 3)) -> np.ndarray:
    return _rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _as_int(rgb: np.ndarray, bits: int) -> np.ndarray:
    return np.round(rgb.astype(np.float64) * ((1 << bits) - 1)).astype(np.int64)


# ---- reference 16-bit PNG encoder/decoder (test-only, pure Python, PNG 1.2) -------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _ref_png16(samples: np.ndarray, colour_type: int) -> bytes:
    """Encode HxWxC uint16 samples with filter 0 on every row."""
    h, w = samples.shape[:2]
    rows = b"".join(b"\x00" + samples[y].astype(">u2").tobytes() for y in range(h))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0))
        + _chunk(b"IDAT", zlib.compress(rows))
        + _chunk(b"IEND", b"")
    )


def _ref_png_decode(data: bytes) -> tuple[dict, np.ndarray, dict]:
    """Decode a non-interlaced 8/16-bit grey/grey+alpha/RGB/RGBA PNG; returns (header, samples, chunks)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, chunks = 8, b"", {}
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n : pos + 12 + n])
        assert crc == zlib.crc32(kind + body), kind
        if kind == b"IDAT":
            idat += body
        else:
            chunks.setdefault(kind, []).append(body)
        pos += 12 + n
    w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"][0])
    assert interlace == 0
    chans = {0: 1, 2: 3, 4: 2, 6: 4}[ctype]
    bpp = chans * depth // 8
    stride = w * bpp
    raw = zlib.decompress(idat)
    out = bytearray()
    prev = bytearray(stride)
    for y in range(h):
        ftype = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if ftype == 1:
                pred = a
            elif ftype == 2:
                pred = b
            elif ftype == 3:
                pred = (a + b) >> 1
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            else:
                assert ftype == 0
                pred = 0
            line[x] = (line[x] + pred) & 0xFF
        out += line
        prev = line
    dtype = ">u2" if depth == 16 else np.uint8
    samples = np.frombuffer(bytes(out), dtype=dtype).reshape(h, w, chans).astype(np.int64)
    return {"depth": depth, "colour_type": ctype, "size": (w, h)}, samples, chunks


def _cmyk_icc() -> bytes:
    """A minimal ICC v2 CMYK→Lab printer profile (lut8 A2B0, 2-point grid) that LittleCMS accepts."""

    def s15(x: float) -> bytes:
        return struct.pack(">i", round(x * 65536))

    clut = bytearray()
    for c in (0, 1):
        for m in (0, 1):
            for y in (0, 1):
                for k in (0, 1):
                    light = 100 * (1 - k) * (1 - 0.3 * (c + m + y))
                    clut += bytes(
                        [round(light / 100 * 255), round(60 * (m - c) + 128), round(60 * (y - m) + 128)]
                    )
    lut = b"mft1" + b"\0" * 4 + bytes([4, 3, 2, 0]) + b"".join(s15(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))
    lut += bytes(range(256)) * 4 + bytes(clut) + bytes(range(256)) * 3
    white = s15(0.9642) + s15(1.0) + s15(0.8249)
    text = b"sfumato test CMYK"
    desc = b"desc" + b"\0" * 4 + struct.pack(">I", len(text) + 1) + text + b"\0" * 80
    tags = [(b"desc", desc), (b"wtpt", b"XYZ " + b"\0" * 4 + white), (b"A2B0", lut)]
    start = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for sig, d in tags:
        d += b"\0" * (-len(d) % 4)
        table += sig + struct.pack(">II", start + len(body), len(d))
        body += d
    head = (
        struct.pack(">I", start + len(body))
        + b"\0" * 4
        + bytes([2, 0x10, 0, 0])
        + b"prtrCMYKLab "
        + b"\0" * 12
        + b"acsp"
        + b"\0" * 28
        + white
        + b"\0" * 48
    )
    assert len(head) == 128
    return head + struct.pack(">I", len(tags)) + table + body


def _grey_icc() -> bytes:
    """A minimal ICC v2 grey display profile (gamma 2.2 kTRC)."""
    white = struct.pack(">3i", *(round(v * 65536) for v in (0.9642, 1.0, 0.8249)))
    text = b"sfumato test grey"
    desc = b"desc" + b"\0" * 4 + struct.pack(">I", len(text) + 1) + text + b"\0" * 80
    trc = b"curv" + b"\0" * 4 + struct.pack(">IH", 1, 0x0233)
    tags = [(b"desc", desc), (b"wtpt", b"XYZ " + b"\0" * 4 + white), (b"kTRC", trc)]
    start = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for sig, d in tags:
        d += b"\0" * (-len(d) % 4)
        table += sig + struct.pack(">II", start + len(body), len(d))
        body += d
    head = (
        struct.pack(">I", start + len(body))
        + b"\0" * 4
        + bytes([2, 0x10, 0, 0])
        + b"mntrGRAYXYZ "
        + b"\0" * 12
        + b"acsp"
        + b"\0" * 28
        + white
        + b"\0" * 48
    )
    return head + struct.pack(">I", len(tags)) + table + body


# ---- metadata -----------------------------------------------------------------------------------------


@pytest.fixture
def meta_png(tmp_path: Path) -> Path:
    src = tmp_path / "art.png"
    Image.fromarray(_rgb8(1)).save(
        src, icc_profile=SRGB_ICC, exif=_exif(), pnginfo=_xmp_pnginfo(XMP), dpi=(300, 300)
    )
    return src


def _xmp_pnginfo(xmp: bytes):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8"), zip=False)
    return info


@pytest.mark.parametrize("fmt", FORMATS)
def test_real_jpeg_metadata_survives(corpus_dir: Path, tmp_path: Path, fmt: str) -> None:
    """A real corpus JPEG carrying ICC, EXIF and XMP (written by an image editor) keeps all three."""
    src = corpus_dir / "art" / "claude_monet" / "cyclegan_testA_00740.jpg"
    before = _sha(src)
    img = load_image(src)
    assert img.icc_profile and img.exif and img.xmp
    with Image.open(src) as im:
        assert img.exif == im.info["exif"] and img.xmp == im.info["xmp"]  # orientation already 1: untouched
    back = load_image(save_image(img, img.rgb, tmp_path / f"out{output_suffix(fmt)}"))
    assert back.icc_profile == img.icc_profile and back.xmp == img.xmp
    ex0, ex1 = Image.Exif(), Image.Exif()
    ex0.load(img.exif)
    ex1.load(back.exif)
    # Pixel-layout tags (TIFF) and orientation (AVIF keeps it in its own box) may be left out; every
    # descriptive tag, including the non-ASCII Copyright notice, must survive exactly.
    layout = {256, 257, 258, 259, 262, 273, 274, 277, 278, 279, 284, 0x8769}
    assert {k: v for k, v in ex1.items() if k not in layout} == {
        k: v for k, v in ex0.items() if k not in layout
    }
    assert ex1[0x8298] == ex0[0x8298] == "\u00c2\u00a9 Fitzwilliam Museum, University of Cambridge, UK"
    assert ex1.get_ifd(0x8769) == ex0.get_ifd(0x8769)
    if fmt in ("JPEG", "WEBP", "PNG"):  # the EXIF block is carried byte for byte
        assert back.exif == img.exif
    assert _sha(src) == before


@pytest.mark.parametrize("fmt", FORMATS)
def test_icc_exif_xmp_kept_in_every_format(meta_png: Path, tmp_path: Path, fmt: str) -> None:
    img = load_image(meta_png)
    assert img.format == "PNG" and img.icc_profile == SRGB_ICC and MARKER in img.xmp
    out = save_image(img, img.rgb, tmp_path / f"out{output_suffix(fmt)}")
    with Image.open(out) as im:
        im.load()
        assert im.format == fmt
        assert im.info.get("icc_profile") == SRGB_ICC
        xmp = im.info.get("xmp") or b""
        assert MARKER in (xmp.encode() if isinstance(xmp, str) else xmp)
        exif = im.getexif()
        assert exif.get(0x013B) == "Ann Artist"
        assert exif.get(0x0112, 1) == 1
        assert exif.get_ifd(0x8769).get(0x9003) == "2024:05:01 12:00:00"
        if fmt in ("PNG", "JPEG", "TIFF"):
            assert im.info.get("dpi") == pytest.approx((300, 300), abs=0.1)
    back = load_image(out)
    assert back.format == fmt and back.icc_profile == SRGB_ICC and MARKER in back.xmp
    if fmt in ("PNG", "TIFF", "WEBP"):  # lossless: pixels identical
        np.testing.assert_array_equal(back.rgb, img.rgb)


def test_xmp_and_exif_overrides(meta_png: Path, tmp_path: Path) -> None:
    img = load_image(meta_png)
    new_xmp = XMP.replace(MARKER, b"replaced-marker")
    out = save_image(img, img.rgb, tmp_path / "o.png", xmp=new_xmp, exif=_exif(artist="Someone Else"))
    back = load_image(out)
    assert b"replaced-marker" in back.xmp and MARKER not in back.xmp
    with Image.open(out) as im:
        assert im.getexif()[0x013B] == "Someone Else"
    bare = load_image(save_image(img, img.rgb, tmp_path / "bare.png", xmp=b"", exif=b""))
    assert bare.xmp is None and bare.exif is None and bare.icc_profile == SRGB_ICC


@pytest.mark.parametrize("bits", [8, 16])
def test_png_text_chunks_kept(tmp_path: Path, bits: int) -> None:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Copyright", "(c) Ann Artist, all rights reserved")
    info.add_text("Author", "Ann Artíst \u6f22")  # not latin-1: stored as iTXt
    src = tmp_path / "text.png"
    arr = _rng(34).integers(0, 1 << bits, (H, W), dtype=np.uint8 if bits == 8 else np.uint16)
    Image.fromarray(arr).save(src, pnginfo=info)
    img = load_image(src)
    assert img.png_text == {"Copyright": "(c) Ann Artist, all rights reserved", "Author": "Ann Artíst \u6f22"}
    with Image.open(save_image(img, img.rgb, tmp_path / "out.png")) as im:
        im.load()
        assert im.text == img.png_text


def test_tiff_source_metadata_and_orientation(tmp_path: Path) -> None:
    src = tmp_path / "scan.tif"
    xmp = XMP.replace(b'tiff:Orientation="1"', b'tiff:Orientation="6"')
    Image.fromarray(_rgb8(30)).save(src, exif=_exif(6), icc_profile=SRGB_ICC)
    img = load_image(src)
    with Image.open(src) as im:
        expected = np.asarray(ImageOps.exif_transpose(im))
    np.testing.assert_array_equal(_as_int(img.rgb, 8), expected)
    assert img.size == (H, W) and img.icc_profile == SRGB_ICC
    ex = Image.Exif()
    ex.load(img.exif)
    assert ex[0x013B] == "Ann Artist" and ex.get(0x0112, 1) == 1 and 256 not in ex and 273 not in ex
    assert ex.get_ifd(0x8769)[0x927C] == b"MAKERNOTE-BYTES"
    out = save_image(img, img.rgb, tmp_path / "scan.jpg", xmp=xmp)
    with Image.open(out) as im:
        assert im.getexif()[0x013B] == "Ann Artist" and im.getexif().get(0x0112, 1) == 1
        assert b'tiff:Orientation="1"' in im.info["xmp"] and im.size == (H, W)


@pytest.mark.parametrize("first", ["TIFF", "PNG", "JPEG"])
def test_exif_sub_directories_survive(tmp_path: Path, first: str) -> None:
    ex = Image.Exif()
    ex[0x013B] = "Ann Artist"
    ex[0x8298] = "\u00a9 Ann Artist".encode("latin-1")  # non-ASCII copyright (bytes: Pillow would write "?")
    ex[0x0112] = 3
    ex[0x8769] = {0x9003: "2024:01:01 00:00:00", 0xA005: {1: "R98"}}
    ex[0x8825] = {0: b"\x02\x02\x00\x00", 1: "N"}
    img = image_from_array(_rgb8(35, (20, 30, 3)))
    img.exif = ex.tobytes()
    once = load_image(save_image(img, img.rgb, tmp_path / f"a{output_suffix(first)}"))
    twice = load_image(save_image(once, once.rgb, tmp_path / "b.tif"))
    got = Image.Exif()
    got.load(twice.exif)
    assert got[0x013B] == "Ann Artist" and got[0x8298] == "\u00a9 Ann Artist" and got[0x0112] == 1
    assert got.get_ifd(0x8769)[0x9003] == "2024:01:01 00:00:00"
    assert got.get_ifd(0xA005) == {1: "R98"}
    assert got.get_ifd(0x8825) == {0: b"\x02\x02\x00\x00", 1: "N"}
    assert twice.size == (30, 20)  # pixels are stored as given: a stale orientation is reset, not applied


def test_16bit_tiff_with_orientation(tmp_path: Path) -> None:
    samples = _rng(31).integers(0, 65536, (H, W, 3), dtype=np.uint16)
    src = tmp_path / "rot16.tif"
    tifffile.imwrite(src, samples, photometric="rgb", compression="zlib", extratags=[(274, "H", 1, 6, True)])
    img = load_image(src)
    assert img.size == (H, W) and img.bit_depth == 16
    np.testing.assert_array_equal(_as_int(img.rgb, 16), np.rot90(samples, -1))


def test_grey_icc_profile_kept_and_rgb_only_formats_refused(tmp_path: Path) -> None:
    icc = _grey_icc()
    src = tmp_path / "grey.png"
    Image.fromarray(_rgb8(32, (H, W))).save(src, icc_profile=icc)
    img = load_image(src)
    assert img.mode == "L" and img.icc_profile == icc
    for suffix in (".png", ".tif", ".jpg"):
        with Image.open(save_image(img, img.rgb, tmp_path / f"out{suffix}")) as im:
            assert im.mode == "L" and im.info["icc_profile"] == icc
    with pytest.raises(ValueError, match="grey ICC profile"):
        save_image(img, img.rgb, tmp_path / "out.webp")


def test_unreadable_exif_dropped_with_warning(tmp_path: Path) -> None:
    src = tmp_path / "bad_exif.png"
    Image.fromarray(_rgb8(33)).save(src, exif=b"Exif\x00\x00garbage, not a TIFF structure")
    with pytest.warns(UserWarning, match="unreadable EXIF"):
        img = load_image(src)
    assert img.exif is None and img.size == (W, H)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_applied_and_reset(tmp_path: Path, orientation: int) -> None:
    src = tmp_path / "o.png"
    xmp = XMP.replace(b'tiff:Orientation="1"', f'tiff:Orientation="{orientation}"'.encode())
    Image.fromarray(_rgb8(2)).save(src, exif=_exif(orientation), pnginfo=_xmp_pnginfo(xmp))
    img = load_image(src)
    with Image.open(src) as im:
        expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    np.testing.assert_array_equal(_as_int(img.rgb, 8), expected)
    assert img.size == ((H, W) if orientation >= 5 else (W, H))
    # The kept metadata says "upright", and only the orientation bytes changed (maker note intact).
    ex = Image.Exif()
    ex.load(img.exif)
    assert ex[0x0112] == 1 and ex.get_ifd(0x8769)[0x927C] == b"MAKERNOTE-BYTES"
    original = _exif(orientation)
    assert len(img.exif) == len(original)
    assert sum(a != b for a, b in zip(img.exif, original, strict=True)) <= (0 if orientation == 1 else 1)
    assert b'tiff:Orientation="1"' in img.xmp
    out = save_image(img, img.rgb, tmp_path / "upright.png")
    with Image.open(out) as im:
        assert im.getexif()[0x0112] == 1
        assert im.size == img.size
    with Image.open(src) as im:  # the original still carries its orientation
        assert im.getexif()[0x0112] == orientation


def test_jpeg_orientation_6_loads_rotated(tmp_path: Path) -> None:
    src = tmp_path / "photo.jpg"
    a = np.zeros((H, W, 3), np.uint8)
    a[:8, :8] = 255  # white block top-left as stored
    Image.fromarray(a).save(src, quality=95, exif=_exif(6))
    img = load_image(src)
    assert img.size == (H, W)
    # Orientation 6 = rotate 90° clockwise for display: stored top-left ends up top-right.
    g = img.rgb.mean(axis=2)
    assert g[:8, -8:].mean() > 0.9 and g[:8, :8].mean() < 0.1


# ---- alpha and 16 bits ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "WEBP", "WEBP-lossy"] + (["AVIF"] if AVIF else []))
def test_alpha_bit_exact_8bit(tmp_path: Path, fmt: str) -> None:
    rgba = _rgb8(3, (H, W, 4))
    rgba[:10, :, 3] = 0  # fully transparent rows with colour underneath
    src = tmp_path / "a.png"
    Image.fromarray(rgba).save(src)
    img = load_image(src)
    assert img.mode == "RGBA" and img.alpha.dtype == np.uint8
    np.testing.assert_array_equal(img.alpha, rgba[..., 3])
    rgb = np.clip(img.rgb + 0.01, 0, 1)
    lossy = fmt in ("WEBP-lossy", "AVIF")
    out = tmp_path / f"out{output_suffix(fmt.split('-')[0])}"
    back = load_image(save_image(img, rgb, out, **({"lossless": False} if fmt == "WEBP-lossy" else {})))
    np.testing.assert_array_equal(back.alpha, rgba[..., 3])  # alpha exact even in lossy formats
    if not lossy:
        np.testing.assert_array_equal(back.rgb, quantize(rgb, 8))


def test_16bit_png_rgb_and_rgba_round_trip(tmp_path: Path) -> None:
    for chans, ctype in ((3, 2), (4, 6)):
        samples = _rng(4).integers(0, 65536, (H, W, chans), dtype=np.uint16)
        assert np.any(samples % 257 != 0)  # values off the 8-bit grid
        src = tmp_path / f"in{chans}.png"
        src.write_bytes(_ref_png16(samples, ctype))
        img = load_image(src)
        assert img.bit_depth == 16 and img.mode == ("RGB" if chans == 3 else "RGBA")
        np.testing.assert_array_equal(_as_int(img.rgb, 16), samples[..., :3])
        if chans == 4:
            assert img.alpha.dtype == np.uint16
            np.testing.assert_array_equal(img.alpha, samples[..., 3])
        out = save_image(img, img.rgb, tmp_path / f"out{chans}.png")
        header, decoded, chunks = _ref_png_decode(out.read_bytes())
        assert header["depth"] == 16 and header["colour_type"] == ctype
        np.testing.assert_array_equal(decoded, samples)
        np.testing.assert_array_equal(load_image(out).rgb, img.rgb)


def test_16bit_png_metadata_chunks(tmp_path: Path) -> None:
    samples = _rng(5).integers(0, 65536, (H, W, 3), dtype=np.uint16)
    img = image_from_array(samples)
    img.icc_profile, img.exif, img.xmp, img.dpi = SRGB_ICC, _exif(), XMP, (150.0, 150.0)
    out = save_image(img, img.rgb, tmp_path / "m16.png")
    _, _, chunks = _ref_png_decode(out.read_bytes())
    assert {b"iCCP", b"eXIf", b"iTXt", b"pHYs"} <= set(chunks)
    with Image.open(out) as im:
        im.load()
        assert im.info["icc_profile"] == SRGB_ICC
        assert im.getexif()[0x013B] == "Ann Artist"
        assert MARKER in im.info["xmp"]
        assert im.info["dpi"] == pytest.approx((150, 150), abs=0.1)


def test_16bit_grey_and_grey_alpha_png(tmp_path: Path) -> None:
    grey = _rng(6).integers(0, 65536, (H, W), dtype=np.uint16)
    src = tmp_path / "g16.png"
    Image.fromarray(grey).save(src)  # Pillow writes 16-bit grey natively ("I;16")
    img = load_image(src)
    assert img.mode == "I;16" and img.bit_depth == 16 and img.alpha is None
    np.testing.assert_array_equal(_as_int(img.rgb[..., 1], 16), grey)
    out = save_image(img, img.rgb, tmp_path / "g16_out.png")
    header, decoded, _ = _ref_png_decode(out.read_bytes())
    assert header["depth"] == 16 and header["colour_type"] == 0
    np.testing.assert_array_equal(decoded[..., 0], grey)

    la = _rng(7).integers(0, 65536, (H, W, 2), dtype=np.uint16)
    src = tmp_path / "la16.png"
    src.write_bytes(_ref_png16(la, 4))
    img = load_image(src)
    assert img.mode == "LA" and img.bit_depth == 16
    np.testing.assert_array_equal(img.alpha, la[..., 1])
    np.testing.assert_array_equal(_as_int(img.rgb[..., 2], 16), la[..., 0])
    header, decoded, _ = _ref_png_decode(save_image(img, img.rgb, tmp_path / "la16_out.png").read_bytes())
    assert header["depth"] == 16 and header["colour_type"] == 4
    np.testing.assert_array_equal(decoded, la)


@pytest.mark.parametrize("chans", [1, 3, 4])
@pytest.mark.parametrize("compression", [None, "zlib"])
def test_16bit_tiff_round_trip(tmp_path: Path, chans: int, compression: str | None) -> None:
    shape = (H, W) if chans == 1 else (H, W, chans)
    samples = _rng(8).integers(0, 65536, shape, dtype=np.uint16)
    src = tmp_path / "in.tif"
    tifffile.imwrite(
        src,
        samples,
        photometric="minisblack" if chans == 1 else "rgb",
        compression=compression,
        extrasamples=["unassalpha"] if chans == 4 else None,
        iccprofile=SRGB_ICC,
    )
    img = load_image(src)
    assert img.bit_depth == 16 and img.format == "TIFF" and img.icc_profile == SRGB_ICC
    rgb_ref = samples if chans == 1 else samples[..., :3]
    np.testing.assert_array_equal(_as_int(img.rgb if chans > 1 else img.rgb[..., 0], 16), rgb_ref)
    if chans == 4:
        np.testing.assert_array_equal(img.alpha, samples[..., 3])
    out = save_image(img, img.rgb, tmp_path / "out.tif")
    with tifffile.TiffFile(out) as tf:
        page = tf.pages[0]
        assert page.bitspersample == 16
        np.testing.assert_array_equal(page.asarray(), samples)
        assert page.tags["InterColorProfile"].value == SRGB_ICC
    # 16-bit sources written as 8-bit formats: rounded, alpha included.
    eight = load_image(save_image(img, img.rgb, tmp_path / "out.webp"))
    assert eight.bit_depth == 8
    np.testing.assert_array_equal(eight.rgb, stored_rgb(img, img.rgb, format="WEBP"))
    if chans == 4:
        np.testing.assert_array_equal(eight.alpha, np.round(samples[..., 3] / 257).astype(np.uint8))


def test_16bit_planar_tiff_rejected(tmp_path: Path) -> None:
    src = tmp_path / "planar.tif"
    tifffile.imwrite(
        src,
        _rng(9).integers(0, 65536, (3, H, W), dtype=np.uint16),
        photometric="rgb",
        planarconfig="separate",
    )
    with pytest.raises(ImageError, match="separate colour planes"):
        load_image(src)


# ---- colour modes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk_with_icc_profile_converted(tmp_path: Path, fmt: str) -> None:
    icc = _cmyk_icc()
    cmyk = Image.frombytes("CMYK", (W, H), _rgb8(10, (H, W, 4)).tobytes())
    src = tmp_path / f"cmyk{output_suffix(fmt)}"
    cmyk.save(src, **({"quality": 95} if fmt == "JPEG" else {}), icc_profile=icc)
    img = load_image(src)
    assert img.mode == "CMYK" and img.bit_depth == 8
    assert img.icc_profile is not None and img.icc_profile != icc  # now describes sRGB pixels
    assert ImageCms.ImageCmsProfile(io.BytesIO(img.icc_profile)).profile.xcolor_space.strip() == "RGB"
    with Image.open(src) as im:
        expected = ImageCms.profileToProfile(
            im, ImageCms.ImageCmsProfile(io.BytesIO(icc)), ImageCms.createProfile("sRGB"), outputMode="RGB"
        )
        naive = np.asarray(im.convert("RGB"))
    np.testing.assert_array_equal(_as_int(img.rgb, 8), np.asarray(expected))
    assert not np.array_equal(_as_int(img.rgb, 8), naive)
    out = save_image(img, img.rgb, tmp_path / f"out{output_suffix(fmt)}")
    with Image.open(out) as im:
        assert im.mode == "RGB" and im.info["icc_profile"] == img.icc_profile


def test_cmyk_without_profile_uses_pillow(tmp_path: Path) -> None:
    cmyk = Image.frombytes("CMYK", (W, H), _rgb8(11, (H, W, 4)).tobytes())
    src = tmp_path / "cmyk.tif"
    cmyk.save(src)
    img = load_image(src)
    assert img.mode == "CMYK" and img.icc_profile is None
    np.testing.assert_array_equal(_as_int(img.rgb, 8), np.asarray(cmyk.convert("RGB")))


def test_palette_with_and_without_transparency(tmp_path: Path) -> None:
    pal = Image.fromarray(_rgb8(12)).quantize(16)
    src = tmp_path / "pal.png"
    pal.save(src, transparency=3)
    img = load_image(src)
    assert img.mode == "P" and img.alpha is not None
    idx = np.asarray(pal)
    np.testing.assert_array_equal(img.alpha, np.where(idx == 3, 0, 255).astype(np.uint8))
    np.testing.assert_array_equal(_as_int(img.rgb, 8), np.asarray(pal.convert("RGB")))
    out = save_image(img, img.rgb, tmp_path / "pal_out.png")
    with Image.open(out) as im:
        assert im.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(im)[..., 3], img.alpha)
    src2 = tmp_path / "pal2.png"
    pal.save(src2)
    assert load_image(src2).alpha is None


def test_rgb_colour_key_transparency(tmp_path: Path) -> None:
    a = _rgb8(13)
    a[0, 0] = (1, 2, 3)
    src = tmp_path / "key.png"
    Image.fromarray(a).save(src, transparency=(1, 2, 3))
    img = load_image(src)
    assert img.alpha is not None and img.alpha[0, 0] == 0 and img.alpha.sum() > 0


@pytest.mark.parametrize("mode", ["L", "LA", "1"])
def test_greyscale_saved_back_as_greyscale(tmp_path: Path, mode: str) -> None:
    base = Image.fromarray(_rgb8(14, (H, W, 2)))  # LA
    src_im = base.convert(mode)
    src = tmp_path / f"g_{mode}.png"
    src_im.save(src)
    img = load_image(src)
    assert img.mode == mode and img.bit_depth == 8 and img.is_grey
    assert np.array_equal(img.rgb[..., 0], img.rgb[..., 1]) and np.array_equal(
        img.rgb[..., 1], img.rgb[..., 2]
    )
    if mode == "LA":
        np.testing.assert_array_equal(img.alpha, np.asarray(src_im)[..., 1])
    # A colour perturbation is projected onto the grey axis (channel mean).
    delta = np.zeros_like(img.rgb)
    delta[..., 0], delta[..., 1] = 6 / 255, -3 / 255
    rgb = np.clip(img.rgb + delta, 0, 1)
    out = save_image(img, rgb, tmp_path / f"g_{mode}_out.png")
    with Image.open(out) as im:
        assert im.mode == ("LA" if mode == "LA" else "L")
        stored = np.asarray(im)
    grey = stored[..., 0] if mode == "LA" else stored
    np.testing.assert_array_equal(grey, np.round(rgb.astype(np.float64).mean(axis=2) * 255).astype(np.uint8))
    np.testing.assert_array_equal(load_image(out).rgb, stored_rgb(img, rgb))
    if mode != "LA":  # (JPEG refuses real transparency, see test_jpeg_refuses_transparency)
        with Image.open(save_image(img, rgb, tmp_path / f"g_{mode}.jpg")) as im:
            assert im.mode == "L"


# ---- rejection -----------------------------------------------------------------------------------------


def _one_line(err: pytest.ExceptionInfo, path: Path) -> str:
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_animated_gif_and_apng_and_multipage_tiff_rejected(tmp_path: Path) -> None:
    frames = [Image.fromarray(_rgb8(s)) for s in (1, 2, 3)]
    for name in ("anim.gif", "anim.png", "anim.webp", "pages.tif"):
        p = tmp_path / name
        frames[0].save(p, save_all=True, append_images=frames[1:])
        with pytest.raises(ImageError) as err:
            load_image(p)
        msg = _one_line(err, p)
        assert ("pages" if name.endswith(".tif") else "animated") in msg


def test_mpo_read_as_jpeg(tmp_path: Path) -> None:
    p = tmp_path / "camera.jpg"
    first = Image.fromarray(_rgb8(15))
    first.save(p, format="MPO", save_all=True, append_images=[Image.fromarray(_rgb8(16))], quality=95)
    with Image.open(p) as im:
        assert im.format == "MPO"
    img = load_image(p)
    assert img.format == "JPEG" and default_output_format("MPO") == "JPEG"


def test_not_an_image_rejected(tmp_path: Path) -> None:
    p = tmp_path / "notes.png"
    p.write_text("this is a text file, not a picture\n")
    with pytest.raises(ImageError) as err:
        load_image(p)
    _one_line(err, p)
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file_rejected(tmp_path: Path, fmt: str) -> None:
    full = tmp_path / f"full{output_suffix(fmt)}"
    Image.fromarray(_rgb8(17)).save(full, **({"quality": 95} if fmt == "JPEG" else {}))
    data = full.read_bytes()
    p = tmp_path / f"cut{output_suffix(fmt)}"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as err:
        load_image(p)
    assert "truncated" in _one_line(err, p)


def test_decompression_bomb_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "big.png"
    Image.fromarray(_rgb8(18)).save(p)
    with pytest.raises(ImageError) as err:
        load_image(p, max_pixels=1000)
    assert "1,000" in _one_line(err, p)
    assert load_image(p, max_pixels=H * W).size == (W, H)
    # Pillow's own bomb error (above twice its global limit) also becomes an ImageError.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageError) as err:
        load_image(p)
    _one_line(err, p)
    with pytest.raises(ValueError, match="max_pixels"):
        load_image(p, max_pixels=0)


def test_unsupported_format_rejected(tmp_path: Path) -> None:
    p = tmp_path / "still.bmp"
    Image.fromarray(_rgb8(19)).save(p)
    with pytest.raises(ImageError) as err:
        load_image(p)
    assert "BMP" in _one_line(err, p)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "nope.png")


# ---- writing policy ------------------------------------------------------------------------------------


def test_jpeg_quality_95_and_444(tmp_path: Path) -> None:
    img = image_from_array(_rgb8(20), format="JPEG")
    out = save_image(img, img.rgb, tmp_path / "q.jpg")
    ref = tmp_path / "ref.jpg"
    Image.fromarray(_rgb8(20)).save(ref, quality=95, subsampling=0)
    with Image.open(out) as im, Image.open(ref) as r:
        assert JpegImagePlugin.get_sampling(im) == 0
        assert im.quantization == r.quantization  # same tables as Pillow's quality 95
    out100 = save_image(img, img.rgb, tmp_path / "q100.jpg", jpeg_quality=100)
    with Image.open(out100) as im:
        assert JpegImagePlugin.get_sampling(im) == 0 and max(max(t) for t in im.quantization.values()) == 1
    for bad in (94, 50, 101, 95.0, True):
        with pytest.raises(ValueError, match="jpeg_quality"):
            save_image(img, img.rgb, tmp_path / f"bad{bad}.jpg", jpeg_quality=bad)
    assert not list(tmp_path.glob("bad*"))


def test_jpeg_refuses_transparency(tmp_path: Path) -> None:
    rgb = _rgb8(21)
    alpha = np.full((H, W), 255, np.uint8)
    opaque = image_from_array(rgb, alpha=alpha)
    save_image(opaque, opaque.rgb, tmp_path / "opaque.jpg")  # all-opaque alpha may be dropped
    alpha[0, 0] = 10
    img = image_from_array(rgb, alpha=alpha)
    with pytest.raises(ValueError, match="transparency"):
        save_image(img, img.rgb, tmp_path / "t.jpg")


def test_webp_lossless_by_default_and_lossy_on_request(tmp_path: Path) -> None:
    img = image_from_array(_rgb8(22), format="WEBP")
    back = load_image(save_image(img, img.rgb, tmp_path / "l.webp"))
    np.testing.assert_array_equal(back.rgb, img.rgb)
    lossy = load_image(save_image(img, img.rgb, tmp_path / "q.webp", lossless=False))
    assert lossy.size == img.size and not np.array_equal(lossy.rgb, img.rgb)
    with pytest.raises(ValueError, match="lossless"):
        save_image(img, img.rgb, tmp_path / "x.png", lossless=False)


def test_default_formats_and_suffixes() -> None:
    assert default_output_format("PNG") == "PNG"
    assert default_output_format("JPEG") == "JPEG"
    assert default_output_format("WEBP") == "WEBP"
    assert default_output_format("TIFF") == "TIFF"
    assert default_output_format("GIF") == "PNG"
    assert (
        output_suffix("PNG") == ".png" and output_suffix("jpeg") == ".jpg" and output_suffix("TIFF") == ".tif"
    )
    assert {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff"} <= IMAGE_SUFFIXES
    assert (".avif" in IMAGE_SUFFIXES) == AVIF
    with pytest.raises(ValueError, match="unsupported output format"):
        output_suffix("BMP")


def test_format_from_content_not_extension(tmp_path: Path) -> None:
    p = tmp_path / "really_a_png.jpg"
    Image.fromarray(_rgb8(23)).save(p, format="PNG")
    img = load_image(p)
    assert img.format == "PNG"
    out = save_image(img, img.rgb, tmp_path / "result")  # unknown suffix: source's format
    with Image.open(out) as im:
        assert im.format == "PNG"
    with pytest.raises(ValueError, match="does not match"):
        save_image(img, img.rgb, tmp_path / "x.png", format="JPEG")


def test_atomic_write_no_overwrite_originals_untouched(tmp_path: Path, meta_png: Path) -> None:
    before = _sha(meta_png)
    img = load_image(meta_png)
    out = save_image(img, np.clip(img.rgb + 0.02, 0, 1), tmp_path / "out.png")
    assert _sha(meta_png) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art.png", "out.png"]
    first = _sha(out)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_image(img, img.rgb, out)
    assert _sha(out) == first
    save_image(img, img.rgb, out, overwrite=True)
    assert _sha(out) != first
    with pytest.raises(ValueError, match="original"):
        save_image(img, img.rgb, meta_png, overwrite=True)
    assert _sha(meta_png) == before
    # A failing encoder (XMP too large for one JPEG segment) leaves neither a temp file nor an output.
    with pytest.raises(ValueError):
        save_image(img, img.rgb, tmp_path / "fail.jpg", xmp=b"x" * 70_000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art.png", "out.png"]


def test_rgb_validation(tmp_path: Path) -> None:
    img = image_from_array(_rgb8(24))
    for bad, match in [
        (img.rgb[:-1], "shape"),
        (img.rgb.astype(np.float32) * 2, r"outside \[0, 1\]"),
        (np.where(img.rgb > 0.5, np.nan, img.rgb).astype(np.float32), "NaN"),
        ((img.rgb * 255).astype(np.uint8), "floats"),
    ]:
        with pytest.raises(ValueError, match=match):
            save_image(img, bad, tmp_path / "x.png")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_image(img, img.rgb, tmp_path / "missing" / "x.png")


def test_iter_image_paths(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    for rel in ["a/2.PNG", "a/1.jpg", "a/b/3.tiff", "a/notes.txt", "a/._1.jpg", ".hidden/4.png"]:
        (tmp_path / rel).write_bytes(b"x")
    odd = tmp_path / "scan.data"
    odd.write_bytes(b"x")
    found = iter_image_paths([tmp_path / "a", odd, tmp_path / "a" / "1.jpg"])
    assert found == [tmp_path / "a/1.jpg", tmp_path / "a/2.PNG", tmp_path / "a/b/3.tiff", odd]
    with pytest.raises(FileNotFoundError):
        iter_image_paths([tmp_path / "missing"])


def test_tensor_helpers_and_image_from_array() -> None:
    rgb = _rng(25).random((5, 7, 3), dtype=np.float32)
    t = to_tensor(rgb)
    assert tuple(t.shape) == (1, 3, 5, 7) and str(t.dtype) == "torch.float32"
    np.testing.assert_array_equal(from_tensor(t), rgb)
    img = image_from_array(rgb, bit_depth=16)
    assert isinstance(img, ArtImage) and img.size == (7, 5) and img.bit_depth == 16 and img.path is None
    assert image_from_array(_rgb8(26, (5, 7, 3))).bit_depth == 8
    with pytest.raises(ValueError):
        to_tensor(rgb[..., :2])
    with pytest.raises(ValueError):
        image_from_array(rgb * 3)


# ---- properties ----------------------------------------------------------------------------------------

_small_rgb = arrays(
    np.float32,
    st.tuples(st.integers(1, 8), st.integers(1, 8), st.just(3)),
    elements=st.floats(0.0, 1.0, width=32),
)


@settings(max_examples=40, deadline=None)
@given(rgb=_small_rgb, bits=st.sampled_from([8, 16]))
def test_quantize_idempotent_and_within_half_step(rgb: np.ndarray, bits: int) -> None:
    q = quantize(rgb, bits)
    assert q.dtype == np.float32 and q.shape == rgb.shape
    np.testing.assert_array_equal(quantize(q, bits), q)
    step = 1.0 / ((1 << bits) - 1)
    slack = 4 * float(np.finfo(np.float32).eps)  # float32 arithmetic
    assert np.all(np.abs(q.astype(np.float64) - rgb.astype(np.float64)) <= step / 2 + slack)
    assert q.min() >= 0.0 and q.max() <= 1.0


@settings(max_examples=25, deadline=None)
@given(rgb=_small_rgb, bits=st.sampled_from([8, 16]), fmt=st.sampled_from(["PNG", "TIFF"]))
def test_lossless_round_trip_equals_quantize(rgb: np.ndarray, bits: int, fmt: str) -> None:
    img = image_from_array(np.zeros_like(rgb), bit_depth=bits)
    with tempfile.TemporaryDirectory() as d:
        back = load_image(save_image(img, rgb, Path(d) / f"x{output_suffix(fmt)}"))
    assert back.bit_depth == bits
    np.testing.assert_array_equal(back.rgb, quantize(rgb, bits))
    np.testing.assert_array_equal(back.rgb, stored_rgb(img, rgb, format=fmt))


def test_module_exports() -> None:
    for name in sio.__all__:
        assert hasattr(sio, name), name
    assert sio.MAX_PIXELS == 100_000_000


def test_one_atomic_writer_for_images_and_sidecars(tmp_path: Path) -> None:
    import os
    import stat

    from sfumato.io.atomic import atomic_write, write_json_atomic, write_png_atomic, write_text_atomic

    src = tmp_path / "src.bin"
    src.write_bytes(b"original")
    out = atomic_write(tmp_path / "a.bin", lambda fp: fp.write(b"one"), overwrite=False)
    assert out.read_bytes() == b"one"
    with pytest.raises(FileExistsError, match="overwrite=True"):
        atomic_write(out, lambda fp: fp.write(b"two"), overwrite=False)
    with pytest.raises(ValueError, match="original"):
        atomic_write(src, lambda fp: fp.write(b"two"), overwrite=True, source=src)
    assert src.read_bytes() == b"original" and out.read_bytes() == b"one"

    def boom(fp: io.BufferedWriter) -> None:
        fp.write(b"partial")
        raise RuntimeError("encoder failed")

    with pytest.raises(RuntimeError):
        atomic_write(out, boom, overwrite=True)
    assert out.read_bytes() == b"one"
    write_json_atomic(tmp_path / "m.json", {"a": 1})
    with pytest.raises(FileExistsError):
        write_json_atomic(tmp_path / "m.json", {"a": 2}, overwrite=False)
    write_text_atomic(tmp_path / "t.txt", "héllo\n")
    write_png_atomic(tmp_path / "p.png", np.full((4, 5, 3), 0.5, np.float32))
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo\n"
    with Image.open(tmp_path / "p.png") as im:
        assert np.all(np.asarray(im) == 128)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "m.json", "p.png", "src.bin", "t.txt"]
    umask = os.umask(0)
    os.umask(umask)
    for name in ("a.bin", "m.json", "p.png", "t.txt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask


def test_round_to_bits_is_quantize_and_tensor_helpers_live_in_tensors() -> None:
    import subprocess
    import sys

    import sfumato.io
    from sfumato.io import tensors

    assert tensors.round_to_bits is tensors.quantize is sfumato.io.quantize is sio.quantize
    assert sio.to_tensor is tensors.to_tensor and sio.from_tensor is tensors.from_tensor
    x = _rng(3).random((64, 64, 3)).astype(np.float32)
    for bits in (8, 16):
        m = np.float32((1 << bits) - 1)  # the rounding every lossless file applies, spelled out
        want = (np.rint(np.clip(x, 0, 1) * m) / m).astype(np.float32)
        assert tensors.round_to_bits(x, bits).tobytes() == want.tobytes()
    assert tensors.round_to_bits(x).tobytes() == quantize(x, 8).tobytes()
    code = "import sys, sfumato.io; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
