"""Machine-readable "do not train" rights metadata in XMP, embedded without re-encoding pixels.

:func:`mark_file` is the whole operation: read a file's XMP, merge the rights properties into it and
write the file back with only its XMP container changed. The parts live in their own modules:

* :mod:`sfumato.optout.rights_options` -- what the metadata says (:class:`RightsOptions`: the IPTC/PLUS
  ``plus:DataMining`` value and texts) and its config file;
* :mod:`sfumato.optout.xmp_packet` -- the XMP packet: safe parsing, merging into existing XMP (every
  other property and namespace kept), reading the rights back;
* :mod:`sfumato.optout.xmp_containers` -- the per-format containers (JPEG APP1, PNG ``iTXt``, WebP
  ``XMP `` chunk, TIFF tag 700).

The public names of those modules are importable from here as well.
"""

from __future__ import annotations

from pathlib import Path

from sfumato.optout.rights_options import (
    DATA_MINING_VALUES,
    DEFAULT_OTHER_CONSTRAINTS,
    PLUS_VOCAB,
    RightsOptions,
    default_rights_config_path,
    load_rights_config,
)
from sfumato.optout.xmp_containers import embed_xmp_file, extract_xmp_file, sniff_format
from sfumato.optout.xmp_packet import (
    NS_DC,
    NS_PLUS,
    NS_RDF,
    NS_X,
    NS_XML,
    NS_XMP_RIGHTS,
    XPACKET_ID,
    build_xmp,
    parse_xmp,
    read_xmp_rights,
)

__all__ = [
    "DATA_MINING_VALUES",
    "DEFAULT_OTHER_CONSTRAINTS",
    "NS_DC",
    "NS_PLUS",
    "NS_RDF",
    "NS_X",
    "NS_XML",
    "NS_XMP_RIGHTS",
    "PLUS_VOCAB",
    "XPACKET_ID",
    "RightsOptions",
    "build_xmp",
    "default_rights_config_path",
    "embed_xmp_file",
    "extract_xmp_file",
    "load_rights_config",
    "mark_file",
    "parse_xmp",
    "read_xmp_rights",
    "sniff_format",
]


def mark_file(src: Path | str, dst: Path | str, options: RightsOptions) -> bytes:
    """Merge ``options`` into the XMP of ``src`` and write the result to ``dst``; returns the new packet."""
    xmp = build_xmp(extract_xmp_file(src), options)
    embed_xmp_file(src, dst, xmp)
    return xmp
