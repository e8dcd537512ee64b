"""Rights XMP (IPTC plus:DataMining): building, merging, embedding; read back by exiv2 and Pillow."""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms

from sfumato.optout.xmp import (
    DATA_MINING_VALUES,
    NS_PLUS,
    RightsOptions,
    build_xmp,
    embed_xmp_file,
    extract_xmp_file,
    load_rights_config,
    mark_file,
    read_xmp_rights,
)
from sfumato.optout.xmp_containers import jpeg_segments, png_chunks, riff_chunks

DM_URI = "http://ns.useplus.org/ldf/vocab/DMI-PROHIBITED-AIMLTRAINING"
EXT_FORMAT = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}


def exiv2(*args: str | Path) -> str:
    exe = shutil.which("exiv2")
    assert exe, "exiv2 is required for these tests: apt-get install -y exiv2 (see .ci/install-optout.sh)"
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, check=False).stdout


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@functools.lru_cache(maxsize=1)
def _icc() -> bytes:
    # LittleCMS stamps the creation time into the profile: build it once so comparisons are stable.
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _pixels(seed: int = 0, size: tuple[int, int] = (48, 64)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8))


def _image_with_metadata(path: Path) -> None:
    """An input as another tool would leave it: EXIF + ICC from Pillow, XMP written by exiv2."""
    exif = Image.Exif()
    exif[0x010F] = "TestMaker"  # Make
    exif[0x0131] = "Krita"  # Software
    fmt = EXT_FORMAT[path.suffix[1:]]
    kw = {"quality": 92} if fmt in ("JPEG", "WEBP") else {}
    _pixels().save(path, format=fmt, exif=exif.tobytes(), icc_profile=_icc(), **kw)
    exiv2("-M", "set Xmp.dc.title lang=x-default Night heron", "-M", "set Xmp.xmp.CreatorTool Krita 5.2",
          "-M", "set Xmp.dc.creator Old Name", path)
    assert "Night heron" in exiv2("-px", path), "test set-up: exiv2 could not write the pre-existing XMP"


@pytest.mark.parametrize("ext", ["jpg", "png", "webp"])
def test_exiv2_reads_data_mining_and_existing_metadata_survives(tmp_path: Path, ext: str) -> None:
    src = tmp_path / f"in.{ext}"
    _image_with_metadata(src)
    before = _sha(src)
    with Image.open(src) as im:
        src_pixels = np.asarray(im.convert("RGB"))
    dst = tmp_path / "out" / f"out.{ext}"
    opts = RightsOptions(creator="Ada Lovelace", copyright_notice="© 2026 Ada Lovelace",
                         web_statement="https://ada.example/terms")
    mark_file(src, dst, opts)

    assert _sha(src) == before, "the source file must never be modified"
    line = exiv2("-K", "Xmp.plus.DataMining", "-px", dst).strip()
    print(f"exiv2 {ext}: {line}")
    assert line.startswith("Xmp.plus.DataMining") and line.endswith(DM_URI)
    xmp_dump = exiv2("-px", dst)
    assert "Xmp.dc.title" in xmp_dump and "Night heron" in xmp_dump
    assert "Xmp.xmp.CreatorTool" in xmp_dump and "Krita 5.2" in xmp_dump
    assert "Xmp.xmpRights.Marked" in xmp_dump and "True" in xmp_dump
    assert "https://ada.example/terms" in xmp_dump
    assert "Xmp.plus.OtherConstraints" in xmp_dump and "Directive (EU) 2019/790" in xmp_dump
    creator_lines = [ln for ln in xmp_dump.splitlines() if ln.startswith("Xmp.dc.creator")]
    assert len(creator_lines) == 1 and creator_lines[0].endswith("Ada Lovelace"), "dc:creator must be replaced"
    assert "TestMaker" in exiv2("-K", "Exif.Image.Make", "-pa", dst)

    with Image.open(dst) as im:
        assert im.info.get("icc_profile") == _icc()
        assert im.getexif()[0x010F] == "TestMaker"
        assert np.array_equal(np.asarray(im.convert("RGB")), src_pixels), "pixels must not be re-encoded"

    # the stored packet is well-formed XML with the PLUS property
    packet = extract_xmp_file(dst)
    root = ET.fromstring(packet)
    dm = root.find(f".//{{{NS_PLUS}}}DataMining")
    assert dm is not None and dm.text == DM_URI
    assert read_xmp_rights(packet)["creator"] == ["Ada Lovelace"]


