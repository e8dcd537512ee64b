"""Machine-readable "do not train" rights metadata in XMP, embedded without re-encoding pixels.

Vocabulary (all public standards):

* IPTC Photo Metadata Standard 2023.1+, "Data Mining" property, stored in XMP as ``plus:DataMining``
  whose value is a PLUS Coalition LDF vocabulary URI (``http://ns.useplus.org/ldf/vocab/DMI-...``),
  with free-text ``plus:OtherConstraints`` when the value points to them;
* Dublin Core ``dc:creator`` (ordered ``rdf:Seq``) and ``dc:rights`` (language alternative);
* XMP Rights Management ``xmpRights:Marked`` / ``xmpRights:WebStatement`` (Adobe XMP Specification
  Part 2, §8.5).

The text of ``plus:OtherConstraints`` states a text-and-data-mining reservation in the sense of
Article 4(3) of Directive (EU) 2019/790 (DSM Directive): a rights reservation "in an appropriate manner,
such as machine-readable means".

:func:`build_xmp` merges into existing XMP: every existing property and namespace is kept, only the
properties we set are replaced. Parsing uses expat directly and refuses any DTD or entity declaration
(no external entities, no entity expansion bombs).

:func:`embed_xmp_file` rewrites a file's XMP container byte-wise (JPEG APP1, PNG ``iTXt``, WebP
``XMP `` chunk with the VP8X flag); TIFF is re-saved losslessly through Pillow (tag 700). Writes are
atomic and never touch ``src`` when ``dst`` differs.
"""

from __future__ import annotations

import os
import re
import struct
import tempfile
import xml.etree.ElementTree as ET
import zlib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any
from xml.parsers import expat

# --------------------------------------------------------------------------------------------------
# vocabulary

DATA_MINING_VALUES: tuple[str, ...] = (
    "DMI-UNSPECIFIED",
    "DMI-ALLOWED",
    "DMI-PROHIBITED-AIMLTRAINING",
    "DMI-PROHIBITED-GENAIMLTRAINING",
    "DMI-PROHIBITED-EXCEPTSEARCHENGINEINDEXING",
    "DMI-PROHIBITED",
    "DMI-PROHIBITED-SEECONSTRAINT",
    "DMI-PROHIBITED-SEEEMBEDDEDRIGHTSEXPR",
)
PLUS_VOCAB = "http://ns.useplus.org/ldf/vocab/"

NS_X = "adobe:ns:meta/"
NS_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
NS_DC = "http://purl.org/dc/elements/1.1/"
NS_XMP_RIGHTS = "http://ns.adobe.com/xap/1.0/rights/"
NS_PLUS = "http://ns.useplus.org/ldf/xmp/1.0/"
NS_XML = "http://www.w3.org/XML/1998/namespace"

_PREFERRED_PREFIXES = {
    NS_X: "x",
    NS_RDF: "rdf",
    NS_DC: "dc",
    NS_XMP_RIGHTS: "xmpRights",
    NS_PLUS: "plus",
    "http://ns.adobe.com/xap/1.0/": "xmp",
    "http://ns.adobe.com/xap/1.0/mm/": "xmpMM",
    "http://ns.adobe.com/photoshop/1.0/": "photoshop",
    "http://iptc.org/std/Iptc4xmpCore/1.0/xmlns/": "Iptc4xmpCore",
    "http://iptc.org/std/Iptc4xmpExt/2008-02-29/": "Iptc4xmpExt",
}

DEFAULT_OTHER_CONSTRAINTS = (
    "No AI/ML training: the rightsholder expressly reserves this work from text and data mining, "
    "including use to train, fine-tune or evaluate artificial-intelligence or machine-learning models "
    "(reservation under Article 4(3) of Directive (EU) 2019/790, the EU DSM Directive). Any such use "
    "requires a separate written licence from the rightsholder."
)

