"""C2PA Content Credentials carrying a "do not train" assertion, signed with a local key chain.

Standards: C2PA Technical Specification 2.x (claims, ``c2pa.actions`` assertion, hard-binding data hash,
X.509 signer profile) and the training-and-data-mining assertion -- ``c2pa.training-mining`` as defined
in C2PA 1.x and its successor ``cawg.training-mining`` (Creator Assertions Working Group, "Training and
Data Mining Assertion" 1.x). Both are written so that readers of either generation find the opt-out;
entries ``*.ai_generative_training``, ``*.ai_training``, ``*.ai_inference`` and ``*.data_mining``.

Signing uses ``c2pa-python`` (the Context/Builder/Reader API of c2pa-python >= 0.29) with an ES256 key
from :mod:`sfumato.optout.keys`. The rights XMP (:mod:`sfumato.optout.xmp`) is embedded *before*
signing, so the manifest's data hash covers it. No timestamp authority is contacted (offline): the
signature is checked against the certificate's validity period.

Verification is honest about trust: a chain from your own local CA proves the file is intact and was
signed by whoever holds that key, nothing more. It is reported as trusted only when the root is given
as a trust anchor (or is on the C2PA trust list built into the SDK).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sfumato.optout.rights_options import RightsOptions
from sfumato.optout.xmp import mark_file
from sfumato.optout.xmp_containers import extract_xmp_file, sniff_format
from sfumato.optout.xmp_packet import read_xmp_rights

TRAINING_MINING_KINDS = ("ai_generative_training", "ai_training", "ai_inference", "data_mining")
TRAINING_MINING_LABELS = ("c2pa.training-mining", "cawg.training-mining")
ACTIONS = ("c2pa.edited", "c2pa.created")
DIGITAL_SOURCE_TYPES = {
    "digitalCreation": "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCreation",
    "digitalCapture": "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture",
    "humanEdits": "http://cv.iptc.org/newscodes/digitalsourcetype/humanEdits",
    "compositeCapture": "http://cv.iptc.org/newscodes/digitalsourcetype/compositeCapture",
    "negativeFilm": "http://cv.iptc.org/newscodes/digitalsourcetype/negativeFilm",
    "positiveFilm": "http://cv.iptc.org/newscodes/digitalsourcetype/positiveFilm",
    "print": "http://cv.iptc.org/newscodes/digitalsourcetype/print",
}
_MIME = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "tiff": "image/tiff"}
_UNTRUSTED_CODES = frozenset({"signingCredential.untrusted"})


def _sniff(path: Path) -> str:
    with open(path, "rb") as f:
        return sniff_format(f.read(16))


def training_mining_uses(rights: RightsOptions) -> dict[str, str] | None:
    """Map the IPTC data-mining value to C2PA training-mining ``use`` values (``None``: no assertion).

    Every prohibiting value (the default ``DMI-PROHIBITED-AIMLTRAINING`` included) marks all four kinds
    ``notAllowed``; ``DMI-PROHIBITED-GENAIMLTRAINING`` forbids generative training only and marks the
    rest ``constrained`` (see the constraint text); ``DMI-ALLOWED`` marks all ``allowed``.
    """
    dm = rights.data_mining
    if dm == "DMI-UNSPECIFIED":
        return None
    if dm == "DMI-ALLOWED":
        return dict.fromkeys(TRAINING_MINING_KINDS, "allowed")
    if dm == "DMI-PROHIBITED-GENAIMLTRAINING":
        uses = dict.fromkeys(TRAINING_MINING_KINDS, "constrained")
        uses["ai_generative_training"] = "notAllowed"
        return uses
    return dict.fromkeys(TRAINING_MINING_KINDS, "notAllowed")


def build_manifest(
    *,
    title: str,
    rights: RightsOptions,
    action: str = "c2pa.edited",
    digital_source_type: str = "digitalCreation",
    description: str | None = None,
) -> dict[str, Any]:
    """The manifest definition (c2pa-rs JSON) that :func:`sign_file` signs."""
    from sfumato._version import __version__

    if action not in ACTIONS:
        raise ValueError(f"action={action!r} is not supported; use one of {', '.join(ACTIONS)}")
    agent = {"name": "Sfumato", "version": __version__}
    act: dict[str, Any] = {"action": action, "softwareAgent": agent}
    if action == "c2pa.created":
        if digital_source_type not in DIGITAL_SOURCE_TYPES:
            raise ValueError(
                f"digital_source_type={digital_source_type!r} is unknown; use one of "
                f"{', '.join(DIGITAL_SOURCE_TYPES)} (IPTC digital source type codes)"
            )
        act["digitalSourceType"] = DIGITAL_SOURCE_TYPES[digital_source_type]
    if description:
        act["description"] = description
    assertions: list[dict[str, Any]] = [{"label": "c2pa.actions", "data": {"actions": [act]}}]
    uses = training_mining_uses(rights)
    if uses is not None:
        for label in TRAINING_MINING_LABELS:
            prefix = label.split(".", 1)[0]
            entries: dict[str, Any] = {}
            for kind, use in uses.items():
                entry: dict[str, Any] = {"use": use}
                if use == "constrained" and rights.other_constraints.strip():
                    entry["constraint_info"] = rights.other_constraints
                entries[f"{prefix}.{kind}"] = entry
            assertions.append({"label": label, "data": {"entries": entries}})
    return {
        "claim_generator_info": [agent],
        "title": title,
        "assertions": assertions,
    }


def sign_file(
    src: Path | str,
    dst: Path | str,
    *,
    keys_dir: Path | str | None = None,
    rights: RightsOptions | None = None,
    action: str = "c2pa.edited",
    creator: str | None = None,
    digital_source_type: str = "digitalCreation",
    description: str | None = None,
) -> Path:
    """Embed rights XMP into ``src`` and sign the result with a C2PA manifest, written atomically to ``dst``.

    ``action="c2pa.edited"`` (default) records the untouched input as the parent ingredient (``c2pa.opened``)
    followed by a Sfumato edit; ``"c2pa.created"`` declares a new creation of ``digital_source_type``.
    ``creator`` overrides ``rights.creator``. ``src`` is never modified unless ``dst`` is ``src``.
    """
    import c2pa

    from sfumato.optout.keys import load_keys

    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise FileNotFoundError(f"{src} does not exist; give an existing JPEG/PNG/WebP/TIFF file")
    fmt = _sniff(src)
    rights = rights if rights is not None else RightsOptions()
    if creator is not None:
        rights = RightsOptions(**{**rights.to_dict(), "creator": creator})
    manifest = build_manifest(title=dst.name, rights=rights, action=action,
                              digital_source_type=digital_source_type, description=description)
    keys = load_keys(Path(keys_dir) if keys_dir is not None else None)
    dst.parent.mkdir(parents=True, exist_ok=True)

    suffix = src.suffix or f".{fmt}"
    fd_x, tmp_xmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.xmp.", suffix=suffix)
    os.close(fd_x)
    fd_s, tmp_signed = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.c2pa.", suffix=suffix)
    os.close(fd_s)
    try:
        mark_file(src, tmp_xmp, rights)
        settings = {
            "verify": {"verify_after_sign": True, "remote_manifest_fetch": False, "ocsp_fetch": False},
            "builder": {"thumbnail": {"enabled": False}},
            # the signer trusts its own root when recording the validation of a signed parent ingredient
            "trust": {"user_anchors": keys.root_cert.read_text(encoding="ascii")},
        }
        info = c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, keys.leaf_cert.read_bytes(),
                                   keys.leaf_key.read_bytes(), None)
        with c2pa.Signer.from_info(info) as signer, c2pa.Context.from_dict(settings) as ctx:
            with c2pa.Builder(manifest, context=ctx) as builder:
                if action == "c2pa.edited":
                    # the parent is the untouched input, so an existing manifest in it still validates
                    with open(src, "rb") as parent:
                        builder.add_ingredient({"title": src.name, "relationship": "parentOf"}, _MIME[fmt], parent)
                    builder.set_intent(c2pa.C2paBuilderIntent.EDIT)
                with open(tmp_xmp, "rb") as source, open(tmp_signed, "w+b") as dest:
                    builder.sign(signer, _MIME[fmt], source, dest)
        os.chmod(tmp_signed, src.stat().st_mode & 0o777)
        os.replace(tmp_signed, dst)
    finally:
        Path(tmp_xmp).unlink(missing_ok=True)
        Path(tmp_signed).unlink(missing_ok=True)
    return dst


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :func:`verify_file`.

    ``state``:

    * ``"none"`` -- no C2PA manifest in the file;
    * ``"invalid"`` -- a manifest is present but something fails (data hash mismatch after an edit,
      bad signature, malformed assertion...); see ``errors``;
    * ``"untrusted"`` -- intact, but trust anchors were given and the signer does not chain to them
      (nor to the SDK's built-in C2PA trust list);
    * ``"valid"`` -- intact; ``trusted`` tells whether the signer chains to a trust anchor (it is never
      true for another state). Without
      anchors a self-issued chain is ``valid`` with ``trusted=False``: anyone can make such a chain, so
      it only shows the file was not altered since that key signed it.
    """

    state: str
    trusted: bool
    training_mining: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    signer: str | None = None
    actions: list[str] = field(default_factory=list)
    xmp_data_mining: str | None = None
    c2pa_validation_state: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _codes(items: Sequence[dict[str, Any]] | None) -> list[str]:
    return [f"{i.get('code')}: {i.get('explanation', '')}".rstrip(": ") for i in (items or [])]


