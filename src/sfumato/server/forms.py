"""The multipart forms of ``POST /v1/jobs`` and ``POST /v1/preview``: job options parsed from form fields
(one-line 422 errors) and the forms' OpenAPI schemas."""

from __future__ import annotations

from typing import Any

from sfumato.server.errors import JobError
from sfumato.server.modes import INTENSITIES, MODES, OUTPUT_FORMATS, QUALITIES, JobOptions

_OPTION_FIELDS = {
    "mode": str, "intensity": str, "quality": str, "target_style": str, "concept": str, "target": str,
    "seed": int, "output_format": str, "jpeg_quality": int, "ai_view": bool, "check": bool,
}
_OPTIONAL = {"concept", "target", "output_format"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def parse_options(fields: dict[str, str]) -> JobOptions:
    """Job options from multipart form fields (strings), with one-line errors (HTTP 422)."""
    unknown = set(fields) - set(_OPTION_FIELDS)
    if unknown:
        raise JobError(422, f"unknown option(s) {sorted(unknown)}; known: {sorted(_OPTION_FIELDS)}")
    kw: dict[str, Any] = {}
    for key, raw in fields.items():
        typ = _OPTION_FIELDS[key]
        value = raw.strip()
        if key in _OPTIONAL and value == "":
            kw[key] = None
        elif typ is bool:
            if value.lower() not in _TRUE | _FALSE:
                raise JobError(422, f"option {key!r} must be true or false, got {raw!r}")
            kw[key] = value.lower() in _TRUE
        elif typ is int:
            try:
                kw[key] = int(value)
            except ValueError:
                raise JobError(422, f"option {key!r} must be an integer, got {raw!r}") from None
        else:
            kw[key] = value
    try:
        return JobOptions(**kw)
    except ValueError as e:
        raise JobError(422, str(e)) from e


def form_schema() -> dict[str, Any]:
    d = JobOptions().to_dict()
    props: dict[str, Any] = {
        "images": {"type": "array", "items": {"type": "string", "format": "binary"},
                   "description": "one or more image files (PNG, JPEG, WebP, TIFF); the content is checked"},
        "mode": {"type": "string", "enum": list(MODES), "default": d["mode"]},
        "intensity": {"type": "string", "enum": list(INTENSITIES), "default": d["intensity"],
                      "description": "perceptual budget preset"},
        "quality": {"type": "string", "enum": list(QUALITIES), "default": d["quality"],
                    "description": "search effort preset"},
        "target_style": {"type": "string", "default": d["target_style"],
                         "description": "'auto' or a built-in style name (see GET /v1/options)"},
        "concept": {"type": "string", "description": "concept shown in the images (poison; see GET /v1/options)"},
        "target": {"type": "string", "description": "concept a poisoned model should learn instead (poison)"},
        "seed": {"type": "integer", "default": d["seed"], "minimum": 0},
        "output_format": {"type": "string", "enum": list(OUTPUT_FORMATS),
                          "description": "default: the input's format family"},
        "jpeg_quality": {"type": "integer", "default": d["jpeg_quality"], "minimum": 95, "maximum": 100},
        "ai_view": {"type": "boolean", "default": d["ai_view"],
                    "description": "also render what the encoder sees, before and after"},
        "check": {"type": "boolean", "default": d["check"],
                  "description": "also write the verification report (when this version has it)"},
    }
    return {"type": "object", "required": ["images"], "properties": props}


def preview_form_schema() -> dict[str, Any]:
    """The form of ``POST /v1/preview``: one ``image`` and the job options."""
    props = {k: v for k, v in form_schema()["properties"].items() if k != "images"}
    return {"type": "object", "required": ["image"],
            "properties": {"image": {"type": "string", "format": "binary",
                                     "description": "the image to preview (PNG, JPEG, WebP, TIFF)"}, **props}}


def preview_parts(items: list[tuple[str, Any]]) -> tuple[Any, JobOptions]:
    """The upload and the options of a ``POST /v1/preview`` form (``form.multi_items()``; an upload is
    anything with a ``file``): one image, each option once."""
    upload = None
    fields: dict[str, str] = {}
    for key, value in items:
        if hasattr(value, "file"):
            if key not in ("image", "images") or upload is not None:
                raise JobError(422, "a preview takes one image: send it as one file part named 'image'")
            upload = value
        elif key in fields:
            raise JobError(422, f"option {key!r} was given twice; give it once")
        else:
            fields[key] = value
    opts = parse_options(fields)
    if upload is None:
        raise JobError(422, "no image: add the image to preview as a multipart part named 'image'")
    return upload, opts