XPACKET_ID = "W5M0MpCehiHzreSzNTczkc9d"
_XPACKET_BEGIN = f'<?xpacket begin="\ufeff" id="{XPACKET_ID}"?>'
_XPACKET_END = '<?xpacket end="w"?>'

# characters XML 1.0 cannot carry (even escaped): C0 controls except TAB/LF/CR, surrogates, U+FFFE/FFFF
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _q(ns: str, local: str) -> str:
    return f"{{{ns}}}{local}"


def _check_xml_text(name: str, value: str) -> None:
    m = _XML_FORBIDDEN.search(value)
    if m:
        raise ValueError(
            f"{name} contains the character U+{ord(m.group()):04X}, which XML (and so XMP) cannot store; "
            "remove control characters from the text"
        )


# --------------------------------------------------------------------------------------------------
# options


@dataclass(frozen=True, kw_only=True)
class RightsOptions:
    """What the embedded rights metadata says.

    ``data_mining`` is one of the IPTC/PLUS values in :data:`DATA_MINING_VALUES` (the bare code, e.g.
    ``"DMI-PROHIBITED-AIMLTRAINING"``; the full vocabulary URI is accepted too). Empty
    ``other_constraints`` leaves that property untouched; ``None`` for the optional fields leaves any
    existing value in the file untouched.
    """

    data_mining: str = "DMI-PROHIBITED-AIMLTRAINING"
    other_constraints: str = DEFAULT_OTHER_CONSTRAINTS
    creator: str | None = None
    copyright_notice: str | None = None
    web_statement: str | None = None

    def __post_init__(self) -> None:
        dm = self.data_mining
        if isinstance(dm, str) and dm.startswith(PLUS_VOCAB):
            object.__setattr__(self, "data_mining", dm[len(PLUS_VOCAB):])
            dm = self.data_mining
        if dm not in DATA_MINING_VALUES:
            raise ValueError(
                f"data_mining={dm!r} is not an IPTC PLUS data-mining value; use one of "
                f"{', '.join(DATA_MINING_VALUES)} (default DMI-PROHIBITED-AIMLTRAINING)"
            )
        if not isinstance(self.other_constraints, str):
            raise TypeError(f"other_constraints must be a string, got {type(self.other_constraints).__name__}")
        if dm == "DMI-PROHIBITED-SEECONSTRAINT" and not self.other_constraints.strip():
            raise ValueError(
                "data_mining=DMI-PROHIBITED-SEECONSTRAINT points readers to other_constraints, which is empty; "
                "write the constraint text in other_constraints"
            )
        _check_xml_text("other_constraints", self.other_constraints)
        for name in ("creator", "copyright_notice", "web_statement"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a string or None, got {type(value).__name__}")
            _check_xml_text(name, value)
        ws = self.web_statement
        if ws is not None and not re.match(r"^https?://\S+$", ws):
            raise ValueError(
                f"web_statement={ws!r} must be an http(s) URL of a page stating your usage terms, "
                "e.g. https://example.com/terms"
            )

    @property
    def data_mining_uri(self) -> str:
        return PLUS_VOCAB + self.data_mining

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RightsOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown rights option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**data)


def default_rights_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "sfumato" / "rights.toml"


def load_rights_config(path: Path | str | None = None) -> RightsOptions:
    """Read :class:`RightsOptions` from a TOML or JSON file.

    Keys are the field names, either top-level or inside a ``[rights]`` table. With ``path=None`` the
    optional ``~/.config/sfumato/rights.toml`` is read when it exists, else the defaults are returned.
    """
    import json
    import tomllib

    if path is None:
        p = default_rights_config_path()
        if not p.is_file():
            return RightsOptions()
    else:
        p = Path(path).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"rights config {p} does not exist; create it (TOML or JSON) or omit it")
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() == ".json":
        data = json.loads(text)
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{p} is not valid TOML ({e}); fix it or use a .json file") from e
    if not isinstance(data, dict):
        raise ValueError(f"{p} must hold a table/object of rights options, got {type(data).__name__}")
    if "rights" in data and isinstance(data["rights"], dict):
        data = data["rights"]
    return RightsOptions.from_dict(data)