def verify_file(path: Path | str, *, trust_anchors: Path | str | None = None) -> VerifyResult:
    """Validate the C2PA manifest of ``path`` offline; ``trust_anchors`` is a PEM file of root certificates."""
    import c2pa

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    fmt = _sniff(path)
    xmp = extract_xmp_file(path)
    xmp_dm = read_xmp_rights(xmp)["data_mining"] if xmp else None

    settings: dict[str, Any] = {
        "verify": {"verify_trust": True, "remote_manifest_fetch": False, "ocsp_fetch": False},
    }
    if trust_anchors is not None:
        anchors = Path(trust_anchors)
        pem = anchors.read_text(encoding="ascii")
        if "BEGIN CERTIFICATE" not in pem:
            raise ValueError(f"{anchors} holds no PEM certificate; pass the root CA file (e.g. root-ca.pem)")
        settings["trust"] = {"user_anchors": pem}
    with c2pa.Context.from_dict(settings) as ctx, open(path, "rb") as stream:
        reader = c2pa.Reader.try_create(_MIME[fmt], stream, None, ctx)
        if reader is None:
            return VerifyResult(state="none", trusted=False, xmp_data_mining=xmp_dm,
                                notes=["no C2PA manifest found"])
        with reader:
            raw_state = reader.get_validation_state()
            results = reader.get_validation_results() or {}
            active = reader.get_active_manifest() or {}

    am = results.get("activeManifest", {})
    failures = am.get("failure", []) or []
    success_codes = {s.get("code") for s in am.get("success", []) or []}
    failure_codes = {f.get("code") for f in failures}
    hard = [f for f in failures if f.get("code") not in _UNTRUSTED_CODES]
    notes: list[str] = []
    for delta in results.get("ingredientDeltas", []) or []:
        for f in (delta.get("validationDeltas") or {}).get("failure", []) or []:
            notes.append(f"ingredient {delta.get('ingredientAssertionURI', '?')}: {f.get('code')}")
    chain_ok = not failure_codes & _UNTRUSTED_CODES and "signingCredential.trusted" in success_codes
    for ing in active.get("ingredients", []) or []:
        recorded = ((ing.get("validation_results") or {}).get("activeManifest") or {}).get("failure") or []
        for f in recorded:
            notes.append(f"ingredient {ing.get('title', '?')} (recorded at signing): {f.get('code')}")
    trusted = chain_ok and not hard
    if hard:
        state, errors = "invalid", _codes(failures)
    elif trusted:
        state, errors = "valid", []
    elif trust_anchors is not None:
        state, errors = "untrusted", _codes(failures)
    else:
        state, errors = "valid", []
        notes.append("signature and hashes intact, but the signer is not trusted: pass its root CA with "
                     "--trust-anchor to check who signed")

    tm: dict[str, str] = {}
    action_names: list[str] = []
    for a in active.get("assertions", []) or []:
        label = a.get("label", "")
        if label.split(".v", 1)[0] in TRAINING_MINING_LABELS or label in TRAINING_MINING_LABELS:
            for key, entry in ((a.get("data") or {}).get("entries") or {}).items():
                tm[key] = entry.get("use", "") if isinstance(entry, dict) else str(entry)
        if label.startswith("c2pa.actions"):
            action_names += [x.get("action", "") for x in (a.get("data") or {}).get("actions", [])]
    sig = active.get("signature_info") or {}
    return VerifyResult(
        state=state, trusted=trusted, training_mining=tm, errors=errors, notes=notes,
        signer=sig.get("common_name") or sig.get("issuer"), actions=action_names,
        xmp_data_mining=xmp_dm, c2pa_validation_state=raw_state,
    )
