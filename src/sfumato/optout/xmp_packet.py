"""The rights XMP packet: safe parsing, merging the rights properties into existing XMP, serialising,
and reading them back.

Properties written (all public standards):

* IPTC Photo Metadata Standard 2023.1+ ``plus:DataMining`` (a PLUS LDF vocabulary URI) and
  ``plus:OtherConstraints`` (language alternative);
* Dublin Core ``dc:creator`` (ordered ``rdf:Seq``) and ``dc:rights`` (language alternative);
* XMP Rights Management ``xmpRights:Marked`` / ``xmpRights:WebStatement`` (Adobe XMP Specification
  Part 2, §8.5).

:func:`build_xmp` merges into existing XMP: every existing property and namespace is kept, only the
properties we set are replaced. Parsing uses expat directly and refuses any DTD or entity declaration
(no external entities, no entity expansion bombs).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any
from xml.parsers import expat

from sfumato.optout.rights_options import PLUS_VOCAB, RightsOptions

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

XPACKET_ID = "W5M0MpCehiHzreSzNTczkc9d"
_XPACKET_BEGIN = f'<?xpacket begin="\ufeff" id="{XPACKET_ID}"?>'
_XPACKET_END = '<?xpacket end="w"?>'


def _q(ns: str, local: str) -> str:
    return f"{{{ns}}}{local}"


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
