"""Encoder adapters: ``load_encoder("taef2")``, ``load_encoder("taesana")``,
``load_encoder("diffusers:<model id or path>")``."""

from __future__ import annotations

import os

from sfumato.encoders.base import Encoder

__all__ = ["Encoder", "load_encoder"]


def load_encoder(spec: str, *, models_dir: str | os.PathLike[str] | None = None,
                 with_decoder: bool = True) -> Encoder:
    """Load an encoder by spec: ``taef2``, ``taesana`` or ``diffusers:<id-or-path>``."""
    if spec in ("taef2", "taesana"):
        from sfumato.encoders.tae import load_tae

        return load_tae(spec, models_dir=models_dir, with_decoder=with_decoder)
    if spec.startswith("diffusers:"):
        from sfumato.encoders.diffusers_vae import load_diffusers_vae

        return load_diffusers_vae(spec.split(":", 1)[1], with_decoder=with_decoder)
    raise ValueError(
        f"unknown encoder {spec!r}: use 'taef2', 'taesana' or 'diffusers:<model id or local path>'"
    )
