"""Machine-readable "do not train" signals and provenance.

* :mod:`sfumato.optout.xmp` -- IPTC/PLUS ``plus:DataMining`` rights XMP, merged and embedded without
  re-encoding pixels (parts: :mod:`~sfumato.optout.rights_options`, :mod:`~sfumato.optout.xmp_packet`,
  :mod:`~sfumato.optout.xmp_containers`);
* :mod:`sfumato.optout.keys` -- a local ES256 certificate chain for signing;
* :mod:`sfumato.optout.c2pa_sign` -- C2PA Content Credentials with a training-and-mining assertion;
* :mod:`sfumato.optout.site` -- robots.txt / ai.txt / TDMRep / server-header kit for a website.

Submodules import their heavy dependencies (c2pa, cryptography, Pillow) lazily.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "RightsOptions": "sfumato.optout.rights_options",
    "build_xmp": "sfumato.optout.xmp_packet",
    "embed_xmp_file": "sfumato.optout.xmp_containers",
    "extract_xmp_file": "sfumato.optout.xmp_containers",
    "load_rights_config": "sfumato.optout.rights_options",
    "mark_file": "sfumato.optout.xmp",
    "read_xmp_rights": "sfumato.optout.xmp_packet",
    "init_keys": "sfumato.optout.keys",
    "load_keys": "sfumato.optout.keys",
    "sign_file": "sfumato.optout.c2pa_sign",
    "verify_file": "sfumato.optout.c2pa_sign",
    "VerifyResult": "sfumato.optout.c2pa_sign",
    "SiteKitOptions": "sfumato.optout.site",
    "write_site_kit": "sfumato.optout.site",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sfumato.optout' has no attribute {name!r}")