def test_jpeg_scan_data_and_segments_untouched(tmp_path: Path) -> None:
    src = tmp_path / "in.jpg"
    _image_with_metadata(src)
    dst = tmp_path / "out.jpg"
    mark_file(src, dst, RightsOptions())
    mark_file(dst, dst, RightsOptions(data_mining="DMI-PROHIBITED"))  # in place, twice
    s_data, d_data = src.read_bytes(), dst.read_bytes()
    s_segs, s_sos = jpeg_segments(s_data)
    d_segs, d_sos = jpeg_segments(d_data)
    assert s_data[s_sos:] == d_data[d_sos:], "entropy-coded scan data must be byte-identical"
    xmp_segs = [s for m, s in d_segs if m == 0xE1 and b"http://ns.adobe.com/xap/1.0/\x00" in s[:40]]
    assert len(xmp_segs) == 1
    non_xmp = [s for m, s in s_segs if s not in xmp_segs and b"http://ns.adobe.com/xap/1.0/\x00" not in s[:40]]
    assert all(s in d_data for s in non_xmp), "EXIF/ICC/quantisation segments must be kept byte for byte"
    out = exiv2("-K", "Xmp.plus.DataMining", "-px", dst).strip().splitlines()
    assert len(out) == 1 and out[0].endswith("DMI-PROHIBITED")


def test_png_chunk_crc_and_single_xmp(tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    _image_with_metadata(src)
    dst = tmp_path / "out.png"
    mark_file(src, dst, RightsOptions())
    mark_file(dst, dst, RightsOptions())
    chunks = png_chunks(dst.read_bytes())
    for ctype, payload, raw in chunks:
        assert int.from_bytes(raw[-4:], "big") == zlib.crc32(ctype + payload)
    xmp_chunks = [p for c, p, _ in chunks if c == b"iTXt" and p.startswith(b"XML:com.adobe.xmp\x00")]
    assert len(xmp_chunks) == 1
    src_idat = [p for c, p, _ in png_chunks(src.read_bytes()) if c == b"IDAT"]
    assert [p for c, p, _ in chunks if c == b"IDAT"] == src_idat


@pytest.mark.parametrize("lossless", [False, True])
def test_simple_webp_becomes_extended(tmp_path: Path, lossless: bool) -> None:
    src = tmp_path / "plain.webp"
    img = _pixels(3, (37, 53))
    if lossless:
        img = img.convert("RGBA")
    img.save(src, format="WEBP", lossless=lossless, quality=90)
    assert riff_chunks(src.read_bytes())[0][0] in (b"VP8 ", b"VP8L"), "test set-up: expected a simple WebP"
    dst = tmp_path / "out.webp"
    mark_file(src, dst, RightsOptions())
    chunks = riff_chunks(dst.read_bytes())
    assert chunks[0][0] == b"VP8X" and chunks[0][1][0] & 0x04 and chunks[-1][0] == b"XMP "
    assert exiv2("-K", "Xmp.plus.DataMining", "-px", dst).strip().endswith(DM_URI)
    with Image.open(src) as a, Image.open(dst) as b:
        assert a.size == b.size == (53, 37)
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_tiff_lossless_resave(tmp_path: Path) -> None:
    src = tmp_path / "in.tif"
    _pixels(5).save(src, format="TIFF", compression="tiff_lzw", icc_profile=_icc())
    dst = tmp_path / "out.tif"
    mark_file(src, dst, RightsOptions(creator="Ada"))
    assert exiv2("-K", "Xmp.plus.DataMining", "-px", dst).strip().endswith(DM_URI)
    with Image.open(src) as a, Image.open(dst) as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))
        assert b.info.get("icc_profile") == _icc()


def test_merge_keeps_foreign_namespaces_and_replaces_attribute_form() -> None:
    existing = (
        b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Other 1.0"><rdf:RDF '
        b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description rdf:about="" xmlns:my="http://example.com/my/1.0/" '
        b'xmlns:plus="http://ns.useplus.org/ldf/xmp/1.0/" my:Flag="yes" '
        b'plus:DataMining="http://ns.useplus.org/ldf/vocab/DMI-ALLOWED">'
        b"<my:Note>keep &amp; me</my:Note></rdf:Description></rdf:RDF></x:xmpmeta>"
        b'<?xpacket end="w"?>'
    )
    out = build_xmp(existing, RightsOptions())
    assert out.startswith('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'.encode())
    assert out.rstrip().endswith(b'<?xpacket end="w"?>')
    root = ET.fromstring(out)
    desc = root.find(".//{http://www.w3.org/1999/02/22-rdf-syntax-ns#}Description")
    assert desc.get("{http://example.com/my/1.0/}Flag") == "yes"
    assert desc.find("{http://example.com/my/1.0/}Note").text == "keep & me"
    assert root.get("{adobe:ns:meta/}xmptk") == "Other 1.0"
    assert out.count(b"DataMining") == 2  # one open + one close tag, the attribute form is gone
    assert read_xmp_rights(out)["data_mining"] == "DMI-PROHIBITED-AIMLTRAINING"


def test_refuses_dtd_and_malformed_xml() -> None:
    evil = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
            b'<x:xmpmeta xmlns:x="adobe:ns:meta/">&e;</x:xmpmeta>')
    with pytest.raises(ValueError, match="DTD"):
        build_xmp(evil, RightsOptions())
    with pytest.raises(ValueError, match="not well-formed"):
        build_xmp(b"<x:xmpmeta", RightsOptions())


