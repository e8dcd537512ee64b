"""Sfumato: open protection for artists' images against generative-AI mimicry.

``import sfumato`` is light: heavy pieces (torch models, diffusers, judges) load lazily on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from sfumato._version import __version__

_LAZY = {
    "cloak": ("sfumato.api", "cloak"),
    "cloak_file": ("sfumato.api", "cloak_file"),
    "CloakConfig": ("sfumato.config", "CloakConfig"),
    "CloakResult": ("sfumato.protections.cloak", "CloakResult"),
    "poison_file": ("sfumato.api", "poison_file"),
    "protect_file": ("sfumato.api", "protect_file"),
    "PoisonConfig": ("sfumato.config", "PoisonConfig"),
    "ProtectConfig": ("sfumato.config", "ProtectConfig"),
    "lab_style": ("sfumato.api", "lab_style"),
    "lab_poison": ("sfumato.api", "lab_poison"),
    "LabConfig": ("sfumato.lab.config", "LabConfig"),
    "load_encoder": ("sfumato.encoders", "load_encoder"),
    "load_image": ("sfumato.io", "load_image"),
    "save_image": ("sfumato.io", "save_image"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        mod, attr = _LAZY[name]
        return getattr(import_module(mod), attr)
    raise AttributeError(f"module 'sfumato' has no attribute {name!r}")