# --------------------------------------------------------------------------------------------------
# safe parsing and serialisation


def _strip_packet(data: bytes) -> bytes:
    data = data.strip(b"\x00 \t\r\n")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:].lstrip(b" \t\r\n")
    return data


def parse_xmp(data: bytes) -> tuple[ET.Element, dict[str, str]]:
    """Parse an XMP packet into an ElementTree plus the namespace prefixes it declared (uri -> prefix).

    Raises ``ValueError`` on malformed XML or on any DTD/entity declaration.
    """
    builder = ET.TreeBuilder()
    prefixes: dict[str, str] = {}
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)

    def name(n: str) -> str:
        return "{%s}%s" % tuple(n.split(" ", 1)) if " " in n else n  # noqa: UP031

    def refuse(*_: object) -> None:
        raise ValueError("XMP with a DTD or entity declarations is refused (possible XML attack); "
                         "strip the file's metadata and try again")

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.StartElementHandler = lambda n, attrs: builder.start(name(n), {name(k): v for k, v in attrs.items()})
    parser.EndElementHandler = lambda n: builder.end(name(n))
    parser.CharacterDataHandler = builder.data
    parser.StartNamespaceDeclHandler = lambda prefix, uri: prefixes.setdefault(uri, prefix or "")
    try:
        parser.Parse(_strip_packet(data), True)
    except expat.ExpatError as e:
        raise ValueError(f"existing XMP is not well-formed XML ({e}); pass existing=None to replace it") from e
    return builder.close(), prefixes