def test_invalid_options_teach() -> None:
    with pytest.raises(ValueError, match="DMI-PROHIBITED-AIMLTRAINING") as e:
        RightsOptions(data_mining="NO-AI")
    assert "DMI-ALLOWED" in str(e.value)
    with pytest.raises(ValueError, match="web_statement"):
        RightsOptions(web_statement="not a url")
    with pytest.raises(ValueError, match="U\\+0001"):
        RightsOptions(creator="bad\x01name")
    with pytest.raises(ValueError, match="other_constraints"):
        RightsOptions(data_mining="DMI-PROHIBITED-SEECONSTRAINT", other_constraints=" ")
    with pytest.raises(TypeError):
        RightsOptions("DMI-ALLOWED")  # type: ignore[misc]  # keyword-only
    assert RightsOptions(data_mining="http://ns.useplus.org/ldf/vocab/DMI-ALLOWED").data_mining == "DMI-ALLOWED"


def test_unsupported_container_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "x.gif"
    _pixels().save(p, format="GIF")
    with pytest.raises(ValueError, match="JPEG, PNG, WebP or TIFF"):
        embed_xmp_file(p, tmp_path / "y.gif", build_xmp(None, RightsOptions()))
    assert not (tmp_path / "y.gif").exists()


def test_options_json_and_config_files(tmp_path: Path) -> None:
    opts = RightsOptions(data_mining="DMI-PROHIBITED-GENAIMLTRAINING", creator="Zoë",
                         copyright_notice="© Zoë", web_statement="https://z.example/t")
    assert RightsOptions.from_dict(json.loads(json.dumps(opts.to_dict()))) == opts
    toml = tmp_path / "rights.toml"
    toml.write_text('[rights]\ncreator = "Zoë"\ndata_mining = "DMI-PROHIBITED"\n', encoding="utf-8")
    loaded = load_rights_config(toml)
    assert loaded.creator == "Zoë" and loaded.data_mining == "DMI-PROHIBITED"
    js = tmp_path / "rights.json"
    js.write_text(json.dumps(opts.to_dict()), encoding="utf-8")
    assert load_rights_config(js) == opts
    bad = tmp_path / "bad.toml"
    bad.write_text('creatr = "typo"\n', encoding="utf-8")
    with pytest.raises(ValueError, match="unknown rights option"):
        load_rights_config(bad)
    with pytest.raises(FileNotFoundError):
        load_rights_config(tmp_path / "missing.toml")


def test_every_vocabulary_value_round_trips() -> None:
    for value in DATA_MINING_VALUES:
        opts = RightsOptions(data_mining=value, other_constraints="see terms")
        assert read_xmp_rights(build_xmp(None, opts))["data_mining"] == value


_XML_TEXT = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs",),
        blacklist_characters=[chr(c) for c in (*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20))]
        + ["\ufffe", "\uffff"],
    ),
    max_size=60,
)


@settings(max_examples=80, deadline=None)
@given(creator=_XML_TEXT, notice=_XML_TEXT, other=_XML_TEXT)
def test_unicode_strings_survive_build_and_parse(creator: str, notice: str, other: str) -> None:
    opts = RightsOptions(creator=creator, copyright_notice=notice, other_constraints=other or "x")
    first = build_xmp(None, opts)
    again = build_xmp(first, opts)  # merging into our own packet must not duplicate or alter anything
    for packet in (first, again):
        got = read_xmp_rights(packet)
        assert got["creator"] == [creator]
        assert got["copyright_notice"] == notice
        text = other or "x"
        # a blank (whitespace-only) constraint text is treated as none and not written
        assert got["other_constraints"] == (text if text.strip() else None)
        assert got["marked"] is True


def test_real_corpus_xmp_is_preserved(tmp_path: Path, corpus_dir: Path) -> None:
    """Real photos carrying camera/editor XMP: every exiv2 key survives the merge, scan data untouched."""
    with_xmp = [p for p in sorted(corpus_dir.rglob("*.jpg")) if extract_xmp_file(p) is not None][:3]
    assert with_xmp, f"expected JPEGs with XMP in {corpus_dir}"

    def keys(p: Path) -> set[str]:
        return {ln.split()[0] for ln in exiv2("-px", p).splitlines() if ln.strip()}

    for src in with_xmp:
        dst = tmp_path / src.name
        mark_file(src, dst, RightsOptions())
        before, after = keys(src), keys(dst)
        assert before and before <= after, f"{src.name}: lost {sorted(before - after)}"
        assert {"Xmp.plus.DataMining", "Xmp.xmpRights.Marked"} <= after
        a, b = src.read_bytes(), dst.read_bytes()
        assert a[jpeg_segments(a)[1]:] == b[jpeg_segments(b)[1]:]