def _esc_text(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")


def _esc_attr(s: str) -> str:
    return (_esc_text(s).replace('"', "&quot;").replace("\t", "&#9;").replace("\n", "&#10;"))


def _split(qname: str) -> tuple[str | None, str]:
    if qname.startswith("{"):
        ns, local = qname[1:].split("}", 1)
        return ns, local
    return None, qname


def _serialize(root: ET.Element, declared: dict[str, str]) -> str:
    uris: list[str] = []
    for el in root.iter():
        for q in (el.tag, *el.attrib):
            ns, _ = _split(q)
            if ns is not None and ns != NS_XML and ns not in uris:
                uris.append(ns)
    prefix_of: dict[str, str] = {NS_XML: "xml"}
    used = {"xml", "xmlns"}
    for i, uri in enumerate(uris):
        cand = _PREFERRED_PREFIXES.get(uri) or declared.get(uri) or f"ns{i}"
        base, n = cand, 1
        while cand in used or not cand:
            cand, n = f"{base or 'ns'}{n}", n + 1
        prefix_of[uri] = cand
        used.add(cand)

    def qn(q: str) -> str:
        ns, local = _split(q)
        return local if ns is None else f"{prefix_of[ns]}:{local}"

    out: list[str] = []

    def write(el: ET.Element, is_root: bool) -> None:
        parts = [qn(el.tag)]
        if is_root:
            parts += [f'xmlns:{prefix_of[u]}="{_esc_attr(u)}"' for u in uris]
        parts += [f'{qn(k)}="{_esc_attr(v)}"' for k, v in el.attrib.items()]
        out.append("<" + " ".join(parts))
        if len(el) == 0 and not el.text:
            out.append("/>")
        else:
            out.append(">")
            if el.text:
                out.append(_esc_text(el.text))
            for child in el:
                write(child, False)
                if child.tail:
                    out.append(_esc_text(child.tail))
            out.append(f"</{qn(el.tag)}>")

    write(root, True)
    return "".join(out)


# --------------------------------------------------------------------------------------------------
# building / reading


def _lang_alt(parent: ET.Element, tag: str, text: str) -> None:
    prop = ET.SubElement(parent, tag)
    alt = ET.SubElement(prop, _q(NS_RDF, "Alt"))
    li = ET.SubElement(alt, _q(NS_RDF, "li"), {_q(NS_XML, "lang"): "x-default"})
    li.text = text


def _set_properties(options: RightsOptions) -> list[tuple[str, Any]]:
    props: list[tuple[str, Any]] = [
        (_q(NS_PLUS, "DataMining"), options.data_mining_uri),
        (_q(NS_XMP_RIGHTS, "Marked"), "True"),
    ]
    if options.other_constraints.strip():
        props.append((_q(NS_PLUS, "OtherConstraints"), ("alt", options.other_constraints)))
    if options.creator is not None:
        props.append((_q(NS_DC, "creator"), ("seq", options.creator)))
    if options.copyright_notice is not None:
        props.append((_q(NS_DC, "rights"), ("alt", options.copyright_notice)))
    if options.web_statement is not None:
        props.append((_q(NS_XMP_RIGHTS, "WebStatement"), options.web_statement))
    return props


def build_xmp(existing: bytes | None, options: RightsOptions) -> bytes:
    """Return a UTF-8 XMP packet carrying ``options``, merged into ``existing`` XMP when given."""
    declared: dict[str, str] = {}
    rdf_tag, desc_tag = _q(NS_RDF, "RDF"), _q(NS_RDF, "Description")
    if existing is not None and existing.strip(b"\x00 \t\r\n"):
        root, declared = parse_xmp(existing)
        if root.tag == rdf_tag:
            meta = ET.Element(_q(NS_X, "xmpmeta"))
            meta.append(root)
            root = meta
        rdf = root if root.tag == rdf_tag else root.find(f".//{rdf_tag}")
        if rdf is None:
            raise ValueError(
                "existing XMP has no rdf:RDF element, so it is not XMP; pass existing=None to replace it"
            )
    else:
        root = ET.Element(_q(NS_X, "xmpmeta"))
        rdf = ET.SubElement(root, rdf_tag)

    props = _set_properties(options)
    names = {tag for tag, _ in props}
    descriptions = [d for d in rdf if d.tag == desc_tag]
    for d in descriptions:
        for attr in [a for a in d.attrib if a in names]:
            del d.attrib[attr]
        for child in [c for c in d if c.tag in names]:
            d.remove(child)
    if descriptions:
        target = descriptions[0]
    else:
        target = ET.SubElement(rdf, desc_tag, {_q(NS_RDF, "about"): ""})
    for tag, value in props:
        if isinstance(value, tuple):
            kind, text = value
            if kind == "alt":
                _lang_alt(target, tag, text)
            else:
                seq = ET.SubElement(ET.SubElement(target, tag), _q(NS_RDF, "Seq"))
                ET.SubElement(seq, _q(NS_RDF, "li")).text = text
        else:
            ET.SubElement(target, tag).text = value
    body = _serialize(root, declared)
    return f"{_XPACKET_BEGIN}\n{body}\n{_XPACKET_END}".encode()


def _prop(rdf: ET.Element, tag: str) -> ET.Element | str | None:
    for d in rdf.iter(_q(NS_RDF, "Description")):
        if tag in d.attrib:
            return d.attrib[tag]
        el = d.find(tag)
        if el is not None:
            return el
    return None


def _text_of(found: ET.Element | str | None) -> str | None:
    if found is None or isinstance(found, str):
        return found
    if found.get(_q(NS_RDF, "resource")) is not None:
        return found.get(_q(NS_RDF, "resource"))
    lis = found.findall(f"./*/{_q(NS_RDF, 'li')}")
    if lis:
        for li in lis:
            if li.get(_q(NS_XML, "lang")) == "x-default":
                return li.text or ""
        return lis[0].text or ""
    return found.text or ""


def read_xmp_rights(xmp: bytes) -> dict[str, Any]:
    """Read back the rights properties this module writes (``None`` where absent).

    ``data_mining`` is the bare PLUS code when the value is a PLUS vocabulary URI, else the raw value.
    """
    root, _ = parse_xmp(xmp)
    rdf = root if root.tag == _q(NS_RDF, "RDF") else root.find(f".//{_q(NS_RDF, 'RDF')}")
    if rdf is None:
        raise ValueError("XMP has no rdf:RDF element")
    dm = _text_of(_prop(rdf, _q(NS_PLUS, "DataMining")))
    if dm is not None:
        dm = dm.strip()
        if dm.startswith(PLUS_VOCAB):
            dm = dm[len(PLUS_VOCAB):]
    creator_el = _prop(rdf, _q(NS_DC, "creator"))
    if creator_el is None:
        creators = None
    elif isinstance(creator_el, str):
        creators = [creator_el]
    else:
        creators = [li.text or "" for li in creator_el.findall(f"./*/{_q(NS_RDF, 'li')}")]
    marked = _text_of(_prop(rdf, _q(NS_XMP_RIGHTS, "Marked")))
    return {
        "data_mining": dm,
        "other_constraints": _text_of(_prop(rdf, _q(NS_PLUS, "OtherConstraints"))),
        "creator": creators,
        "copyright_notice": _text_of(_prop(rdf, _q(NS_DC, "rights"))),
        "web_statement": _text_of(_prop(rdf, _q(NS_XMP_RIGHTS, "WebStatement"))),
        "marked": None if marked is None else marked.strip().lower() == "true",
    }


# --------------------------------------------------------------------------------------------------
# containers

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


def _jpeg_segments(data: bytes) -> tuple[list[tuple[int, bytes]], int]:
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
    segs, sos = _jpeg_segments(data)
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
    segs, _ = _jpeg_segments(data)
    for m, s in segs:
        if _is_jpeg_xmp(m, s):
            return s[4 + len(_JPEG_XMP_HEADER):]
    return None


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes, bytes]]:
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


def _png_chunk(ctype: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", zlib.crc32(ctype + payload))


def _is_png_xmp(ctype: bytes, payload: bytes) -> bool:
    return ctype == b"iTXt" and payload.startswith(_PNG_XMP_KEY + b"\x00")


def _png_embed(data: bytes, xmp: bytes) -> bytes:
    chunks = _png_chunks(data)
    if not chunks or chunks[0][0] != b"IHDR":
        raise ValueError("corrupt PNG: first chunk is not IHDR; re-export the image")
    new = _png_chunk(b"iTXt", _PNG_XMP_KEY + b"\x00\x00\x00\x00\x00" + xmp)
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
    for ctype, payload, _ in _png_chunks(data):
        if _is_png_xmp(ctype, payload):
            rest = payload[len(_PNG_XMP_KEY) + 1:]
            compressed = rest[0] == 1
            rest = rest[2:]
            _lang, rest = rest.split(b"\x00", 1)
            _translated, text = rest.split(b"\x00", 1)
            return zlib.decompress(text) if compressed else text
    return None


def _riff_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
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


def _riff_chunk(fourcc: bytes, payload: bytes) -> bytes:
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
    chunks = _riff_chunks(data)
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
    payload = b"WEBP" + b"".join(_riff_chunk(f, p) for f, p in body)
    return b"RIFF" + struct.pack("<I", len(payload)) + payload


def _webp_extract(data: bytes) -> bytes | None:
    for fourcc, payload in _riff_chunks(data):
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


def _atomic_write(dst: Path, data: bytes, mode_from: Path | None) -> None:
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode_from is not None:
            os.chmod(tmp, mode_from.stat().st_mode & 0o777)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    _atomic_write(dst, embed(data, bytes(xmp)), mode_from=src)


def mark_file(src: Path | str, dst: Path | str, options: RightsOptions) -> bytes:
    """Merge ``options`` into the XMP of ``src`` and write the result to ``dst``; returns the new packet."""
    xmp = build_xmp(extract_xmp_file(src), options)
    embed_xmp_file(src, dst, xmp)
    return xmp
